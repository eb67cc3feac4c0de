"""`permed cohort` and `permed query` on real 1000 Genomes data: same calls as `permed call`,
independent of workers / chunking / Dask, population frequencies, queries."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conformance import SHARED
from helpers import ChromiumPage, cli, rec, write_vcf

from permed.biobank.frequencies import undetermined

DATA = SHARED / "data" / "1kgp-grch38"
POPS = SHARED / "data" / "1kgp_populations.tsv"
FILES = [DATA / f"{g}.vcf.gz" for g in ("CYP2C19", "CYP2C9", "TPMT", "G6PD", "RYR1")]

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")


def _cohort(out: Path, *extra: str, files=FILES) -> Path:
    r = cli("cohort", *files, "-o", out, "--populations", POPS, "--quiet", *extra)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return _cohort(tmp_path_factory.mktemp("cohort") / "one")


def _tables(out: Path) -> dict:
    return {name: pq.read_table(out / f"{name}.parquet") for name in ("calls", "frequencies", "samples")}


def test_outputs_and_metadata(base):
    t = _tables(base)
    calls = t["calls"]
    assert calls.num_rows == 3202 * 20  # every gene row, like calls.tsv (CYP2D6 reported as not called)
    meta = pq.read_schema(base / "calls.parquet").metadata
    assert meta[b"permed.schema"] == b"permed.cohort/1"
    assert b"CC BY-SA 4.0" in meta[b"permed.data_licence"]
    assert b"CYP2C19.vcf.gz sha256:" in meta[b"permed.inputs"]
    samples = t["samples"].to_pylist()
    assert samples[0] == {"sample": "HG00096", "superpopulation": "EUR", "population": "GBR"}
    html = (base / "summary.html").read_text()
    assert html.count("<svg") >= 5  # one chart per gene with phenotypes
    assert "CYP2C19 phenotype by superpopulation" in html
    # self-contained: no external resources
    for ref in ('src="http', "src='http", 'href="http', "url(http", "@import"):
        assert ref not in html


def test_same_calls_as_permed_call(base, tmp_path):
    r = cli("call", *FILES, "-o", tmp_path / "call", "--no-sample-reports", "--workers", "2")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "call" / "calls.tsv") as fh:
        tsv = list(csv.DictReader(fh, delimiter="\t"))
    rows = pq.read_table(base / "calls.parquet").to_pylist()
    assert len(rows) == len(tsv)
    for a, b in zip(rows, tsv):
        assert (a["sample"], a["gene"]) == (b["Sample"], b["Gene"])
        assert a["diplotype"] == b["Source Diplotype"] == " OR ".join(a["source_diplotypes"])
        assert a["phenotype"] == b["Phenotype"]
        assert a["activity_score"] == b["Activity Score"]
        assert ("" if a["match_score"] is None else str(a["match_score"])) == b["Match Score"]
        assert a["missing_positions"] == b["Missing Positions"]
        assert a["n_missing"] == len([x for x in b["Missing Positions"].split(";") if x])
        assert ("yes" if a["phased"] else "no") == b["Phased"]
        assert a["status"] == b["Status"]
        assert (a["haplotype_1"], a["haplotype_2"]) == (b["Haplotype 1"], b["Haplotype 2"])
        assert ";".join(a["flags"]) == b["Warnings"]
        assert a["input_file"] == b["Input File"]
        assert a["recommendation_diplotype"] == b["Recommendation Diplotype"]
        assert a["lookup_keys"] == b["Lookup Keys"]


@pytest.mark.parametrize("extra", [
    ("--workers", "2"),
    ("--workers", "2", "--chunk-size", "700", "--split-samples", "1500"),
    ("--chunk-size", "333"),
])
def test_identical_whatever_workers_and_chunks(base, tmp_path, extra):
    other = _cohort(tmp_path / "other", *extra)
    a, b = _tables(base), _tables(other)
    for name in a:
        assert a[name].equals(b[name]), name
    assert (base / "summary.html").read_bytes() == (other / "summary.html").read_bytes()


def test_dask_local_cluster_gives_identical_output(base, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        other = _cohort(tmp_path / "dask", "--scheduler", cluster.scheduler_address)
    a, b = _tables(base), _tables(other)
    for name in a:
        assert a[name].equals(b[name]), name


def test_unreachable_scheduler_is_a_configuration_error(tmp_path):
    r = cli("cohort", FILES[0], "-o", tmp_path / "x", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "1",
            "--quiet")
    assert r.returncode == 64
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in r.stderr
    assert not (tmp_path / "x" / "calls.parquet").exists()


def _freq(base: Path, gene: str, kind: str, level: str) -> dict:
    out: dict = {}
    for r in pq.read_table(base / "frequencies.parquet").to_pylist():
        if (r["gene"], r["kind"], r["level"]) == (gene, kind, level):
            out[(r["group"], r["value"])] = r
    return out


def test_population_differences_in_frequency_table(base):
    """CYP2C19 poor metabolizers are far commoner in East and South Asians than in Europeans
    (CPIC CYP2C19 frequency table: ~13% EAS, ~8% SAS (Central/South Asian), ~2-3% EUR)."""
    pm = _freq(base, "CYP2C19", "phenotype", "superpopulation")
    f = {g: pm[(g, "Poor Metabolizer")]["frequency"] for g in ("EAS", "SAS", "EUR")}
    assert f["EAS"] > 0.08 and f["SAS"] > 0.05
    assert f["EAS"] > 3 * f["EUR"] and f["SAS"] > 2.5 * f["EUR"]
    # the CYP2C19*3 allele is essentially East Asian
    alleles = _freq(base, "CYP2C19", "allele", "superpopulation")
    assert alleles[("EAS", "*3")]["frequency"] > 0.03
    assert alleles.get(("EUR", "*3"), {"frequency": 0})["frequency"] < 0.005


def test_frequency_counts_add_up(base):
    calls = pq.read_table(base / "calls.parquet").to_pylist()
    freq = pq.read_table(base / "frequencies.parquet").to_pylist()
    sizes = {}
    for r in freq:
        key = (r["gene"], r["kind"], r["level"], r["group"])
        sizes.setdefault(key, []).append(r)
    for (gene, kind, level, group), rs in sizes.items():
        if kind in ("diplotype", "phenotype"):
            assert sum(r["count"] for r in rs) == rs[0]["n_samples"], (gene, kind, level, group)
        det = sum(r["count"] for r in rs if not undetermined(r["value"]))
        assert det == rs[0]["n_determined"]
        for r in rs:
            if r["frequency"] is not None:
                assert r["frequency"] == pytest.approx(r["count"] / r["n_determined"])
    # overall diplotype counts equal a direct count over calls.parquet
    direct: dict = {}
    for r in calls:
        if r["gene"] == "TPMT" and r["status"] == "called" and len(r["source_diplotypes"]) == 1:
            direct[r["diplotype"]] = direct.get(r["diplotype"], 0) + 1
    table = {v: r["count"] for (g, v), r in _freq(base, "TPMT", "diplotype", "all").items()
             if not v.startswith("(")}
    assert table == direct
    # G6PD: males contribute one allele, females two
    g6pd = _freq(base, "G6PD", "allele", "all")
    n_alleles = next(iter(g6pd.values()))["n_determined"]
    n_dip = sum(r["count"] for (g, v), r in _freq(base, "G6PD", "diplotype", "all").items() if not v.startswith("("))
    assert n_dip < n_alleles < 2 * n_dip


def test_query_expression_matches_parquet(base, tmp_path):
    r = cli("query", base, "CYP2C19 phenotype == 'Poor Metabolizer'", "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = [x["sample"] for x in pq.read_table(base / "calls.parquet").to_pylist()
            if x["gene"] == "CYP2C19" and x["phenotype"] == "Poor Metabolizer"]
    assert [x["sample"] for x in got] == want and len(want) > 50
    assert all(x["CYP2C19 phenotype"] == "Poor Metabolizer" for x in got)
    assert f"{len(want)} of 3202 samples match" in r.stderr

    r = cli("query", base, "superpopulation == EAS and (CYP2C19 phenotype == 'Poor Metabolizer' "
                "or CYP2C9 activity_score <= 1) and not TPMT diplotype contains '*3A'", "--format", "tsv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().split("\n")
    assert lines[0].split("\t") == ["sample", "CYP2C19 diplotype", "CYP2C19 phenotype", "CYP2C9 diplotype",
                                    "CYP2C9 phenotype", "TPMT diplotype", "TPMT phenotype"]
    pops = {x["sample"]: x["superpopulation"] for x in pq.read_table(base / "samples.parquet").to_pylist()}
    by = {}
    for x in pq.read_table(base / "calls.parquet").to_pylist():
        by.setdefault(x["sample"], {})[x["gene"]] = x

    def as_float(v):
        try:
            return float(v)
        except ValueError:
            return None

    want2 = [s for s, g in by.items() if pops[s] == "EAS"
             and (g["CYP2C19"]["phenotype"] == "Poor Metabolizer"
                  or (as_float(g["CYP2C9"]["activity_score"]) is not None
                      and as_float(g["CYP2C9"]["activity_score"]) <= 1))
             and "*3A" not in g["TPMT"]["diplotype"]]
    assert [ln.split("\t")[0] for ln in lines[1:]] == want2 and want2


def test_query_sql(base, tmp_path):
    sql = ("SELECT s.superpopulation, count(*) AS n FROM calls c JOIN samples s USING (sample) "
           "WHERE c.gene = 'CYP2C19' AND c.phenotype = 'Poor Metabolizer' GROUP BY 1 ORDER BY 1")
    r = cli("query", base, "--sql", sql, "--format", "csv", "-o", tmp_path / "pm.csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "pm.csv")))
    pm = _freq(base, "CYP2C19", "phenotype", "superpopulation")
    assert {x["superpopulation"]: int(x["n"]) for x in rows} == {
        g: r["count"] for (g, v), r in pm.items() if v == "Poor Metabolizer"}


@pytest.mark.parametrize("args, message", [
    (("NOPE phenotype == 'x'",), "'NOPE' is not a gene of this cohort"),
    (("CYP2C19 colour == 'x'",), "'colour' is not a field"),
    (("CYP2C19 phenotype ==",), "unexpected end of expression"),
    (("CYP2C19 phenotype == 'x' 'y'",), "unexpected 'y'"),
    (("--sql", "SELECT nope FROM calls"), "--sql: "),
])
def test_query_errors_are_one_line(base, args, message):
    r = cli("query", base, *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_query_needs_a_cohort(tmp_path):
    r = cli("query", tmp_path, "CYP2C19 phenotype == 'x'")
    assert r.returncode == 2 and "no calls.parquet here" in r.stderr


@pytest.mark.parametrize("text, message", [
    ("id\tgroup\nS1\tA\n", "line 1: header must name tab-separated columns 'sample' and 'population'"),
    ("sample\tpopulation\nS1\tA\nS1\tB\n", "line 3: sample 'S1' is listed twice"),
    ("sample\tpopulation\tsuperpopulation\nS1\tA\n", "line 2: expected at least 3 tab-separated fields"),
])
def test_bad_populations_file(tmp_path, text, message):
    pops = tmp_path / "pops.tsv"
    pops.write_text(text)
    vcf = write_vcf(tmp_path / "a.vcf", rec("chr10", 94781859, "G", "A", "0/1"))
    r = cli("cohort", vcf, "-o", tmp_path / "out", "--populations", pops, "--quiet")
    assert r.returncode == 2
    assert f"{pops}: {message}" in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cohort_of_one_equals_call(tmp_path):
    """The example patient through both commands: the same row values."""
    from permed.examples import example_vcf

    src = tmp_path / "example.vcf"
    shutil.copy(example_vcf(), src)
    r1 = cli("call", src, "-o", tmp_path / "c", "--no-sample-reports")
    r2 = cli("cohort", src, "-o", tmp_path / "k", "--quiet")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    tsv = list(csv.DictReader(open(tmp_path / "c" / "calls.tsv"), delimiter="\t"))
    rows = pq.read_table(tmp_path / "k" / "calls.parquet").to_pylist()
    assert [(x["Gene"], x["Source Diplotype"], x["Phenotype"]) for x in tsv] == \
        [(x["gene"], x["diplotype"], x["phenotype"]) for x in rows]
    assert any(x["diplotype"] == "*2/*17" for x in rows if x["gene"] == "CYP2C19")


def test_summary_in_headless_chromium(base, tmp_path):
    """The summary page renders with no errors and no network; the CYP2C19 chart's bar labels name
    the superpopulations with their sizes."""
    with ChromiumPage() as browser:
        page = browser.page
        page.goto((base / "summary.html").as_uri())
        chart = page.locator("#CYP2C19 figure svg")
        assert chart.is_visible()
        text = chart.text_content()  # SVG text elements (labels, legend)
        for group, n in (("EAS", 585), ("EUR", 633), ("SAS", 601)):
            assert f"{group} (n={n})" in text
        assert "Poor Metabolizer" in text
        assert page.locator("svg").count() >= 5
        page.locator("#CYP2C19").screenshot(path=str(tmp_path / "cyp2c19.png"))
    assert not browser.errors, browser.errors
    assert not browser.external, browser.external
    assert (tmp_path / "cyp2c19.png").stat().st_size > 10_000


def _documented_queries() -> list[list[str]]:
    """Every `permed query` example of docs/cohort.md, as argument lists: the bash examples (a --sql
    string may span lines) and the expression list of the query section."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "docs" / "cohort.md").read_text()
    examples = []
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "bash":
            for command in re.findall(r"^permed query .*?(?=^permed |\Z)", block, re.S | re.M):
                examples.append(shlex.split(command)[2:])
        elif lang == "text" and "phenotype ==" in block:
            examples += [["cohort/", line.strip()] for line in block.splitlines() if line.strip()]
    return examples


