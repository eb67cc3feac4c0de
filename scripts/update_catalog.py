"""Regenerate the report message template (messages.pot) and merge it into every language catalog.

    python scripts/update_catalog.py

Strings come from the report template, the Python code that words the report, and data terms shown
in reports (drug names, phenotypes, strength classes). Translators then edit
src/permed/report/locale/<lang>/LC_MESSAGES/messages.po; a new language is a new .po file.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po
from jinja2.ext import babel_extract

from permed.kb.load import load_kb

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "src" / "permed" / "report" / "locale"
KEYWORDS = {"_": None, "gettext": None, "N_": None}


def template_catalog() -> Catalog:
    cat = Catalog(project="permed", charset="utf-8")
    tpl = ROOT / "src" / "permed" / "report" / "templates" / "report.html.j2"
    for lineno, msg, _comments, _ctx in extract_from_file(
            babel_extract, tpl, keywords=KEYWORDS, options={"extensions": "jinja2.ext.i18n", "trim_blocks": "1",
                                                            "lstrip_blocks": "1"}):
        cat.add(msg, locations=[(tpl.relative_to(ROOT).as_posix(), lineno)])
    for py in ("src/permed/kb/wording.py", "src/permed/report/html_report.py", "src/permed/report/gene_summary.py",
               "src/permed/report/fhir.py"):
        for lineno, msg, _comments, _ctx in extract_from_file("python", ROOT / py, keywords=KEYWORDS):
            cat.add(msg, locations=[(py, lineno)])
    kb = load_kb()
    terms = {d.name for g in kb.guidelines for d in g.drugs}
    terms |= {a for g in kb.guidelines for r in g.recommendations for a in r.alternatives}
    terms |= {r.phenotype for gp in kb.phenotypes.values() for r in gp.rows}
    terms |= {"Malignant Hyperthermia Susceptibility", "Uncertain Susceptibility", "Indeterminate", "n/a"}
    terms |= {r.strength for g in kb.guidelines for r in g.recommendations if r.strength}
    terms |= {"strong", "moderate"}
    terms |= {f for gp in kb.phenotypes.values() for f in gp.functions.values() if f}  # allele functions
    for t in sorted(terms):
        cat.add(t, auto_comments=["data term"])
    for t in sorted(engine_messages()):
        cat.add(t, auto_comments=["gene message"])
    return cat


def engine_messages() -> set[str]:
    """The engine's fixed gene-message texts (shown in the evidence section): note rules and message constants.
    Unphased-alternative notes ("Read as X; from unphased data Y ...") share one phrase in html_report."""
    import importlib

    from permed.matcher.model import Message
    from permed.phenotype.notes import note_rules
    from permed.report.html_report import _READ_AS

    texts = {r.text for r in note_rules() if r.text and not _READ_AS.match(r.text)}
    for module in ("permed.phenotype.phenotyper", "permed.matcher.patterns", "permed.engine.assembly",
                   "permed.advice.advisor"):
        texts |= {v.text for v in vars(importlib.import_module(module)).values() if isinstance(v, Message)}
    return texts


def main() -> None:
    pot = template_catalog()
    with open(LOCALE / "messages.pot", "wb") as fh:
        write_po(fh, pot, omit_header=False, sort_output=True)
    for po_path in sorted(LOCALE.glob("*/LC_MESSAGES/messages.po")):
        with open(po_path, "rb") as fh:
            cat = read_po(fh)
        # no fuzzy matching: a guessed translation of a similar text ("No function" from "Normal function")
        # is worse than none, and a translator must write each new entry
        cat.update(pot, no_fuzzy_matching=True)
        with open(po_path, "wb") as fh:
            write_po(fh, cat, sort_output=True, ignore_obsolete=True)
        missing = [m.id for m in cat if m.id and (not m.string or "fuzzy" in m.flags)]
        print(f"{po_path.relative_to(ROOT)}: {len(missing)} untranslated")


if __name__ == "__main__":
    main()
