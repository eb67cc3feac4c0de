"""Biobank scale (issue 16): the vectorised matcher gives the same GeneCalls as the per-pattern decision
flow, on 1000 Genomes and on perturbed patterns (unphased, missing, homozygous, haploid, swapped
strands, missing alleles)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conformance import SHARED

from permed.engine.units import match_options, read_options
from permed.genotypes.model import ABSENT, FILLED, MISSING_ALLELE, NO_ALLELE
from permed.genotypes.vcf_reader import VcfReader
from permed.kb.load import load_kb
from permed.matcher.gene_caller import MatchOptions
from permed.matcher.patterns import (
    PatternCaller,
    _canonical_phase_sets,
    outcome_keys,
    pattern_groups,
    sample_alleles,
)
from permed.options import Options

DATA = SHARED / "data" / "1kgp-grch38"
needs_1kgp = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")


@pytest.fixture(scope="module")
def kb():
    return load_kb()


@pytest.fixture(scope="module")
def syn24k(tmp_path_factory) -> Path:
    """24,000 synthetic samples (benchmarks/synthetic_cohort.py), one plain-gzip file: split by samples."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from synthetic_cohort import write_cohort_vcf

    vcf = tmp_path_factory.mktemp("syn") / "syn.vcf.gz"
    write_cohort_vcf(24_000, vcf, DATA)
    return vcf


def _read(kb, path: Path, genes=None, options: Options | None = None):
    options = options or Options(evidence=False, advice=False)
    genes = genes or sorted(kb.genes)
    return VcfReader(path, kb, genes, read_options(options), with_sha256=False).read()


def _assert_exact_groups(gg) -> None:
    """pattern_groups (which both paths share) puts two samples together exactly when their status, alleles,
    phase, phase-set structure and report-only positions are all equal."""
    first, inverse = pattern_groups(gg)
    n, L = gg.status.shape
    rows = np.concatenate([gg.status.astype(np.int64), gg.gt.reshape(n, -1).astype(np.int64),
                           gg.phased.astype(np.int64), _canonical_phase_sets(gg.phase_set).astype(np.int64),
                           *([np.stack([x["codes"] for x in gg.extra], axis=1).astype(np.int64)] if gg.extra else [])],
                          axis=1)
    assert (rows == rows[first[inverse]]).all()  # everyone equals their group's representative
    assert len(np.unique(rows[first], axis=0)) == len(first)  # representatives all differ


def _assert_same(gg, options: MatchOptions, evidence: bool = False) -> int:
    """Per-sample calls of the vectorised path equal the per-pattern path's; returns the pattern count."""
    _assert_exact_groups(gg)
    fast = PatternCaller(options, evidence=evidence)
    slow = PatternCaller(options, evidence=evidence, vectorised=False)
    a, ia = fast.call(gg)
    b, ib = slow.call(gg)
    assert (ia == ib).all()
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"{gg.gene} pattern {i}:\n{x}\n!=\n{y}"
    return len(a)


@needs_1kgp
@pytest.mark.parametrize("file", sorted(p.name for p in DATA.glob("*.vcf.gz")) if DATA.exists() else [])
def test_vectorised_matching_equals_per_pattern_on_1kgp(kb, file):
    gs = _read(kb, DATA / file)
    n = 0
    for gg in gs.genes.values():
        if gg.status.any() or gg.extra:
            n += _assert_same(gg, match_options(Options()))
    assert n or file in ("CACNA1S.vcf.gz", "IFNL3.vcf.gz")  # these files do not reach definition positions