def test_every_documented_query_runs(base):
    """The documentation cannot rot: each example runs on a real cohort, answers without error, and the
    SQL one returns a row per superpopulation (it once used avg(BOOLEAN), which DuckDB refuses)."""
    examples = _documented_queries()
    assert len(examples) >= 6 and any("--sql" in e for e in examples)
    for args in examples:
        args = [str(base) if a == "cohort/" else a for a in args]
        res = cli("query", *args, "--format", "json")
        assert res.returncode == 0, (args, res.stderr)
        rows = json.loads(res.stdout)
        if any("superpopulation" in a and "GROUP BY" in a for a in args):
            assert {r["superpopulation"] for r in rows} >= {"EAS", "EUR", "AFR", "SAS", "AMR"}
            assert all(0 <= r["pm_percent"] <= 100 for r in rows)


def _query(base: Path, expr: str):
    res = cli("query", base, expr, "--format", "json")
    return res, (json.loads(res.stdout) if res.returncode == 0 else None)


def test_query_values_ignore_case_and_accept_phenotype_abbreviations(base):
    _, full = _query(base, "CYP2C19 phenotype == 'Poor Metabolizer'")
    assert full, "the 1KGP cohort has CYP2C19 poor metabolizers"
    for expr in ("CYP2C19 phenotype == PM", "CYP2C19 phenotype == 'poor metabolizer'", "CYP2C19 phenotype == pm"):
        res, rows = _query(base, expr)
        assert res.returncode == 0 and rows == full, (expr, res.stderr)
    _, eas = _query(base, "superpopulation == EAS and CYP2C19 phenotype == PM")
    _, eas_lower = _query(base, "superpopulation == eas and CYP2C19 phenotype == pm")
    assert eas and eas == eas_lower
    _, none = _query(base, "CYP2C19 phenotype != PM and CYP2C19 phenotype == PM")
    assert none == []


