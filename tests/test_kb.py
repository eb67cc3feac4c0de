"""Knowledge base: built reproducibly from the PharmCAT release, faithful to it, refused when damaged."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conformance import SHARED
from helpers import cli

from permed.errors import KnowledgeBaseError
from permed.kb.load import load_kb, load_kb_file

RELEASE = SHARED / "reference" / "pharmcat"
PHENO_2024 = SHARED / "reference" / "pharmcat-2024-05" / "phenotype" / "cpic"
PYPGX = SHARED / "reference" / "pypgx"
needs_release = pytest.mark.skipif(not RELEASE.exists(), reason="../shared/reference/pharmcat not available")


def test_packaged_kb_loads_with_provenance():
    kb = load_kb()
    assert kb.schema_ == "permed.kb/2"
    assert len(kb.genes) == 20
    assert kb.sources[0].release == "3.1.1"
    assert kb.sources[0].data_version == "2025-11-05-00-25"
    assert "CC BY-SA 4.0" in kb.licence and "CC0" in kb.licence
    assert kb.sha256 and len(kb.sha256) == 64


@needs_release
def test_kb_build_is_reproducible(tmp_path):
    """scripts/build_kb.sh (the command that built the packaged KB) rebuilds it bit for bit."""
    packaged = load_kb()
    out = tmp_path / "kb.json.gz"
    root = Path(__file__).parents[1]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run(["bash", str(root / "scripts" / "build_kb.sh"), "--output", str(out)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert load_kb_file(out).sha256 == packaged.sha256


@needs_release
def test_kb_phenotype_tables_match_sources():
    """Every diplotype row of every PharmCAT phenotype file is carried over unchanged."""
    kb = load_kb()
    files = {p.stem: p for p in sorted((RELEASE / "phenotype").glob("*.json"))}
    files.setdefault("CYP2D6", PHENO_2024 / "CYP2D6.json")
    for stem, path in files.items():
        raw = json.loads(path.read_text())
        gp = kb.phenotypes[raw["gene"]]
        assert len(gp.rows) == len(raw["diplotypes"])
        for d in raw["diplotypes"]:
            key = tuple(sorted(n for n, c in d["diplotypekey"].items() for _ in range(c)))
            row = gp.lookup(key)
            assert (row.phenotype, row.activity_score, row.lookup_key) == (
                d["phenotype"], d.get("activityScore"), d["lookupkey"]), (stem, key)
        for a in raw["namedAlleles"]:
            if a.get("functionValue"):
                assert gp.functions[a["name"]] == a["functionValue"]


@needs_release
def test_kb_phenotype_spot_facts():
    ph = load_kb().phenotypes
    assert ph["CYP2C19"].lookup(("*17", "*2")).phenotype == "Intermediate Metabolizer"
    assert ph["CYP2C19"].lookup(("*38", "*38")).phenotype == "Normal Metabolizer"
    cyp2c9 = ph["CYP2C9"].lookup(("*1", "*2"))
    assert (cyp2c9.phenotype, cyp2c9.activity_score) == ("Intermediate Metabolizer", "1.5")
    assert ph["CYP2D6"].lookup(("*1", "*4")).activity_score == "1.0"
    assert ph["DPYD"].activity["c.1905+1G>A (*2A)"] == "0.0"
    # G6PD from PyPGx: hemizygous male rows are single-allele keys
    assert ph["G6PD"].lookup(("B (reference)",)).phenotype == "Normal"
    assert ph["RYR1"].rule == "malignant-hyperthermia"
    # PyPGx lists the MH-associated RYR1 alleles; other defined alleles are of uncertain function
    assert ph["RYR1"].functions["c.103T>C"] == "Malignant Hyperthermia Associated"
    assert ph["RYR1"].functions["c.152C>A"] == "Uncertain function"
    assert ph["RYR1"].functions["Reference"] == "Normal function"
    assert {"PharmCAT", "PyPGx"} <= {s.release.split()[0] for s in load_kb().sources[1:]}


@needs_release
def test_kb_preserves_every_definition_fact():
    kb = load_kb()
    for path in sorted((RELEASE / "definition").glob("*_translation.json")):
        raw = json.loads(path.read_text())
        gene = kb.genes[raw["gene"]]
        assert [(loc.position, loc.ref, list(loc.alts), loc.rsid) for loc in gene.loci] == [
            (v["position"], v["ref"], v["alts"], v["rsid"]) for v in raw["variants"]
        ]
        assert [a.name for a in gene.alleles] == [a["name"] for a in raw["namedAlleles"]]
        for ours, theirs in zip(gene.alleles, raw["namedAlleles"]):
            assert ours.defined == {i: x for i, x in enumerate(theirs["alleles"]) if x is not None}
            # score = number of defined positions (the release leaves CYP2D6 *1's score at 0: recomputed)
            assert ours.score == sum(x is not None for x in theirs["alleles"])
            assert theirs["score"] in (0, ours.score)
            assert ours.reference == theirs["reference"]


@needs_release
def test_kb_carries_exemptions():
    kb = load_kb()
    nat2 = kb.genes["NAT2"].exemptions
    assert 18400194 in nat2.required_positions
    assert any(p.pick == "*1/*6" and "*4/*34" in p.diplotypes for p in nat2.unphased_priorities)
    assert [x.rsid for x in kb.genes["CYP2C9"].exemptions.extra_loci] == ["rs12777823"]


def _packaged_bytes() -> bytes:
    from importlib import resources

    return (resources.files("permed.kb") / "data" / "permed-kb.json.gz").read_bytes()


def _packaged_json() -> dict:
    """The packaged KB file as JSON: {"sha256": ..., "kb": body}."""
    data = json.loads(gzip.decompress(_packaged_bytes()))
    assert set(data) == {"sha256", "kb"} and data["kb"]["schema"] == "permed.kb/2"
    return data


def _resealed(body: dict) -> str:
    """A KB file whose checksum matches its (edited) body, so that what is checked is the content."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps({"sha256": hashlib.sha256(canonical).hexdigest(), "kb": body})


