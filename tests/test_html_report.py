"""The clinician's report: rendered in headless Chromium (smoke test), languages, PDF, self-containment."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import ChromiumPage, cli

from permed.report import i18n


@pytest.fixture(scope="module")
def report_en(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "out"
    res = cli("call", "--example", "--medications", "clopidogrel,paroxetine", "-o", out)
    assert res.returncode == 0, res.stderr
    return out / "EXAMPLE-PATIENT.report.html"


def test_report_in_headless_chromium(report_en, tmp_path):
    with ChromiumPage() as browser:
        page = browser.page
        page.goto(report_en.as_uri())
        shot = tmp_path / "first-screen.png"
        page.screenshot(path=str(shot))
        section = page.locator("#actionable")
        assert section.is_visible()
        # the first screen shows the patient's current drug and what to do about it
        box = section.bounding_box()
        assert box is not None and box["y"] < 900
        current = page.locator("#current-medications + .box").inner_text()
        assert "clopidogrel" in current and "CYP2C19" in current
        assert page.locator("#genotypes tr#gene-CYP2C19").inner_text().count("*2/*17") == 1
        assert page.locator("#evidence-DPYD").is_visible() is True
    errors, external = browser.errors, browser.external
    assert not errors, errors
    assert not external, external  # self-contained: nothing fetched from the network
    assert shot.stat().st_size > 20_000


def test_report_content_order_and_self_containment(report_en):
    html = report_en.read_text()
    order = [html.index(f'id="{s}"') for s in ("actionable", "genotypes", "evidence", "drugs", "limitations")]
    assert order == sorted(order)
    assert "<script" not in html and 'rel="stylesheet"' not in html
    assert not re.search(r'src="https?://', html)
    assert "paroxetine" in html and "CYP2C19" in html


def test_chinese_report(tmp_path):
    out = tmp_path / "out"
    res = cli("call", "--example", "--medications", "clopidogrel", "--lang", "zh", "-o", out)
    assert res.returncode == 0, res.stderr
    html = (out / "EXAMPLE-PATIENT.report.html").read_text()
    assert 'lang="zh"' in html
    for zh in ("药物基因组学报告", "需采取行动的发现", "氯吡格雷", "中间代谢型", "卡培他滨"):
        assert zh in html
    assert "Actionable findings" not in html and "Intermediate Metabolizer" not in html


def test_every_catalog_is_complete():
    from babel.messages.pofile import read_po

    pot = read_po((Path(i18n.__file__).parent / "locale" / "messages.pot").open("rb"))
    ids = {m.id for m in pot if m.id}
    for lang in i18n.available_languages()[1:]:
        po = read_po((Path(i18n.__file__).parent / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb"))
        done = {m.id for m in po if m.id and m.string}
        assert ids <= done, (lang, sorted(ids - done)[:5])


def test_new_language_needs_only_a_catalog(tmp_path, monkeypatch):
    src = Path(i18n.__file__).parent / "locale"
    shutil.copytree(src, tmp_path / "locale")
    fr = tmp_path / "locale" / "fr" / "LC_MESSAGES"
    fr.mkdir(parents=True)
    fr.joinpath("messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Pharmacogenomic report"\nmsgstr "Rapport pharmacogénomique"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "_locale_dir", lambda: tmp_path / "locale")
    i18n.translations.cache_clear()
    try:
        assert "fr" in i18n.available_languages()
        assert i18n.translations("fr").gettext("Pharmacogenomic report") == "Rapport pharmacogénomique"
    finally:
        i18n.translations.cache_clear()


def test_pdf_reports(tmp_path):
    out = tmp_path / "out"
    res = cli("call", "--example", "--format", "html,pdf", "--lang", "zh", "-o", out)
    assert res.returncode == 0, res.stderr
    pdf = out / "EXAMPLE-PATIENT.report.pdf"
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 20_000
    assert (out / "EXAMPLE-PATIENT.report.html").exists()


def test_unknown_language_and_format(tmp_path):
    res = cli("call", "--example", "--lang", "xx", "-o", tmp_path / "o1")
    assert res.returncode == 64 and "--lang xx" in res.stderr and "zh" in res.stderr
    res = cli("call", "--example", "--format", "docx", "-o", tmp_path / "o2")
    assert res.returncode == 64 and "--format" in res.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_json_only_format(tmp_path):
    res = cli("call", "--example", "--format", "json", "-o", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["EXAMPLE-PATIENT.report.json", "calls.tsv"]


def test_population_codes_are_spelt_out_in_both_languages(tmp_path):
    """Guideline population codes (CVI ACS PCI, NVI, PHT naive, child >40kg_adult...) are shown in words
    (issue 12); the codes themselves never reach the clinician's page."""
    from helpers import cli

    from permed.kb.wording import POPULATION_LABELS

    for lang, expected in (("en", "cardiovascular indication: acute coronary syndrome or percutaneous coronary "
                                  "intervention"),
                           ("zh", "心血管适应证：急性冠脉综合征或经皮冠状动脉介入治疗")):
        out = tmp_path / lang
        assert cli("call", "--example", "-o", out, "--lang", lang).returncode == 0
        html = next(out.glob("*.html")).read_text(encoding="utf-8")
        assert expected in html, lang
        for code in (c for c, words in POPULATION_LABELS.items() if c != words):
            assert f"Population: {code}<" not in html and f"[{code}]" not in html, (lang, code)