@pytest.mark.parametrize(("expr", "warning"), [
    ("CYP2C19 phenotype == 'Por Metabolizer'", "no sample has CYP2C19 phenotype 'Por Metabolizer'; values present: "),
    ("NUDT15 phenotype == PM", "NUDT15 is called for no sample of this cohort"),
    ("TPMT activity_score >= 1", "TPMT has no activity_score in this cohort"),
])
def test_a_condition_that_can_never_match_is_named_in_a_warning(base, expr, warning):
    res, rows = _query(base, expr)
    assert res.returncode == 0 and rows == []
    assert f"permed: warning: {warning}" in res.stderr, res.stderr


def test_an_unquoted_multi_word_value_is_told_to_be_quoted(base):
    res, _ = _query(base, "CYP2C19 phenotype == Poor Metabolizer")
    assert res.returncode == 2
    assert "query: Poor Metabolizer: quote a value of several words, e.g. 'Poor Metabolizer'" in res.stderr


def test_summary_colours_are_fixed_by_phenotype_and_every_gene_is_reachable(base, tmp_path):
    """A phenotype has one colour in every chart (Normal Metabolizer the same green for CYP2C19 and CYP2C9);
    at 1280 px the gene navigation wraps, so every gene's link is on screen; a gene no sample has a
    phenotype for says why (CYP2D6: not called from VCF by default)."""
    import re

    from helpers import ChromiumPage

    from permed.biobank.summary import phenotype_color

    html = (base / "summary.html").read_text()
    legends = {}
    for gene in ("CYP2C19", "CYP2C9", "TPMT"):
        section = html[html.index(f'<section id="{gene}">'):]
        section = section[:section.index("</section>")]
        legends[gene] = dict((v, c) for c, v in re.findall(r'fill="(#[0-9a-f]{6})"[^>]*/>\s*<text[^>]*>([^<]+)<',
                                                                 section))
    assert legends["CYP2C19"]["Normal Metabolizer"] == legends["CYP2C9"]["Normal Metabolizer"] \
        == phenotype_color("Normal Metabolizer")
    assert legends["CYP2C19"]["Poor Metabolizer"] == phenotype_color("Poor Metabolizer") != \
        phenotype_color("Normal Metabolizer")
    # values that determine nothing are fixed greys too
    assert legends["CYP2C19"]["(not determined)"] == legends["CYP2C9"]["(not determined)"]
    # every gene of the cohort (CYP2D6 is not called by default) is reachable and explained
    out = _cohort(tmp_path / "all", files=FILES + [DATA / "CYP2D6.vcf.gz"]) if (DATA / "CYP2D6.vcf.gz").exists() \
        else base
    page_html = (out / "summary.html").read_text()
    assert "Not determined for any sample: not called from VCF by default" in page_html
    with ChromiumPage(width=1280, height=800) as chrome:
        chrome.page.goto((out / "summary.html").as_uri())
        links = chrome.page.eval_on_selector_all("nav a", "els => els.map(e => e.getBoundingClientRect().right)")
        assert len(links) >= 20 and max(links) <= 1280, max(links)


