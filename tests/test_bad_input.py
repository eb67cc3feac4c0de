"""Bad input: one line naming the file and record, exit code 2, no traceback, nothing left in OUT.

Every case runs through the command line in this process (`cli`); one runs as a real process too, so
what reaches the terminal (htslib's own messages included) is checked as a user sees it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from helpers import HEADER, cli, example_text, read_report, rec, run_cli, write_vcf


def _example_lines() -> tuple[list[str], list[str]]:
    lines = example_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    return head, body


def make_empty(d: Path) -> Path:
    p = d / "empty.vcf"
    p.write_text("")
    return p


def make_truncated_gzip(d: Path) -> Path:
    raw = gzip.compress(example_text().encode())
    p = d / "truncated.vcf.gz"
    p.write_bytes(raw[: len(raw) // 2])
    return p


def make_not_vcf(d: Path) -> Path:
    p = d / "notes.vcf"
    p.write_text("sample\tgene\tcall\nP1\tCYP2C19\t*1/*2\n")
    return p


def make_binary(d: Path) -> Path:
    p = d / "garbage.bcf"
    p.write_bytes(bytes(range(256)) * 40)
    return p


def make_no_gt(d: Path) -> Path:
    header = HEADER.replace('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n',
                            '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">\n')
    return write_vcf(d / "no_gt.vcf", rec("chr10", 94761900, "C", "T", "12", fmt="DP"), header=header)


def make_grch37_contigs(d: Path) -> Path:
    header = HEADER.replace("length=133797422", "length=135534747")
    return write_vcf(d / "b37.vcf", rec("chr10", 94761900, "C", "T", "0/1"), header=header)


def make_grch37_refs(d: Path) -> Path:
    head, body = _example_lines()
    out = []
    flip = {"A": "C", "C": "G", "G": "T", "T": "A"}
    for line in body:
        f = line.split("\t")
        if len(f[3]) == 1 and len(f[4]) == 1:
            # REF disagrees with GRCh38 everywhere, as coordinates from another build would
            f[3], f[4] = flip[f[3]], flip[flip[f[3]]]
        out.append("\t".join(f))
    p = d / "other_build.vcf"
    p.write_text("".join(head) + "".join(out))
    return p


def make_bad_allele(d: Path) -> Path:
    return write_vcf(d / "bad_allele.vcf", rec("chr10", 94761900, "C", "J", "0/1"))


def make_duplicate_samples(d: Path) -> Path:
    return write_vcf(d / "dup_samples.vcf", rec("chr10", 94761900, "C", "T", "0/1", "0/0"), samples=("P1", "P1"))


def make_crlf(d: Path) -> Path:
    p = d / "crlf.vcf"
    p.write_bytes(example_text().replace("\n", "\r\n").encode())
    return p


def make_gt_out_of_range(d: Path) -> Path:
    return write_vcf(d / "gt_range.vcf", rec("chr10", 94761900, "C", "T", "0/3"))


def make_sites_only(d: Path) -> Path:
    p = d / "sites.vcf"
    p.write_text(HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr10\t94761900\t.\tC\tT\t.\tPASS\t.\n")
    return p


def make_no_chrom_line(d: Path) -> Path:
    p = d / "no_chrom_line.vcf"
    p.write_text(HEADER + rec("chr10", 94761900, "C", "T", "0/1"))
    return p


def make_bad_end(d: Path) -> Path:
    header = HEADER + '##INFO=<ID=END,Number=1,Type=String,Description="End">\n'
    return write_vcf(d / "bad_end.vcf", rec("chr10", 94761890, "A", "<NON_REF>", "0/0", info="END=abc"),
                     header=header)


def make_missing_file(d: Path) -> Path:
    return d / "does_not_exist.vcf"


def make_directory(d: Path) -> Path:
    p = d / "a_directory.vcf"
    p.mkdir()
    return p


def make_bad_pos(d: Path) -> Path:
    p = d / "bad_pos.vcf"
    p.write_text(HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
                 "chr10\tnotanumber\t.\tC\tT\t.\tPASS\t.\tGT\t0/1\n")
    return p


def make_plain_gzip_garbage(d: Path) -> Path:
    p = d / "gz_not_vcf.vcf.gz"
    p.write_bytes(gzip.compress(b"hello world\n"))
    return p


BAD_INPUTS = {
    "empty file": (make_empty, "file is empty"),
    "truncated gzip": (make_truncated_gzip, "corrupt gzip data"),
    "not a VCF (TSV)": (make_not_vcf, "not a VCF file"),
    "binary garbage": (make_binary, "not a VCF file"),
    "no GT field": (make_no_gt, "GT"),
    "GRCh37 contig lengths": (make_grch37_contigs, "GRCh37"),
    "REF disagrees with GRCh38 (other build)": (make_grch37_refs, "genome build"),
    "bad allele": (make_bad_allele, "invalid allele 'J'"),
    "duplicate sample names": (make_duplicate_samples, "duplicate sample name"),
    "CRLF line endings": (make_crlf, "CRLF"),
    "GT allele out of range": (make_gt_out_of_range, "GT allele 3"),
    "sites-only VCF (no samples)": (make_sites_only, "no sample columns"),
    "records without #CHROM line": (make_no_chrom_line, "line 6: record before the #CHROM header line"),
    "gVCF END not an integer": (make_bad_end, "END"),
    "missing file": (make_missing_file, "no such file"),
    "directory instead of file": (make_directory, "is a directory"),
    "POS not a number": (make_bad_pos, "line 7: malformed record (POS 'notanumber' is not a positive integer)"),
    "gzip of non-VCF text": (make_plain_gzip_garbage, "not a VCF file"),
}


def _check_refused(res, inp: Path, expected: str, out: Path) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("permed: error: ")
    assert inp.name in lines[0], lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.iterdir()), "no partial output may be left"


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_clear_error(tmp_path, name):
    make, expected = BAD_INPUTS[name]
    inp = make(tmp_path)
    out = tmp_path / "out"
    _check_refused(cli("call", inp, "-o", out), inp, expected, out)


@pytest.mark.parametrize("name", ["truncated gzip", "binary garbage"])
def test_bad_input_as_a_real_process(tmp_path, name):
    """htslib writes to the process's stderr itself: a real process shows only our one line."""
    make, expected = BAD_INPUTS[name]
    inp = make(tmp_path)
    out = tmp_path / "out"
    _check_refused(run_cli("call", inp, "-o", out), inp, expected, out)