def test_a_drug_for_one_condition_is_not_an_alarm_for_everyone(tmp_path):
    """'Avoid ivacaftor' for a CFTR reference patient concerns cystic fibrosis patients only: it is shown
    apart with its condition in words, not in the box of drugs to avoid or adjust; on the patient's
    medication list it is the patient's own drug and shown first, as every current medication."""
    from helpers import cli

    out = tmp_path / "out"
    assert cli("call", "--example", "-o", out).returncode == 0
    html = next(out.glob("*.html")).read_text(encoding="utf-8")
    alarm = html[html.index("Drugs to avoid or adjust"):html.index('id="conditional"')]
    assert "ivacaftor" not in alarm
    apart = html[html.index('id="conditional"'):html.index('id="genotypes"')]
    assert "<strong>ivacaftor</strong>" in apart and "patients with cystic fibrosis" in apart
    on_list = tmp_path / "on_list"
    assert cli("call", "--example", "-o", on_list, "--medications", "ivacaftor").returncode == 0
    html = next(on_list.glob("*.html")).read_text(encoding="utf-8")
    current = html[html.index('id="current-medications"'):html.index("Drugs to avoid or adjust")]
    assert "<strong>ivacaftor</strong>" in current
    assert "<strong>ivacaftor</strong>" not in html[html.index('id="conditional"'):html.index('id="genotypes"')]


def test_the_evidence_section_says_shared_notes_once_and_no_internal_names(tmp_path):
    """Issue 12: no internal message names ("reference-allele", "... footnote"), and notes every gene would
    repeat are said once; each gene keeps what is particular to it."""
    import re

    from helpers import cli

    out = tmp_path / "out"
    assert cli("call", "--example", "-o", out).returncode == 0
    html = next(out.glob("*.html")).read_text(encoding="utf-8")
    evidence = html[html.index('id="evidence"'):]
    evidence = evidence[:evidence.index("</section>")]
    assert "reference-allele" not in evidence and "footnote" not in evidence
    assert evidence.count("reference allele is named because") == 0
    notes = re.findall(r'class="small evidence-note">([^<]*)<', evidence)
    assert len(notes) == 2
    assert notes[0].startswith("Reference allele named for ") and "CYP2C9" in notes[0]
    assert "DPYD" in notes[1] and "TPMT" in notes[1] and "minus strand" in notes[1]
    # particular notes stay with their gene (DPYD's lowest-activity rule)
    dpyd = evidence[evidence.index('id="evidence-DPYD"'):]
    assert "two lowest-activity alleles" in dpyd[:dpyd.index("</div>\n  </div>") if "</div>\n  </div>" in dpyd
                                                   else len(dpyd)]