def test_streamed_blocks_write_what_the_whole_cohort_writes(tmp_path):
    """`permed cohort` writes block by block (Engine.stream): with blocks of 700 samples over five files,
    per-sample CYP2D6 calls from a caller's file (incl. rows for unknown samples and a no-call) and populations,
    every table, the summary and the warnings equal writing the whole cohort's Result at once."""
    from permed.biobank.output import CohortTables, write_cohort_blocks
    from permed.biobank.populations import read_populations
    from permed.engine import Engine, Inputs
    from permed.options import Options

    cyrius = tmp_path / "cyrius.tsv"
    cyrius.write_text("Sample\tGenotype\tFilter\nHG00096\t*1/*2x2\tPASS\nNA21144\t*4/*5\tPASS\n"
                      "HG00097\tNone\tNone\nNOT-IN-VCF\t*1/*1\tPASS\n")
    inputs = Inputs.of(vcfs=FILES, outside_calls=[cyrius])
    pops = read_populations(POPS)
    engine = Engine()
    whole = CohortTables(engine.run(inputs, Options(evidence=False, advice=False)), pops)
    whole.write(tmp_path / "whole")
    blocks = list(engine.stream(inputs, Options(evidence=False, advice=False, split_samples=700)))
    assert [len(b.samples) for b in blocks] == [700, 700, 700, 700, 402]
    written = write_cohort_blocks(iter(blocks), tmp_path / "streamed", pops)
    assert written.n_samples == 3202 and written.outside_warnings == whole.result.phenotypes.outside_warnings
    assert any("NOT-IN-VCF" in w for w in written.outside_warnings)
    for name in ("calls", "frequencies", "samples"):
        a = (tmp_path / "whole" / f"{name}.parquet").read_bytes()
        assert a == (tmp_path / "streamed" / f"{name}.parquet").read_bytes(), name
    assert (tmp_path / "whole" / "summary.html").read_bytes() == (tmp_path / "streamed" / "summary.html").read_bytes()
    d6 = {(r["sample"], r["gene"]): r for r in pq.read_table(tmp_path / "streamed" / "calls.parquet").to_pylist()}
    assert d6[("HG00096", "CYP2D6")]["diplotype"] == "*1/*2x2" and d6[("NA21144", "CYP2D6")]["status"] != "not_called"
    assert d6[("HG00097", "CYP2D6")]["status"] == "outside_call_unusable"  # Cyrius made no call