def test_bad_input_does_not_disturb_existing_output(tmp_path):
    out = tmp_path / "out"
    good = cli("call", "--example", "-o", out)
    assert good.returncode == 0, good.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = cli("call", make_bad_allele(tmp_path), "-o", out)
    assert bad.returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["call", "--genes", "NOTAGENE", "--example"], "--genes: unknown gene(s) NOTAGENE"),
    (["call", "--workers", "0", "--example"], "--workers"),
    (["call", "--no-such-flag", "--example"], "No such option: --no-such-flag"),
    (["call"], "no input files: give VCF/BCF paths, --outside-calls or --example"),
    (["call", "--example", "--lang", "xx"], "--lang xx: no report catalog"),
])
def test_bad_flags_exit_64_not_2(tmp_path, args, message):
    """A bad flag or option value (usage, 64) is told apart from a bad file (2); nothing is written."""
    res = cli(*args, "-o", tmp_path / "o")
    assert res.returncode == 64, (args, res.returncode, res.stderr)
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("permed: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "o").exists()


def test_exit_codes_of_a_real_process(tmp_path):
    """As scripts see them: 64 for a flag the parser refuses, 2 for a bad file, 3 for a bad knowledge base."""
    assert run_cli("call", "--no-such-flag", "-o", tmp_path / "a").returncode == 64
    assert run_cli("call", make_bad_allele(tmp_path), "-o", tmp_path / "b").returncode == 2
    bad_kb = tmp_path / "kb.json"
    bad_kb.write_text("{}")
    res = run_cli("call", "--example", "--kb", bad_kb, "-o", tmp_path / "c")
    assert res.returncode == 3 and res.stderr.count("\n") == 1 and "knowledge base schema" in res.stderr


def test_output_path_is_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    res = cli("call", "--example", "-o", target)
    assert res.returncode == 2
    assert "not a directory" in res.stderr
    assert target.read_text() == "x"


def test_same_input_twice(tmp_path):
    src = tmp_path / "p.vcf"
    src.write_text(example_text())
    res = cli("call", src, src, "-o", tmp_path / "out")
    assert res.returncode == 64
    assert "given more than once" in res.stderr


def test_header_only_vcf_is_no_data_not_an_error(tmp_path):
    p = write_vcf(tmp_path / "header_only.vcf", "")
    res = cli("call", p, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "out" / "calls.tsv").read_text().splitlines()[1:]
    statuses = {r.split("\t")[1]: r.split("\t")[8] for r in rows}
    assert statuses["CYP2C19"] == "no_data"
    assert statuses["CYP2D6"] == "not_called"


def test_unsorted_records_are_read_correctly(tmp_path):
    """Out-of-order records do not change calls (permed streams the whole file); a notice says so."""
    lines = example_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    shuffled = tmp_path / "unsorted.vcf"
    shuffled.write_text("".join(head) + "".join(reversed(body)))
    res = cli("call", shuffled, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    ref = cli("call", "--example", "-o", tmp_path / "ref")
    assert ref.returncode == 0
    calls = (tmp_path / "out" / "calls.tsv").read_text().replace("unsorted.vcf", "X")
    expected = (tmp_path / "ref" / "calls.tsv").read_text().replace("example_patient.vcf", "X")
    assert calls == expected
    report = read_report(next((tmp_path / "out").glob("*.report.json")))
    assert any("not sorted" in n for n in report["inputs"][0]["notices"])


def test_shared_example_runs_unchanged(tmp_path):
    """A copy of the embedded example with a .vcf.gz suffix (plain gzip) reads the same."""
    gz = tmp_path / "example.vcf.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(example_text())
    res = cli("call", gz, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "*2/*17" in (tmp_path / "out" / "calls.tsv").read_text()
    shutil.rmtree(tmp_path / "out")