def test_every_drug_row_links_its_guideline_and_cites_its_pmids(tmp_path):
    """Every row of the full drug table (not only actionable ones) links the guideline and cites the PMIDs
    the knowledge base has for it; printed, each link shows its address."""
    import re

    from helpers import cli

    from permed.api import load_kb

    out = tmp_path / "out"
    assert cli("call", "--example", "-o", out).returncode == 0
    html = next(out.glob("*.html")).read_text(encoding="utf-8")
    table = html[html.index('<section id="drugs">'):]
    rows = dict(re.findall(r'<tr id="drug-([^"]+)">(.*?)</tr>', table, re.S))
    assert len(rows) > 50
    assert all('class="ref" href="http' in row for row in rows.values())
    kb = load_kb()
    cited = {p for g in kb.guidelines for p in g.pmids if any(d.name == "zuclopenthixol" for d in g.drugs)}
    assert cited and all(f"pubmed.ncbi.nlm.nih.gov/{p}/" in rows["zuclopenthixol"] for p in cited)
    assert 'a.ref::after { content: " <" attr(href) ">"' in html


def test_the_genotype_table_shows_allele_functions_and_the_drugs_of_each_gene(tmp_path):
    import re

    from helpers import cli

    for lang, functions, drug in (("en", "*2: No function; *17: Increased function", "clopidogrel"),
                                  ("zh", None, None)):
        out = tmp_path / lang
        assert cli("call", "--example", "-o", out, "--lang", lang).returncode == 0
        html = next(out.glob("*.html")).read_text(encoding="utf-8")
        row = re.search(r'<tr id="gene-CYP2C19">(.*?)</tr>', html, re.S).group(1)
        if lang == "en":
            assert functions in row and drug in row and "voriconazole" in row
        else:  # the same facts in the catalog's words
            assert "No function" not in row and "*2:" in row and "*17:" in row


