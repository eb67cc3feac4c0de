"""Report languages: gettext message catalogs (`locale/<lang>/LC_MESSAGES/messages.po`).

English is the source language. A catalog is compiled in memory when first used, so adding a
language needs only a new `.po` file (see docs/formats.md, "Report languages").
"""

from __future__ import annotations

import gettext
import io
from functools import lru_cache
from importlib import resources

from permed.errors import ConfigurationError

SOURCE_LANGUAGE = "en"


def _locale_dir():
    return resources.files("permed.report") / "locale"


def available_languages() -> list[str]:
    langs = [SOURCE_LANGUAGE]
    base = _locale_dir()
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if (entry / "LC_MESSAGES" / "messages.po").is_file():
            langs.append(entry.name)
    return langs


def check_language(lang: str) -> None:
    """Refuse a language without a catalog (before any work is done)."""
    if lang != SOURCE_LANGUAGE and not (_locale_dir() / lang / "LC_MESSAGES" / "messages.po").is_file():
        raise ConfigurationError(f"--lang {lang}: no report catalog for this language; available: "
                                 f"{', '.join(available_languages())}")


@lru_cache(maxsize=8)
def translations(lang: str):
    """gettext translations for `lang` (babel is imported only when a translated report is made)."""
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    check_language(lang)
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    po_path = _locale_dir() / lang / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)