def _perturbed(gg, seed: int):
    """The same gene with random changes that take patterns in and out of the fast path."""
    rng = np.random.default_rng(seed)
    n, L = gg.status.shape
    gt, status, phased = gg.gt.copy(), gg.status.copy(), gg.phased.copy()
    phase_set = gg.phase_set.copy()
    pick = lambda p: rng.random((n, L)) < p  # noqa: E731
    phased[pick(0.05)] = False  # unphased heterozygous positions: one is still two strands, two are not
    status[pick(0.02)] = ABSENT  # missing positions (other hapsets, re-scoring)
    swap = rng.random(n) < 0.3
    gt[swap] = gt[swap][:, :, ::-1]  # strands in the other order
    hom = rng.random(n) < 0.05
    gt[hom, :, 1] = gt[hom, :, 0]
    gt[pick(0.002), 1] = MISSING_ALLELE  # partially missing calls
    hap = rng.random(n) < 0.01
    gt[hap, :, 1] = NO_ALLELE  # haploid samples
    ps = pick(0.01)
    phase_set[ps] = 1000 + rng.integers(0, 2, ps.sum())  # phase sets
    fill = (status == ABSENT) & pick(0.3)
    status[fill] = FILLED
    gt[fill] = 0
    return dataclasses.replace(gg, gt=gt, status=status, phased=phased, phase_set=phase_set)


@needs_1kgp
@pytest.mark.parametrize("gene", ["CYP2C19", "CYP2C9", "TPMT", "SLCO1B1", "UGT1A1", "NAT2", "CYP2B6", "RYR1",
                                  "G6PD", "CYP4F2"])
def test_vectorised_matching_equals_per_pattern_on_perturbed_patterns(kb, gene):
    gs = _read(kb, DATA / f"{gene}.vcf.gz", [gene])
    gg = gs.genes[gene]
    sub = dataclasses.replace(gg, gt=gg.gt[:800], status=gg.status[:800], phased=gg.phased[:800],
                              phase_set=gg.phase_set[:800],
                              extra=[{**x, "codes": x["codes"][:800], "calls": x["calls"][:800]} for x in gg.extra])
    for seed in range(3):
        p = _perturbed(sub, seed)
        _assert_same(p, MatchOptions())
        ok = outcome_keys(p, pattern_groups(p)[0], PatternCaller(MatchOptions()).caller(p))[2]
        assert ok.any() and not ok.all()  # both paths taken
    _assert_same(_perturbed(sub, 7), MatchOptions(top_candidate_only=False))


@needs_1kgp
def test_per_position_alleles_shared_between_samples_equal_each_samples_own(kb):
    """The decision flow reuses one SampleAllele per gene context and per-position state (codes, phase,
    phase set): every sample still gets exactly the alleles made for it alone, across genes (files) and
    across GenotypeSets of one gene that share its context (as a file's chunks do)."""
    caller = PatternCaller(MatchOptions())
    for gene in ("CYP2C19", "UGT1A1", "RYR1"):
        gg = _read(kb, DATA / f"{gene}.vcf.gz", [gene]).genes[gene]
        for seed in (1, 2):
            p = _perturbed(gg, seed)
            for si in range(0, p.status.shape[0], 3):
                assert caller._sample_alleles(p, si) == sample_alleles(p, si, False), f"{gene} sample {si}"
            assert (p.phase_set != 0).any() and (p.gt[:, :, 1] == NO_ALLELE).any()  # the states that vary