def test_truncated_kb_is_refused(tmp_path):
    bad = tmp_path / "kb.json.gz"
    bad.write_bytes(_packaged_bytes()[:500])
    res = cli("call", "--example", "--kb", bad, "-o", tmp_path / "out")
    assert res.returncode == 3
    assert "kb.json.gz" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_edited_kb_fails_checksum(tmp_path):
    data = _packaged_json()
    data["kb"]["genes"]["CYP2C19"]["loci"][0]["ref"] = "G"  # a single changed fact
    bad = tmp_path / "kb.json"
    bad.write_text(json.dumps(data))
    res = cli("kb", "info", "--kb", bad)
    assert res.returncode == 3
    assert "checksum mismatch" in res.stderr


def test_wrong_schema_is_refused(tmp_path):
    bad = tmp_path / "kb.json"
    bad.write_text(json.dumps({"schema": "permed.kb/99", "genes": {}}))
    res = cli("kb", "info", "--kb", bad)
    assert res.returncode == 3
    assert "permed.kb/99" in res.stderr


def test_invalid_definition_is_refused(tmp_path):
    data = _packaged_json()
    data["kb"]["genes"]["TPMT"]["alleles"][1]["defined"] = {"9999": "A"}
    bad = tmp_path / "kb.json"
    bad.write_text(_resealed(data["kb"]))
    res = cli("kb", "info", "--kb", bad)
    assert res.returncode == 3
    assert "out of range" in res.stderr


def test_a_permed_kb_1_file_still_loads(tmp_path):
    """KB files from before the compact phenotype tables (one JSON document, rows one by one) load to
    the same facts."""
    kb = load_kb()
    body = kb.model_dump(mode="json", by_alias=True, exclude={"sha256"})
    body["schema"] = "permed.kb/1"
    for section in ("phenotypes", "phenotypes_dpwg"):
        for gene, gp in body[section].items():
            del gp["table"]
            gp["rows"] = [r._asdict() for r in getattr(kb, section)[gene].rows]
    old_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**body, "sha256": old_hash}, indent=1))
    loaded = load_kb_file(old)
    assert loaded.sha256 == old_hash and loaded.schema_ == "permed.kb/2"
    assert loaded.genes == kb.genes and loaded.guidelines == kb.guidelines
    assert all(loaded.phenotypes[g].rows == kb.phenotypes[g].rows for g in kb.phenotypes)
    body["genes"]["TPMT"]["loci"][0]["ref"] = "G"
    old.write_text(json.dumps({**body, "sha256": old_hash}))
    with pytest.raises(KnowledgeBaseError, match="checksum mismatch"):
        load_kb_file(old)