def test_the_chinese_catalog_is_complete_and_a_zh_report_shows_no_message_id(tmp_path):
    """Every message of the report (template, wording, data terms) has a reviewed Chinese translation
    (none empty, none fuzzy: a guessed "similar" translation once turned "No function" into "normal
    function"), and a rendered zh report contains none of the English message ids."""
    import html as htmlmod
    import re

    from babel.messages.pofile import read_po
    from helpers import ROOT, cli

    locale = ROOT / "src" / "permed" / "report" / "locale"
    with open(locale / "zh" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        zh = read_po(fh, locale="zh")
    with open(locale / "messages.pot", "rb") as fh:
        ids = [m.id for m in read_po(fh) if m.id and isinstance(m.id, str)]
    entries = {m.id: m for m in zh if m.id}
    assert all(i in entries and entries[i].string and "fuzzy" not in entries[i].flags for i in ids), \
        [i for i in ids if i not in entries or not entries[i].string or "fuzzy" in entries[i].flags][:5]
    assert entries["No function"].string != entries["Normal function"].string
    out = tmp_path / "zh"
    assert cli("call", "--example", "-o", out, "--lang", "zh").returncode == 0
    page = next(out.glob("*.html")).read_text(encoding="utf-8")
    body = re.sub(r"<(style|script).*?</\1>", "", page, flags=re.S)
    # every piece of text the page shows (a cell, a badge, a heading): none may be an English message id
    shown = {htmlmod.unescape(t).strip() for t in re.split(r"<[^>]+>", body)} - {""}
    english = [i for i in ids if i in shown and entries[i].string != i]
    assert not english, english[:5]


def test_heterozygous_is_display_text_in_the_reports_language(tmp_path):
    """PharmCAT's label "c.1905+1G>A (*2A) (heterozygous)" stays as it is in report.json; the Chinese page
    words the qualifier in Chinese."""
    import json

    from helpers import cli

    out = tmp_path / "zh"
    assert cli("call", "--example", "-o", out, "--lang", "zh").returncode == 0
    page = next(out.glob("*.html")).read_text(encoding="utf-8")
    assert "(heterozygous)" not in page and "c.1905+1G&gt;A (*2A) (杂合)" in page
    data = json.loads(next(out.glob("*.report.json")).read_text())
    assert data["genes"]["DPYD"]["source_diplotypes"] == ["c.1905+1G>A (*2A) (heterozygous)"]


def test_every_printed_page_names_the_patient_and_its_page_number(tmp_path):
    """PDF pages carry the sample ID at the top and "Page n / N" at the bottom (read from WeasyPrint's
    laid-out pages: the margin boxes of every page)."""
    from helpers import cli
    from weasyprint import HTML

    out = tmp_path / "out"
    assert cli("call", "--example", "--format", "html", "-o", out).returncode == 0
    document = HTML(string=(out / "EXAMPLE-PATIENT.report.html").read_text(encoding="utf-8")).render()
    pages = document.pages
    assert len(pages) > 2

    def margin_text(page) -> str:
        texts = []
        for box in page._page_box.descendants():
            if getattr(box, "text", None):
                texts.append(box.text)
        return " ".join(texts)

    for n, page in enumerate(pages, start=1):
        text = margin_text(page)
        assert "Sample: EXAMPLE-PATIENT" in text, (n, text[:200])
        assert f"Page {n} / {len(pages)}" in text, (n, text[-200:])


def test_the_zh_evidence_section_has_no_english_sentences(tmp_path):
    """The engine's gene messages (CYP2D6 not called, DPYD's lowest-activity rule, chrX encoding...) reach
    the Chinese report through the catalog: no run of English words is left in its evidence section."""
    import html as htmlmod
    import re

    from helpers import cli

    out = tmp_path / "zh"
    assert cli("call", "--example", "-o", out, "--lang", "zh").returncode == 0
    page = next(out.glob("*.html")).read_text(encoding="utf-8")
    section = page[page.index('id="evidence"'):]
    text = htmlmod.unescape(re.sub(r"<[^>]+>", "\n", section[:section.index("</section>")]))
    assert "CYP2D6" in text and "VCF" in text  # names stay, sentences do not
    assert re.findall(r"[A-Za-z][A-Za-z ,'()-]{24,}", text) == []


def test_advice_for_a_population_goes_apart_from_the_alarm_box(tmp_path):
    """Rows that apply only to a population (ACS/PCI, treatment-naive, children...) are shown in the
    conditional section with the population in words; the box of drugs to avoid or adjust holds only advice
    that applies to everyone with the genotype (clopidogrel: DPWG's general row there, CPIC's per-indication
    rows apart)."""
    import re

    from helpers import cli

    out = tmp_path / "out"
    assert cli("call", "--example", "-o", out).returncode == 0
    html = next(out.glob("*.html")).read_text(encoding="utf-8")
    box = html[html.index("Drugs to avoid or adjust"):html.index('id="conditional"')]
    apart = html[html.index('id="conditional"'):html.index('id="genotypes"')]
    assert "Population:" not in box
    rows = re.findall(r'<tr class="finding">(.*?)</tr>', apart, re.S)
    assert rows and all("Population:" in r for r in rows)
    assert "<strong>clopidogrel</strong>" in apart and "acute coronary syndrome" in apart


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_first_screen_and_full_page_in_chromium(lang, tmp_path):
    """Looked at in a browser, in both languages: the first screen shows the actionable findings, the full
    page renders to the end, with no script error and nothing fetched from the network."""
    out = tmp_path / lang
    assert cli("call", "--example", "-o", out, "--lang", lang).returncode == 0
    with ChromiumPage(width=1280, height=900) as browser:
        page = browser.page
        page.goto(next(out.glob("*.html")).as_uri())
        first, full = tmp_path / "first.png", tmp_path / "full.png"
        page.screenshot(path=str(first))
        page.screenshot(path=str(full), full_page=True)
        box = page.locator("#actionable").bounding_box()
        assert box is not None and box["y"] < 900
        assert page.locator("#drugs").is_visible() and page.locator("#evidence").is_visible()
        height = page.evaluate("document.body.scrollHeight")
    assert not browser.errors and not browser.external
    assert first.stat().st_size > 20_000 and full.stat().st_size > first.stat().st_size and height > 3 * 900