def _random_strands(kb, gene: str, n: int, seed: int, rate: float, undocumented: bool = False):
    """`n` samples of `gene`, each two strands drawn from a pool of 120 random strands that carry each
    definition ALT with probability `rate` (so strands with several variants in cis, which no single named
    allele explains, and the same two strands in either order), some homozygous, unphased at one or more
    heterozygous positions, with missing or reference-filled positions (and, if asked, an allele the
    definitions do not know at a tenth of the positions, carried by a few strands)."""
    from permed.genotypes.model import CALLED, GeneGenotypes

    gdef = kb.genes[gene]
    rng = np.random.default_rng(seed)
    L = len(gdef.loci)
    n_alts = np.array([len(loc.alts) for loc in gdef.loci])
    pool = np.where(rng.random((120, L)) < rate, 1 + rng.integers(0, 1 << 16, (120, L)) % n_alts, 0)
    pool[:20] = 0
    pool[np.arange(20), rng.integers(0, L, 20)] = 1  # single-variant strands: named alleles, most of them
    if gene == "DPYD":  # HapB3 from both variants, the exonic one alone, the intronic one alone
        from permed.matcher.hapb3 import EXONIC_POSITION, INTRONIC_POSITION

        at = {loc.position: li for li, loc in enumerate(gdef.loci)}
        pool[20:45, at[EXONIC_POSITION]] = 1
        pool[20:35, at[INTRONIC_POSITION]] = 1
        pool[45:50, at[INTRONIC_POSITION]] = 1
    alleles = [[loc.ref, *loc.alts] for loc in gdef.loci]
    if undocumented:
        for li in rng.choice(L, L // 10, replace=False):
            other = next(b for b in "ACGT" if b not in alleles[li])
            alleles[li].append(other)
            pool[rng.integers(50, 120, 3), li] = len(alleles[li]) - 1
    gt = np.stack([pool[rng.integers(0, 120, n)], pool[rng.integers(0, 120, n)]], axis=2).astype(np.int16)
    hom = rng.random(n) < 0.1
    gt[hom, :, 1] = gt[hom, :, 0]
    status = np.full((n, L), CALLED, dtype=np.int8)
    status[rng.random((n, L)) < 0.002] = ABSENT
    fill = (status == ABSENT) & (rng.random((n, L)) < 0.3)
    status[fill] = FILLED
    gt[status == ABSENT] = MISSING_ALLELE
    gt[fill] = 0
    phased = rng.random((n, L)) > 0.002
    return GeneGenotypes(gene=gene, definition=gdef, alleles=alleles, gt=gt,
                         status=status, phased=phased, phase_set=np.zeros((n, L), dtype=np.int32))


@pytest.mark.parametrize("gene", ["DPYD", "RYR1"])
def test_lowest_function_genes_are_matched_by_strand_pairs(kb, gene):
    """The lowest-function genes (combinations and partial alleles named from a strand's own variants; DPYD's
    HapB3 from two positions) go through the vectorised path too: every pattern whose strands are known is
    keyed by its unordered pair of strands, and the calls equal the per-pattern decision flow's."""
    gg = _random_strands(kb, gene, 1500, 5, 0.02)
    caller = PatternCaller(MatchOptions())
    first = pattern_groups(gg)[0]
    ok = outcome_keys(gg, first, caller.caller(gg))[2]
    assert ok.mean() > 0.8 and not ok.all()
    _assert_same(gg, MatchOptions())
    calls, _ = PatternCaller(MatchOptions()).call(gg)
    labels = {lab for c in calls for lab in c.source_diplotypes}
    assert any("+" in lab for lab in labels)  # combinations on a strand were called
    if gene == "DPYD":
        assert any("HapB3" in lab for lab in labels)


@pytest.mark.parametrize("gene", ["RYR1", "TPMT", "CYP2C19"])
def test_undocumented_alleles_read_as_reference_take_the_vectorised_path(kb, gene):
    """Genes that read undocumented alleles as the reference (RYR1, TPMT) key strands with them read so, and the
    call lists where they were; other genes (CYP2C19) leave such patterns to the decision flow. Either way the
    calls equal the per-pattern flow's."""
    from permed.kb.policy import undocumented_as_reference

    gg = _random_strands(kb, gene, 1500, 11, 0.01, undocumented=True)
    n_known = np.array([1 + len(loc.alts) for loc in gg.definition.loci])
    first = pattern_groups(gg)[0]
    with_undocumented = (gg.gt[first] >= n_known[None, :, None]).any(axis=(1, 2))
    assert with_undocumented.sum() > 50
    ok = outcome_keys(gg, first, PatternCaller(MatchOptions()).caller(gg))[2]
    assert ok[with_undocumented].any() == undocumented_as_reference(gene, False)
    _assert_same(gg, MatchOptions())
    calls, inverse = PatternCaller(MatchOptions()).call(gg)
    assert any(c.undocumented_positions for c in calls)


def test_pattern_groups_tell_apart_every_difference(kb):
    """Copies of one patient that each differ in one thing only, each at its own position (phase, status,
    alleles, phase set, a report-only position), are patterns of their own; unchanged copies join the original's."""
    from permed.examples import example_vcf

    gg = _read(kb, Path(example_vcf()), ["CYP2C9"]).genes["CYP2C9"]
    k = 7
    rep = lambda a: np.repeat(a, k, axis=0).copy()  # noqa: E731
    gt, status, phased, ps = rep(gg.gt), rep(gg.status), rep(gg.phased), rep(gg.phase_set)
    extra = [{**x, "codes": rep(x["codes"])} for x in gg.extra]
    called = np.flatnonzero(status[0] != ABSENT)
    phased[1, called[0]] = not phased[1, called[0]]
    status[2, called[1]] = FILLED  # the same alleles, read as reference-filled
    gt[3, called[2]] = [gt[3, called[2], 0], 1 - gt[3, called[2], 0]]  # a heterozygous call where it was not
    ps[4, called[3]] = 17
    assert extra, "CYP2C9 carries a report-only position"
    extra[0]["codes"][5] = extra[0]["codes"][5] + 1
    p = dataclasses.replace(gg, gt=gt, status=status, phased=phased, phase_set=ps, extra=extra)
    _assert_exact_groups(p)
    first, inverse = pattern_groups(p)
    assert len(first) == 6 and inverse[6] == inverse[0]


def test_vectorised_matching_on_the_example_patient(kb):
    # a single sample is one pattern: the decision flow as ever
    from permed.examples import example_vcf

    gs = _read(kb, Path(example_vcf()))
    for gg in gs.genes.values():
        if gg.status.any():
            _assert_same(gg, MatchOptions())


@needs_1kgp
def test_big_plain_file_is_split_by_samples_and_gives_the_same_tables(tmp_path, kb, syn24k):
    """A single unindexed file of >= 20,000 samples is cut into one sample slice per worker; the
    tables equal those of one worker (and of explicit slices with small chunks)."""
    import pyarrow.parquet as pq
    from helpers import cli

    from permed.engine.units import interleaved_slices, plan_units

    vcf = syn24k
    genes = [g for g in sorted(kb.genes) if g != "CYP2D6"]
    names = tuple(f"SYN{i:07d}" for i in range(24_000))
    units = plan_units([vcf], [str(vcf)], kb, genes, Options(workers=2), [names])
    assert [u.samples for u in units] == [((0, 12_000),), ((12_000, 24_000),)]
    # a streamed run's workers take alternate chunks instead (the "two" run below: 10,000-sample chunks)
    assert interleaved_slices(24_000, 2, 10_000) == [((0, 10_000), (20_000, 24_000)), ((10_000, 20_000),)]
    assert interleaved_slices(5, 3, 10) == [((0, 5),)]
    assert [u.samples for u in plan_units([vcf], [str(vcf)], kb, genes, Options(), [names])] == [None]
    outs = {}
    for name, extra in (("one", ["--workers", "1"]), ("two", ["--workers", "2"]),
                        ("slices", ["--workers", "2", "--split-samples", "7000", "--chunk-size", "3000"]),
                        ("alternate", ["--workers", "2", "--chunk-size", "3000"])):
        r = cli("cohort", vcf, "-o", tmp_path / name, "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = {t: pq.read_table(tmp_path / name / f"{t}.parquet") for t in ("calls", "frequencies")}
    for name in ("two", "slices", "alternate"):
        for t in ("calls", "frequencies"):
            assert outs[name][t].equals(outs["one"][t]), (name, t)


def test_lowest_function_gene_whose_strands_match_no_allele_is_called(tmp_path):
    """RYR1 (lowest-function gene) in a cohort run: when every pattern has a strand carrying two variants in cis
    (no single named allele), the vectorised path hands them all to the decision flow (it used to crash)."""
    from helpers import HEADER, match, rec, write_vcf

    body = (rec("chr19", 38433867, "T", "G", "1|0", "1|0") + rec("chr19", 38440796, "A", "G", "1|0", "0|0")
            + rec("chr19", 38440802, "T", "C", "0|0", "1|0"))
    p = write_vcf(tmp_path / "ryr1.vcf", body, samples=("A", "B"),
                  header=HEADER + "##contig=<ID=chr19,length=58617616>\n")
    cohort = match([p], genes=("RYR1",), evidence=False)
    single = match([p], genes=("RYR1",))
    for i in range(2):
        assert cohort.call(i, "RYR1").source_diplotypes == single.call(i, "RYR1").source_diplotypes
    assert cohort.call(0, "RYR1").source_diplotypes == ["[c.38T>G + c.97A>G] (heterozygous)"]


@needs_1kgp
def test_100k_cohort_equals_permed_call_on_a_sample_slice(tmp_path):
    """Issue 16's check at scale: a 100,000-sample synthetic cohort (one plain-gzip file) run by `permed cohort`
    with 2 workers (sample slices, blocks streamed to the tables) gives, for 600 samples around the slices'
    boundary, the rows `permed call` gives for a VCF of those samples alone."""
    import csv
    import gzip
    import sys

    import pyarrow.parquet as pq
    from helpers import cli

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from synthetic_cohort import write_cohort_vcf

    vcf = tmp_path / "syn100k.vcf.gz"
    write_cohort_vcf(100_000, vcf, DATA)
    lo, hi = 49_700, 50_300
    with gzip.open(vcf, "rt") as src, open(tmp_path / "slice.vcf", "w") as dst:
        for line in src:
            if line.startswith("##"):
                dst.write(line)
                continue
            fields = line.rstrip("\n").split("\t")
            dst.write("\t".join(fields[:9] + fields[9 + lo:9 + hi]) + "\n")
    r = cli("cohort", vcf, "-o", tmp_path / "cohort", "--workers", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("call", tmp_path / "slice.vcf", "-o", tmp_path / "call", "--no-sample-reports")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "call" / "calls.tsv") as fh:
        tsv = [row for row in csv.DictReader(fh, delimiter="\t")]
    wanted = {f"SYN{i:07d}" for i in range(lo, hi)}
    table = pq.read_table(tmp_path / "cohort" / "calls.parquet",
                          filters=[("sample", "in", sorted(wanted))]).to_pylist()
    rows = {(x["sample"], x["gene"]): x for x in table}
    assert len(tsv) == len(rows) == 600 * 20
    for b in tsv:
        a = rows[(b["Sample"], b["Gene"])]
        assert (a["diplotype"], a["phenotype"], a["activity_score"], a["status"], a["missing_positions"]) == (
            b["Source Diplotype"], b["Phenotype"], b["Activity Score"], b["Status"], b["Missing Positions"])
        assert (a["haplotype_1"], a["haplotype_2"], ";".join(a["flags"])) == (
            b["Haplotype 1"], b["Haplotype 2"], b["Warnings"])


def _with_bad_genotype(good: Path, out: Path) -> Path:
    """`good` with sample 20,000's GT in a middle record made unreadable: only the worker whose sample ranges
    hold it (the first of two: chunks 0-10,000 and 20,000-24,000) meets it."""
    import gzip

    lines = gzip.open(good, "rt").read().split("\n")
    body = [i for i, x in enumerate(lines) if x and not x.startswith("#")]
    row = lines[body[len(body) // 2]].split("\t")
    row[9 + 20_000] = "0|X"
    lines[body[len(body) // 2]] = "\t".join(row)
    with gzip.open(out, "wt") as fh:
        fh.write("\n".join(lines))
    return out


def _assert_clean_failure(r, out: Path) -> None:
    assert r.returncode == 2, r.stderr
    lines_err = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines_err) == 1 and "bad.vcf.gz" in lines_err[0] and "Traceback" not in r.stderr, r.stderr
    assert "GT" in lines_err[0] and "columns" not in lines_err[0]  # what is wrong, not a miscount of columns
    assert not out.exists()


@needs_1kgp
def test_a_bad_genotype_seen_by_one_worker_fails_the_streamed_run_cleanly(tmp_path, syn24k):
    """One worker meets the bad GT while the run is already writing blocks: one-line error, exit 2, no output."""
    from helpers import cli

    bad = _with_bad_genotype(syn24k, tmp_path / "bad.vcf.gz")
    r = cli("cohort", bad, "-o", tmp_path / "out", "--workers", "2", "--quiet")
    _assert_clean_failure(r, tmp_path / "out")


@needs_1kgp
def test_dask_cluster_streams_chunks_like_local_workers(tmp_path, syn24k):
    """On a Dask cluster a big single file is split by samples over the cluster's workers, whose units send
    chunks through a Dask queue as they make them: the files are byte-identical to one local worker's, and a
    bad genotype met by one Dask worker fails the run as locally."""
    distributed = pytest.importorskip("distributed")
    from helpers import cli

    local = cli("cohort", syn24k, "-o", tmp_path / "local", "--workers", "1", "--quiet")
    assert local.returncode == 0, local.stderr
    bad = _with_bad_genotype(syn24k, tmp_path / "bad.vcf.gz")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        r = cli("cohort", syn24k, "-o", tmp_path / "dask", "--scheduler", cluster.scheduler_address, "--quiet")
        assert r.returncode == 0, r.stderr
        # the work went to both workers as streamed units (one per worker), not as one whole unit
        streamed = [k for k in cluster.scheduler.task_prefixes if str(k).startswith("permed-stream")]
        failed = cli("cohort", bad, "-o", tmp_path / "out", "--scheduler", cluster.scheduler_address, "--quiet")
        # workers running another permed than the client's (here: told so) refuse the packaged KB's tasks
        with distributed.Client(cluster) as client:
            client.run(lambda: setattr(__import__("permed"), "__version__", "0.0.0-other"))
        stale = cli("cohort", syn24k, "-o", tmp_path / "stale", "--scheduler", cluster.scheduler_address, "--quiet")
    for name in ("calls.parquet", "frequencies.parquet"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert streamed, "no streamed units ran on the cluster"
    _assert_clean_failure(failed, tmp_path / "out")
    assert stale.returncode == 64, stale.stderr  # a configuration error, like a scheduler it cannot reach
    message = [x for x in stale.stderr.splitlines() if x.strip()]
    assert len(message) == 1 and "permed 0.0.0-other" in message[0], stale.stderr
    assert "install the same permed on the workers" in message[0] and "Traceback" not in stale.stderr
    assert not (tmp_path / "stale").exists()


def test_dask_stream_drops_chunks_a_rerun_unit_sends_again():
    """Dask runs a task again when its worker dies; the rerun sends the unit's chunks from the start. The
    client keeps each numbered chunk once, in order."""
    import pickle
    from collections import deque

    from permed.engine.executors import DaskStreams

    sent = [(0, 0, "a"), (0, 1, "b"), (0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (0, 3, None)]

    class FakeQueue:
        def qsize(self):
            return len(sent)

        def get(self):
            return pickle.dumps(sent.pop(0))

    streams = object.__new__(DaskStreams)  # its queue only: no cluster
    streams.buffers, streams.received, streams.queue, streams.futures = [deque()], [0], FakeQueue(), []
    assert list(streams.stream(0)) == ["a", "b", "c"]


def test_dask_tasks_get_the_packaged_kb_by_reference_and_any_other_kb_sent_once():
    """A Dask task names the packaged KB (its worker loads its own copy) instead of carrying it; any other KB
    is sent once per worker. A worker whose permed or packaged KB differs from the client's refuses to call."""
    import pickle

    from permed.engine.executors import PackagedKB, _kb_for_tasks, _task_kb
    from permed.errors import ConfigurationError
    from permed.kb.load import packaged_kb

    class FakeClient:
        def __init__(self):
            self.scattered = []

        def scatter(self, data, broadcast, hash):
            self.scattered.append((data, broadcast))
            return ["kb future"]

    client = FakeClient()
    ref = _kb_for_tasks(client, packaged_kb())
    assert isinstance(ref, PackagedKB) and not client.scattered
    assert len(pickle.dumps(ref)) < 1000 < len(pickle.dumps(packaged_kb()))
    assert _task_kb(pickle.loads(pickle.dumps(ref))) is packaged_kb()

    other = packaged_kb().model_copy(update={"sha256": "0" * 64})  # e.g. a KB given with --kb
    assert _kb_for_tasks(client, other) == "kb future"
    assert client.scattered == [([other], True)]
    assert _task_kb(other) is other

    for stale in (dataclasses.replace(ref, permed_version="0.0.0-other"), dataclasses.replace(ref, sha256="f" * 64)):
        with pytest.raises(ConfigurationError, match="install the same permed on the workers"):
            _task_kb(stale)
