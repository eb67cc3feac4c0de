"""1000 Genomes (3,202 real phased GRCh38 genomes): regression, population sanity, worker invariance."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conformance import SHARED
from helpers import match

DATA = SHARED / "data" / "1kgp-grch38"
POPS = SHARED / "data" / "1kgp_populations.tsv"
REGRESSION = Path(__file__).parent / "data" / "1kgp_regression.tsv"
GENES = ("CYP2C19", "CYP2C9", "CYP3A5", "NUDT15", "SLCO1B1", "TPMT", "UGT1A1")

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")


@pytest.fixture(scope="module")
def callset():
    cs = match([DATA / f"{g}.vcf.gz" for g in GENES], genes=GENES)
    cs.by_sample = {s: cs.sample_calls(si) for si, s in enumerate(cs.samples)}  # built once
    return cs


def _label(callset, s, g) -> str:
    return " OR ".join(callset.by_sample[s][g].source_diplotypes)


def test_all_samples_called(callset):
    assert len(callset.samples) == 3202
    for g in GENES:
        statuses = Counter(callset.by_sample[s][g].status for s in callset.samples)
        assert statuses["called"] > 3000, (g, statuses)


def test_regression_table(callset):
    """Today's calls, pinned: every 10th sample, and per-gene call counts over all samples."""
    rows = list(csv.DictReader(REGRESSION.open(), delimiter="\t"))
    counts = defaultdict(Counter)
    for s in callset.samples:
        for g in GENES:
            counts[g][_label(callset, s, g)] += 1
    n_sample_rows = 0
    for r in rows:
        if r["kind"] == "count":
            assert counts[r["gene"]][r["call"]] == int(r["sample_or_count"]), r
        else:
            n_sample_rows += 1
            assert _label(callset, r["sample_or_count"], r["gene"]) == r["call"], r
    assert n_sample_rows == 321 * len(GENES)


def test_population_differences(callset):
    """Known pharmacogenetics: CYP2C19 poor metabolisers (*2,*3) are commoner in EAS/SAS than EUR;
    CYP3A5 *3 is the majority allele in EUR but not in AFR; NUDT15 *3 is an East Asian allele."""
    with POPS.open() as fh:
        superpop = {r["sample"]: r["superpopulation"] for r in csv.DictReader(fh, delimiter="\t")}
    assert set(superpop.values()) >= {"AFR", "AMR", "EAS", "EUR", "SAS"}

    def freq(gene: str, allele: str, group: str) -> float:
        n = hits = 0
        for s in callset.samples:
            if superpop.get(s) != group:
                continue
            c = callset.by_sample[s][gene]
            if c.status != "called" or len(c.diplotypes) != 1:
                continue
            n += 2
            hits += sum(h.name == allele for h in c.diplotypes[0].haplotypes)
        return hits / n

    assert freq("CYP2C19", "*2", "EAS") > 1.5 * freq("CYP2C19", "*2", "EUR")
    assert freq("CYP2C19", "*3", "EAS") > 0.03 > freq("CYP2C19", "*3", "EUR")
    assert freq("CYP3A5", "*3", "EUR") > 0.8 and freq("CYP3A5", "*3", "AFR") < 0.4
    assert freq("NUDT15", "*3", "EAS") > 0.05 > freq("NUDT15", "*3", "EUR")


@pytest.mark.parametrize("missing_to_ref", [False, True])
def test_index_window_reading_matches_streaming(missing_to_ref):
    """Indexed files are read through windows around definition positions (by chromosome with
    workers); calls, warnings and notices must equal those of a full pass over every record."""
    files = sorted(DATA.glob("*.vcf.gz")) if not missing_to_ref else [
        DATA / f for f in ("CACNA1S.vcf.gz", "CYP2B6.vcf.gz", "RYR1.vcf.gz", "IFNL3.vcf.gz")]
    full = match(files, use_index=False, missing_to_ref=missing_to_ref)
    # two workers split indexed files by chromosome (each unit reads its windows); one reads them all
    win = match(files, workers=1 if missing_to_ref else 2, missing_to_ref=missing_to_ref)
    assert win.samples == full.samples
    for g in full.genes:
        for i, j in set(zip(full.choice[g].tolist(), win.choice[g].tolist())):
            assert full.table[i] == win.table[j], g
        assert (full.source[g] == win.source[g]).all()
    assert [(i.notices, i.position_warnings) for i in full.inputs] == \
        [(i.notices, i.position_warnings) for i in win.inputs]
    assert full.sample_warnings == win.sample_warnings