def test_a_checksummed_file_of_another_schema_is_refused(tmp_path):
    """A file whose checksum is right but whose body is of another schema is refused, not read as ours."""
    data = _packaged_json()
    data["kb"]["schema"] = "permed.kb/99"
    bad = tmp_path / "kb.json"
    bad.write_text(_resealed(data["kb"]))
    res = cli("kb", "info", "--kb", bad)
    assert res.returncode == 3 and "knowledge base schema 'permed.kb/99' is not 'permed.kb/2'" in res.stderr


def test_a_malformed_phenotype_row_is_a_knowledge_base_error(tmp_path):
    """Rows are checked when first looked up; a damaged one is reported as the KB's fault, not a crash."""
    data = _packaged_json()
    table = data["kb"]["phenotypes"]["CYP2C19"]["table"]
    table["rows"] = table["rows"].replace(";", ";99999,0,,0;", 1)  # an allele index past the end
    bad = tmp_path / "kb.json"
    bad.write_text(_resealed(data["kb"]))
    gp = load_kb_file(bad).phenotypes["CYP2C19"]
    with pytest.raises(KnowledgeBaseError, match="phenotype table row '99999,0,,0' is malformed"):
        gp.table.decode()


def test_kb_build_refuses_missing_source(tmp_path):
    res = cli("kb", "build", "--source", tmp_path, "--output", tmp_path / "kb.json.gz")
    assert res.returncode == 2
    assert "no *_translation.json" in res.stderr
    assert not (tmp_path / "kb.json.gz").exists()


def _rec(kb, source, drug, **lookup):
    return [r for g in kb.guidelines if g.source == source and drug in [d.name for d in g.drugs]
            for r in g.recommendations if drug in r.drugs and r.lookup == lookup]


def test_guideline_facts():
    kb = load_kb()
    assert {g.source for g in kb.guidelines} == {"CPIC", "DPWG"} and len(kb.guidelines) == 118
    (cape,) = _rec(kb, "CPIC", "capecitabine", DPYD="1.0")
    assert cape.action == "dose_decrease" and cape.dose_factor == (0.5, 0.5) and cape.strength == "Strong"
    (codeine_pm,) = _rec(kb, "CPIC", "codeine", CYP2D6="0.0")
    assert codeine_pm.action == "avoid"
    clop = _rec(kb, "CPIC", "clopidogrel", CYP2C19="Poor Metabolizer")
    assert clop and all(r.action == "avoid" for r in clop)
    assert {"prasugrel", "ticagrelor"} <= set(clop[0].alternatives)
    (nm,) = _rec(kb, "CPIC", "codeine", CYP2D6="1.5")
    assert nm.action == "standard"
    # DPWG keys some records by exact diplotype
    assert _rec(kb, "DPWG", "phenytoin", CYP2C9={"*2": 2})
    abacavir = kb.drug_codes("abacavir") if hasattr(kb, "drug_codes") else next(
        d for g in kb.guidelines for d in g.drugs if d.name == "abacavir")
    assert abacavir.rxnorm == "190521" and "J05AF06" in abacavir.atc


def test_guideline_text_is_not_stored():
    raw = gzip.decompress(_packaged_bytes()).decode()
    assert "Reduce starting dose by 50% followed by titration" not in raw
    assert '"html"' not in raw and '"implications"' not in raw
    kb = load_kb()
    summaries = {r.summary for g in kb.guidelines for r in g.recommendations}
    assert len(summaries) < 400  # templated from the facts, not per-recommendation prose
