"""GT columns read with numpy (genotypes/gt_text.py) give exactly what htslib gives, or hand the file back.

Each test reads the same file both ways (`ReadOptions(plain_gt=True)` against `plain_gt=False`) and compares
every array, warning and notice; the path taken is checked too, so a silent fall-back cannot pass for the fast
path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from permed.errors import InputFileError
from permed.genotypes.gt_text import PLAIN_GT_MIN_SAMPLES, NotPlainGt, fixed_columns, parse_gt
from permed.genotypes.vcf_reader import ReadOptions, VcfReader
from permed.kb.load import packaged_kb

N = 2_400
GENES = ["CYP2C19", "G6PD"]
DIPLOID = ["0|0", "0|1", "1|0", "1|1", "0/1", "1/1", "0/0", "./.", ".|.", "0|.", "./1"]
HAPLOID = ["0", "1", "."]


@pytest.fixture(scope="module")
def kb():
    return packaged_kb()


def _header(n: int) -> str:
    names = "\t".join(f"P{i:05d}" for i in range(n))
    return ("##fileformat=VCFv4.2\n##contig=<ID=chr10,length=133797422>\n##contig=<ID=chrX,length=156040895>\n"
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
            '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
            f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{names}\n")


def _records(kb, rng, n: int) -> list[str]:
    """Records at CYP2C19 positions (diploid calls of every form, some a second ALT) and G6PD positions (mixed
    ploidy, and one record of haploid calls only), plus one record at no definition position."""
    lines = []
    for k, loc in enumerate(kb.genes["CYP2C19"].loci[:12]):
        alts = list(loc.alts) + (["G" if loc.ref != "G" else "A"] if k % 4 == 0 and len(loc.ref) == 1 else [])
        forms = DIPLOID + (["0|2", "2/2"] if len(alts) > 1 else [])
        p = np.r_[np.full(4, 20.0), np.ones(len(forms) - 4)]
        gts = rng.choice(forms, size=n, p=p / p.sum())
        lines.append(f"chr10\t{loc.position}\t.\t{loc.ref}\t{','.join(alts)}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    for k, loc in enumerate(kb.genes["G6PD"].loci[:6]):
        if k == 3:
            gts = rng.choice(HAPLOID, size=n, p=[0.8, 0.15, 0.05])  # every call haploid
        else:
            male = rng.random(n) < 0.5
            gts = np.where(male, rng.choice(HAPLOID, size=n), rng.choice(DIPLOID, size=n))
        lines.append(f"chrX\t{loc.position}\t.\t{loc.ref}\t{','.join(loc.alts)}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    lines.insert(3, "chr10\t50000\t.\tA\tT\t.\tPASS\t.\tGT\t" + "\t".join(rng.choice(DIPLOID, size=n)))
    return lines


def _write(path: Path, n: int, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write(_header(n) + "\n".join(lines) + "\n")
    return path


def _read_both(kb, path: Path, **kw):
    out = []
    for plain in (False, True):
        reader = VcfReader(path, kb, GENES, ReadOptions(plain_gt=plain, use_index=False), **kw)
        out.append((reader, reader.read()))
    return out


def _outcomes(kb, path: Path, genes=GENES) -> list[tuple]:
    """(GenotypeSet or error message, read GT text?) through htslib, then with plain GT reading forced on."""
    out = []
    for plain in (False, True):
        reader = VcfReader(path, kb, genes, ReadOptions(plain_gt=plain, use_index=False))
        try:
            got = reader.read()
        except InputFileError as exc:
            got = str(exc)
        out.append((got, reader.read_plain_gt))
    return out


def _assert_same(a, b):
    assert a.samples == b.samples
    for g in GENES:
        for attr in ("status", "gt", "phased", "phase_set"):
            assert np.array_equal(getattr(a.genes[g], attr), getattr(b.genes[g], attr)), (g, attr)
    assert a.position_warnings == b.position_warnings
    assert a.sample_warnings == b.sample_warnings
    assert a.notices == b.notices


@pytest.fixture(scope="module")
def plain_file(kb, tmp_path_factory):
    rng = np.random.default_rng(7)
    return _write(tmp_path_factory.mktemp("gt") / "plain.vcf.gz", N, _records(kb, rng, N))


def test_plain_gt_lines_give_what_htslib_gives(kb, plain_file):
    (slow, a), (fast, b) = _read_both(kb, plain_file)
    assert not slow.read_plain_gt and fast.read_plain_gt
    _assert_same(a, b)
    # the file exercises what it means to: haploid calls, missing alleles, unphased calls, a second ALT
    g6pd, c19 = b.genes["G6PD"], b.genes["CYP2C19"]
    assert (g6pd.gt[:, :, 1] == -2).any() and (c19.gt == -1).any() and (~c19.phased).any() and (c19.gt == 2).any()


@pytest.mark.parametrize("ranges", [((0, 700), (1_400, 2_100), (2_350, N)), ((300, 2_350),)])
def test_plain_gt_of_sample_ranges_give_what_htslib_gives(kb, plain_file, ranges):
    # several ranges (columns gathered) and one (a slice of the line)
    (slow, a), (fast, b) = _read_both(kb, plain_file, sample_ranges=ranges)
    assert fast.read_plain_gt and len(b.samples) == sum(hi - lo for lo, hi in ranges)
    _assert_same(a, b)


@pytest.mark.parametrize("gz", [False, True])
def test_fixed_columns_cuts_every_line_after_the_first_sample(tmp_path, gz):
    """htslib's copy of the text: `##` lines whole (tabs and all), every other line cut after its tenth column
    (a carriage return goes with the last column), lines of ten columns or fewer whole, the last line with or
    without its newline as written."""
    import os

    text = ("##fileformat=VCFv4.2\n##note=a\ttab\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC\n"
            "chr1\t5\t.\tA\tT\t.\tPASS\tX=1\tGT\t0|1\t1|1\t0|0\n"
            "chr1\t6\t.\tA\tT\t.\tPASS\t.\tGT\t0|0\t1|1\t0|0\r\n"
            "chr1\t7\t.\tA\tT\t.\tPASS\t.\tGT\t1|1\n"
            "short line\n\n"
            "chr1\t8\t.\tA\tT\t.\tPASS\t.\tGT\t1|0\t0|0\t0|0")
    want = ("##fileformat=VCFv4.2\n##note=a\ttab\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\n"
            "chr1\t5\t.\tA\tT\t.\tPASS\tX=1\tGT\t0|1\n"
            "chr1\t6\t.\tA\tT\t.\tPASS\t.\tGT\t0|0\n"
            "chr1\t7\t.\tA\tT\t.\tPASS\t.\tGT\t1|1\n"
            "short line\n\n"
            "chr1\t8\t.\tA\tT\t.\tPASS\t.\tGT\t1|0")
    path = tmp_path / ("t.vcf.gz" if gz else "t.vcf")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    fd = fixed_columns(path)
    try:
        assert os.pread(fd, 1 << 20, 0).decode() == want
    finally:
        os.close(fd)
    (tmp_path / "damaged.vcf.gz").write_bytes(gzip.compress(text.encode())[:-30])
    with pytest.raises(NotPlainGt):
        fixed_columns(tmp_path / "damaged.vcf.gz")


@pytest.mark.parametrize("memory_files", [True, False])
def test_htslib_reads_the_cut_copy_and_its_header_messages_come_once(kb, tmp_path, monkeypatch, memory_files):
    """On the fast path htslib reads records from the cut copy (opened once more with the same header): the
    header's warnings appear once, as on the other path. Without memory files (not Linux) htslib reads the file
    itself, decoding one sample: the same again."""
    import permed.genotypes.vcf_reader as vcf_reader

    rng = np.random.default_rng(3)
    path = tmp_path / "warns.vcf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(_header(N).replace("##FORMAT=<ID=GT", '##INFO=<ID=XX,Number=1,Description="no type">\n##FORMAT=<ID=GT')
                 + "\n".join(_records(kb, rng, N)) + "\n")
    copies = []
    monkeypatch.setattr(vcf_reader, "fixed_columns",
                        lambda p: copies.append(p) or (fixed_columns(p) if memory_files else None))
    (slow, a), (fast, b) = _read_both(kb, path)
    assert fast.read_plain_gt and copies == [path]
    _assert_same(a, b)
    assert sum("no Type defined" in n for n in b.notices) == 1, b.notices


def test_a_cut_copy_htslib_cannot_open_falls_back_to_htslib_reading_the_file(kb, plain_file, monkeypatch):
    """If htslib fails to open the cut copy (not expected), the file is read by htslib as a whole: the same
    genotypes, and the copy (a memory file on Linux) is not left open."""
    import os

    import permed.genotypes.vcf_reader as vcf_reader

    real, opened = vcf_reader.VCF, []

    def refusing(path, *args, **kwargs):
        if str(path).startswith("/dev/fd/"):
            opened.append(path)
            raise OSError("cannot open the copy")
        return real(path, *args, **kwargs)

    def copies_open() -> int:
        return sum("permed-fixed-columns" in os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(vcf_reader, "VCF", refusing)
    (slow, a), (fallback, b) = _read_both(kb, plain_file)
    assert opened and not fallback.read_plain_gt
    _assert_same(a, b)
    assert copies_open() == 0


def test_a_haploid_call_reads_as_phased_on_both_paths(kb, plain_file):
    (_, a), (_, b) = _read_both(kb, plain_file)
    for gs in (a, b):
        g6pd = gs.genes["G6PD"]
        haploid = (g6pd.gt[:, :, 1] == -2) & (g6pd.gt[:, :, 0] >= 0)
        assert haploid[:, 3].sum() > N // 2  # the record of haploid calls only
        assert g6pd.phased[haploid].all()


def test_many_samples_read_plain_gt_by_default_and_few_do_not(kb, plain_file, tmp_path):
    assert N >= PLAIN_GT_MIN_SAMPLES
    reader = VcfReader(plain_file, kb, GENES, ReadOptions(use_index=False))
    reader.read()
    assert reader.read_plain_gt
    small = _write(tmp_path / "small.vcf.gz", 50, _records(kb, np.random.default_rng(3), 50))
    reader = VcfReader(small, kb, GENES, ReadOptions(use_index=False))
    reader.read()
    assert not reader.read_plain_gt


@pytest.mark.parametrize("change", ["other FORMAT keys", "allele above 9", "three alleles", "odd separator"])
def test_a_kept_line_that_is_not_plain_gt_hands_the_file_to_htslib(kb, tmp_path, change):
    rng = np.random.default_rng(11)
    lines = _records(kb, rng, N)
    cols = lines[5].split("\t")
    if change == "other FORMAT keys":
        cols[8] = "GT:DP"
        cols[9:] = [f"{g}:{k % 30}" for k, g in enumerate(cols[9:])]
    elif change == "allele above 9":
        cols[4] = ",".join(["G", "T", "A", "GA", "GT", "GC", "GG", "TA", "TT", "TC", "TG"][: 11])
        cols[12] = "10|0"
    elif change == "three alleles":
        cols[20] = "0|1|1"
    else:
        cols[20] = "0\\1"
    lines[5] = "\t".join(cols)
    (a, _), (b, plain) = _outcomes(kb, _write(tmp_path / "mixed.vcf.gz", N, lines))
    assert not plain  # htslib read the file
    assert type(a) is type(b)
    if isinstance(a, str):
        assert a == b and change in ("three alleles", "odd separator")
    else:
        _assert_same(a, b)


def test_an_allele_beyond_the_record_is_refused_in_the_same_words(kb, tmp_path):
    lines = _records(kb, np.random.default_rng(5), N)
    cols = lines[1].split("\t")
    cols[30] = "0|3"
    lines[1] = "\t".join(cols)
    (a, _), (b, _) = _outcomes(kb, _write(tmp_path / "bad.vcf.gz", N, lines))
    assert isinstance(a, str) and a == b
    assert "GT allele 3 but the record has only" in a and "line 8" in a


def test_parse_gt_reads_fixed_and_variable_width_lines():
    body = np.frombuffer(b"0|1\t./.\t1/0\t.|1", dtype=np.uint8)
    alleles, phased = parse_gt(body, 4, None)
    assert alleles.tolist() == [[0, 1], [-1, -1], [1, 0], [-1, 1]] and phased.tolist() == [True, False, False, True]
    alleles, phased = parse_gt(body, 4, np.array([1, 3]))
    assert alleles.tolist() == [[-1, -1], [-1, 1]] and phased.tolist() == [False, True]
    body = np.frombuffer(b"1\t0|1\t.\t2/2", dtype=np.uint8)
    alleles, phased = parse_gt(body, 4, None)
    assert alleles.tolist() == [[1, -2], [0, 1], [-1, -2], [2, 2]] and phased.tolist() == [True, True, True, False]
    alleles, phased = parse_gt(np.frombuffer(b"0|1\t./.\t1/0\t.|1", dtype=np.uint8), 4, slice(1, 3))
    assert alleles.tolist() == [[-1, -1], [1, 0]] and phased.tolist() == [False, False]
    for bad, n in ((b"0|1\t0|1", 3), (b"0|1\t01|1", 2), (b"0|1\t0-1", 2), (b"0|1\tA|1", 2), (b"0|1\t0|1|1", 2)):
        with pytest.raises(NotPlainGt):
            parse_gt(np.frombuffer(bad, dtype=np.uint8), n, None)
    # as long as three-character calls, but columns shifted by one call: the third 4-byte word looks like a call
    # ("0|1\t", the second column's end); the tabs of every call are checked, not only of those read
    shifted = np.frombuffer(b"0|0\t0|1/0|1\t1|1\t1\t1", dtype=np.uint8)
    for rows in (None, np.array([2]), slice(2, 3)):
        with pytest.raises(NotPlainGt):
            parse_gt(shifted, 5, rows)


def test_a_bad_call_in_a_record_permed_does_not_use_is_still_an_error(kb, tmp_path):
    """htslib refuses a malformed call in any record; reading GT text must not let it through where unused."""
    lines = _records(kb, np.random.default_rng(9), N)
    cols = lines[3].split("\t")  # chr10:50000, at no definition position
    assert cols[1] == "50000"
    cols[40] = "0|X"
    lines[3] = "\t".join(cols)
    (a, _), (b, _) = _outcomes(kb, _write(tmp_path / "bad.vcf.gz", N, lines))
    assert isinstance(a, str) and a == b and "line 10" in a


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_stream_is_reported_as_htslib_reports_it(kb, tmp_path, damage):
    """The text reader decompresses ahead of htslib, so it meets damage first: it must hand over, not crash."""
    path = _write(tmp_path / "whole.vcf.gz", N, _records(kb, np.random.default_rng(13), N))
    data = path.read_bytes()
    cut = int(len(data) * 0.6)
    damaged = data[:cut] if damage == "truncated" else data[:cut] + bytes(4096) + data[cut + 4096:]
    bad = tmp_path / "damaged.vcf.gz"
    bad.write_bytes(damaged)
    (a, _), (b, plain) = _outcomes(kb, bad)
    assert isinstance(a, str) and a == b and str(bad) in a and not plain


def test_fuzzed_files_read_the_same_on_both_paths(kb, tmp_path):
    """400 seeded mutants of real records (the fuzzer's), each read with `plain_gt` forced on and off: the same
    arrays, warnings and notices, or the same one-line error; never another exception. (htslib's own notices
    are left out: htslib prints some of them once per process, so the second read of a mutant lacks them.)"""
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
    import vcf_mutants

    corpus = vcf_mutants.seeds()
    genes = sorted(kb.genes)
    used = 0
    for k in range(400):
        rng = random.Random(f"gt-text:{k}")
        data, what = vcf_mutants.mutant(corpus[k % len(corpus)], rng)
        path = tmp_path / f"m{k}.vcf.gz"
        path.write_bytes(gzip.compress(data) if k % 3 == 0 else data)
        (a, _), (b, plain) = _outcomes(kb, path, genes)
        used += plain
        assert type(a) is type(b), (k, what, a if isinstance(a, str) else b)
        if isinstance(a, str):
            assert a == b, (k, what)
            continue
        assert a.samples == b.samples
        for g in genes:
            for attr in ("status", "gt", "phased", "phase_set"):
                assert np.array_equal(getattr(a.genes[g], attr), getattr(b.genes[g], attr)), (k, what, g, attr)
        assert a.position_warnings == b.position_warnings and a.sample_warnings == b.sample_warnings, (k, what)
        assert [m for m in a.notices if not m.startswith("htslib:")] == [
            m for m in b.notices if not m.startswith("htslib:")], (k, what)
    assert used > 100  # a good share of mutants stay plain GT: the fast path itself is exercised