def test_one_worker_reads_each_file_once_and_streams_blocks(tmp_path, monkeypatch):
    """One worker, no --split-samples: every file is read once, its chunks side by side with the other files',
    and blocks of at most MAX_BLOCK samples are assembled as they come; the files written equal the whole
    cohort's."""
    import permed.engine.engine as engine_module
    import permed.engine.units as units_module
    from permed.biobank.output import CohortTables, write_cohort_blocks
    from permed.engine import Engine, Inputs
    from permed.options import Options

    opened = []
    real = units_module.reader_for
    monkeypatch.setattr(units_module, "reader_for", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(engine_module, "MAX_BLOCK", 1000)
    engine, inputs = Engine(), Inputs.of(vcfs=FILES)
    blocks = list(engine.stream(inputs, Options(evidence=False, advice=False, chunk_size=300)))
    assert [len(b.samples) for b in blocks] == [900, 900, 900, 502]
    assert sorted(opened) == sorted(FILES)  # one pass per file
    write_cohort_blocks(iter(blocks), tmp_path / "streamed")
    CohortTables(engine.run(inputs, Options(evidence=False, advice=False))).write(tmp_path / "whole")
    for name in ("calls.parquet", "frequencies.parquet", "summary.html"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "streamed" / name).read_bytes(), name


def test_files_with_different_samples_are_streamed_as_one_block(tmp_path):
    """Two files naming different samples: one block with every sample, and the rows `permed call`
    gives for the same files."""
    from permed.biobank.output import write_cohort_blocks
    from permed.engine import Engine, Inputs
    from permed.options import Options

    a = write_vcf(tmp_path / "a.vcf", rec("chr10", 94781859, "G", "A", "0/1", "0/0"), samples=("S1", "S2"))
    b = write_vcf(tmp_path / "b.vcf", rec("chr10", 94781859, "G", "A", "1/1", "0/1"), samples=("S3", "S4"))
    blocks = list(Engine().stream(Inputs.of(vcfs=[a, b]), Options(evidence=False, advice=False)))
    assert len(blocks) == 1 and blocks[0].samples == ["S1", "S2", "S3", "S4"]
    write_cohort_blocks(iter(blocks), tmp_path / "cohort")
    rows = {(r["sample"], r["gene"]): r["diplotype"] for r in pq.read_table(tmp_path / "cohort" / "calls.parquet")
            .to_pylist()}
    r = cli("call", a, b, "-o", tmp_path / "call", "--no-sample-reports")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "call" / "calls.tsv") as fh:
        tsv = {(x["Sample"], x["Gene"]): x["Source Diplotype"] for x in csv.DictReader(fh, delimiter="\t")}
    assert rows == tsv and rows[("S3", "CYP2C19")] == "*2/*2"


def test_ordered_writes_keep_order_and_raise_a_failed_write():
    """calls.parquet's row groups are written by a thread: in the order given, and a failure is not lost."""
    import threading
    import time

    from permed.biobank.output import OrderedWrites

    done: list[int] = []

    def write(k: int) -> None:
        time.sleep(0.01 * (k % 3))  # later jobs finishing sooner must not overtake
        assert threading.current_thread() is not threading.main_thread()
        done.append(k)

    with OrderedWrites(depth=2) as queue:
        for k in range(8):
            queue.add(write, k)
        queue.finish()
    assert done == list(range(8))

    def fail(k: int) -> None:
        if k == 2:
            raise OSError("disk full")
        done.append(k)

    done.clear()
    with pytest.raises(OSError, match="disk full"):
        with OrderedWrites(depth=2) as queue:
            for k in range(6):
                queue.add(fail, k)
            queue.finish()
    assert done[:2] == [0, 1] and 2 not in done and len(done) <= 3  # queued jobs after a failure are dropped
