"""Implausible input never becomes a confident call (issue 11, "the command line and the engine").

Each case is one the attack run produced: before the fix it gave a "normal" call with exit 0, a
silently changed genotype, an uncaught exception or a wrong line number. Now it is a one-line error
(exit 2, nothing written) or the position is missing and the call says so."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HEADER, cli, example_text, match, rec, write_vcf

from permed.report.naming import display_name, sample_filename

SHARED = Path(__file__).resolve().parents[2] / "shared"
STAR2 = ("chr10", 94781859, "G", "A")  # CYP2C19 *2 (rs4244285)


def _refused(tmp_path: Path, vcf: Path, expected: str, *args: str) -> None:
    out = tmp_path / "out"
    res = cli("call", vcf, "-o", out, *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"permed: error: {vcf}"), res.stderr
    assert expected in lines[0], lines[0]
    assert not out.exists() or not [p for p in out.iterdir()], "nothing may be written on error"


def _call(vcf: Path, gene: str = "CYP2C19", **options):
    cs = match([vcf], genes=(gene,), **options)
    return cs.table[cs.choice[gene][0]], cs


def test_a_reference_block_beyond_the_contig_is_refused(tmp_path):
    # one line made CYP2C19 *38/*38 and CYP2C9 *1/*1 "Normal Metabolizer" with no missing positions
    vcf = write_vcf(tmp_path / "block.vcf", rec("chr10", 1, "N", "<NON_REF>", "0/0", info="END=999999999"))
    _refused(tmp_path, vcf, "INFO END='999999999' is beyond the end of chr10 (133,797,422 bp)")


def test_a_reference_block_ending_before_it_starts_is_refused(tmp_path):
    vcf = write_vcf(tmp_path / "block.vcf", rec("chr10", 94781859, "G", "<NON_REF>", "0/0", info="END=94781000"))
    _refused(tmp_path, vcf, "INFO END='94781000' is before POS 94781859")


@pytest.mark.parametrize("block", [
    rec("chr10", 1, "N", "<NON_REF>", "0/0", info="END=133000000"),  # REF N, over both genes
    rec("chr10", 94700000, "A", "<NON_REF>", "0/0", info="END=95100000"),  # CYP2C19 and CYP2C9 in one block
])
def test_an_implausible_reference_block_is_not_evidence(block, tmp_path):
    vcf = write_vcf(tmp_path / "block.vcf", block)
    for gene in ("CYP2C19", "CYP2C9"):
        for fill in (False, True):  # --missing-to-ref must not fill what the block pretended to cover
            call, cs = _call(vcf, gene, missing_to_ref=fill)
            assert call.status != "called", (gene, fill, call.source_diplotypes)
            assert len(call.missing_positions) == len(cs.kb.genes[gene].loci)
            warnings = " ".join(w for ws in cs.inputs[0].position_warnings.values() for w in ws)
            assert "gVCF reference block" in warnings and "not used" in warnings


def test_a_plausible_reference_block_still_counts(tmp_path):
    # a short block at *2's position is a reference call there (the fix must not throw gVCFs away)
    vcf = write_vcf(tmp_path / "block.vcf", rec("chr10", 94781800, "A", "<NON_REF>", "0/0", info="END=94781900"))
    call, cs = _call(vcf)
    assert 94781859 not in call.missing_positions


@pytest.mark.parametrize("pos", [0, 2**32, 2**32 + STAR2[1]])
def test_positions_outside_32_bits_or_zero_are_refused(pos, tmp_path):
    # 2**32 + p wrapped to p: a record for another place read as *2's position
    vcf = write_vcf(tmp_path / "pos.vcf", rec("chr10", pos, "G", "A", "0/1"))
    _refused(tmp_path, vcf, f"line 7 (chr10): POS {pos} is outside 1..2147483647")


def test_an_empty_chrom_is_refused(tmp_path):
    vcf = write_vcf(tmp_path / "chrom.vcf", rec("", STAR2[1], "G", "A", "0/1") + rec(*STAR2, "0/1"))
    _refused(tmp_path, vcf, "line 7: CHROM is empty")


def test_three_called_alleles_are_refused_not_read_as_two(tmp_path):
    vcf = write_vcf(tmp_path / "tri.vcf", rec(*STAR2, "0/1", "0/1/1"), samples=("A", "B"))
    _refused(tmp_path, vcf, "line 7 (chr10:94781859): GT 0/1/1 of sample 'B' has 3 alleles")


def test_duplicate_records_that_disagree_make_the_position_missing(tmp_path):
    # the first record won before: *1/*2 silently became whatever came first
    vcf = write_vcf(tmp_path / "dup.vcf", rec(*STAR2, "0/1") + rec(*STAR2, "0/0"))
    call, cs = _call(vcf)
    assert 94781859 in call.missing_positions
    assert "*2" not in " ".join(call.source_diplotypes)
    assert cs.sample_warnings[0]["chr10:94781859"] == [
        "Entries for this position disagree (G/A and G/G); the position is treated as missing"]
    # --missing-to-ref must not fill a position whose records disagree
    call, _ = _call(vcf, missing_to_ref=True)
    assert 94781859 in call.missing_positions


def test_duplicate_records_that_agree_are_read_once(tmp_path):
    vcf = write_vcf(tmp_path / "dup.vcf", rec(*STAR2, "0/1") + rec(*STAR2, "1/0"))
    call, cs = _call(vcf)
    assert 94781859 not in call.missing_positions
    assert "*1/*2" in call.source_diplotypes
    assert not cs.sample_warnings


def test_an_undocumented_insertion_is_treated_like_an_undocumented_snv(tmp_path):
    header = HEADER.replace("##contig=<ID=chr1,length=248956422>\n", "")
    calls = {}
    for name, alt in (("ins", "GA"), ("snv", "C")):
        vcf = write_vcf(tmp_path / f"{name}.vcf", rec("chr10", 94781859, "G", alt, "0/1"), header=header)
        call, _ = _call(vcf)
        calls[name] = (call.status, call.undocumented_positions)
    assert calls["ins"] == calls["snv"] == ("uncallable", [94781859])


def test_a_record_without_gt_is_no_genotype_not_a_crash(tmp_path):
    vcf = write_vcf(tmp_path / "nogt.vcf", rec(*STAR2, "7", fmt="PS"))
    res = cli("call", vcf, "-o", tmp_path / "out", "--genes", "CYP2C19")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "S1.report.json").read_text())
    assert report["genes"]["CYP2C19"]["status"] != "called"
    assert report["vcf_warnings"]["chr10:94781859"] == ["Ignoring: no genotype"]


def test_non_utf8_text_is_a_one_line_error(tmp_path):
    p = tmp_path / "latin1.vcf"
    p.write_bytes((HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n").encode()
                  + b"chr10\t94781859\t.\tG\t\xe9\t.\tPASS\t.\tGT\t0/1\n")
    _refused(tmp_path, p, "line 7: a field is not UTF-8 text (byte 0xe9)")


@pytest.mark.parametrize(("body", "expected"), [
    ("chr10\t94781859\t.\tG\tA\n", "line 7: malformed record (5 tab-separated column(s)"),
    (rec(*STAR2, "0/1") + "chr1\n", "line 8: malformed record (1 tab-separated column(s)"),
    (rec(*STAR2, "0/1").replace("\tPASS\t", "\t"), "line 7: malformed record (9 tab-separated columns; "
                                                   "the header names 1 sample(s), so 10 are expected)"),
])
def test_malformed_lines_are_described_with_the_right_line_number(body, expected, tmp_path):
    _refused(tmp_path, write_vcf(tmp_path / "bad.vcf", body), expected)


def test_line_numbers_do_not_count_header_lines_htslib_adds(tmp_path):
    # no ##FILTER=<ID=PASS>: htslib adds one to its copy of the header, which made every line number one too high
    text = example_text()
    head = [x for x in text.splitlines(keepends=True) if x.startswith("#") and "ID=PASS" not in x]
    body = [x for x in text.splitlines(keepends=True) if not x.startswith("#")]
    bad = body[3].split("\t")
    bad[9] = "0/1/1\n"
    body[3] = "\t".join(bad)
    p = tmp_path / "nopass.vcf"
    p.write_text("".join(head) + "".join(body))
    assert not any("ID=PASS" in x for x in head)
    line = len(head) + 4
    res = cli("call", p, "-o", tmp_path / "out")
    assert res.returncode == 2
    assert f": line {line} (" in res.stderr, (line, res.stderr)


def test_a_fifo_is_named_as_such(tmp_path):
    fifo = tmp_path / "pipe.vcf"
    os.mkfifo(fifo)
    _refused(tmp_path, fifo, "is not a regular file (a pipe or device)")


def test_a_stale_index_is_not_used(tmp_path):
    import pysam

    src = tmp_path / "x.vcf"
    write_vcf(src, rec(*STAR2, "0/1"))
    gz = tmp_path / "x.vcf.gz"
    pysam.tabix_compress(str(src), str(gz))
    pysam.tabix_index(str(gz), preset="vcf")
    # the file is rewritten after its index was made: the index's offsets no longer point at its records
    write_vcf(src, rec("chr10", 94700000, "C", "T", "0/1") + rec(*STAR2, "1/1"))
    pysam.tabix_compress(str(src), str(gz), force=True)
    old = time.time() - 100
    os.utime(str(gz) + ".tbi", (old, old))
    call, cs = _call(gz)
    assert call.source_diplotypes == ["*2/*2"]  # the file as it is now, not as the index remembers it
    assert any("is older than" in n and "not used" in n for n in cs.inputs[0].notices)


def _grch37_example(tmp_path: Path) -> Path:
    """The example patient with every SNV PyPGx's table places on GRCh37 moved there (REF left as it was), and
    no build in the header: only the records tell the build."""
    table = {}
    with open(SHARED / "reference" / "pypgx" / "variant-table.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            table[("chr" + r["Chromosome"], int(r["GRCh38Position"]))] = int(r["GRCh37Position"])
    out = []
    for line in example_text().splitlines():
        if line.startswith(("##contig", "##reference")):
            continue
        f = line.split("\t")
        if not line.startswith("#") and (f[0], int(f[1])) in table and len(f[3]) == 1:
            f[1] = str(table[(f[0], int(f[1]))])
        out.append("\t".join(f))
    p = tmp_path / "grch37.vcf"
    p.write_text("\n".join(out) + "\n")
    return p


@pytest.mark.skipif(not (SHARED / "reference" / "pypgx").exists(), reason="needs ../shared/reference/pypgx")
@pytest.mark.parametrize("fill", [[], ["--missing-to-ref"]])
def test_grch37_coordinates_are_recognised_from_the_records(fill, tmp_path):
    # read as GRCh38 with --missing-to-ref, this turned the patient's CYP2C19 *2/*17 into *38/*38, "standard
    # dosing": told to read GRCh38, the file is refused; left to decide, it is read on GRCh37
    vcf = _grch37_example(tmp_path)
    _refused(tmp_path, vcf, "the file looks like GRCh37 coordinates", "--build", "GRCh38", *fill)
    cs = match([vcf], genes=("CYP2C19",), missing_to_ref=bool(fill))
    call = cs.call(0, "CYP2C19")
    assert call.source_diplotypes == ["*2/*17"]
    assert cs.inputs[0].notices[0].startswith("read as GRCh37 (from the records")
    # rs3758581 kept GRCh38's base (A) as REF where GRCh37 has G: missing with a warning, never filled
    assert 94842866 in call.missing_positions
    assert any("treated as missing" in m for m in cs.inputs[0].position_warnings["chr10:94842866"])


def test_sample_names_are_safe_and_visible():
    assert sample_filename("../../../x") == "___.._.._x"
    assert not sample_filename(".hidden").startswith(".")
    assert display_name("ab\u202ecd") == "ab<U+202E>cd"
    assert display_name("NA12878") == "NA12878"


def test_bidi_controls_in_a_sample_name_are_neutralised_in_html(tmp_path):
    vcf = write_vcf(tmp_path / "bidi.vcf", rec(*STAR2, "0/1"), samples=("ab\u202ecd",))
    out = tmp_path / "out"
    assert cli("call", vcf, "-o", out, "--genes", "CYP2C19").returncode == 0
    html = next(out.glob("*.report.html")).read_text(encoding="utf-8")
    assert "\u202e" not in html and "ab&lt;U+202E&gt;cd" in html
    # the data keep the sample's name as it is
    assert json.loads(next(out.glob("*.report.json")).read_text())["sample"] == "ab\u202ecd"


def _big_call(tmp_path: Path) -> subprocess.Popen:
    vcf = tmp_path / "many.vcf"
    samples = [f"S{i}" for i in range(4000)]
    body = "".join(rec(*STAR2, *(["0/1"] * len(samples))) for _ in range(1))
    write_vcf(vcf, body + rec("chr10", 94761900, "C", "T", *(["0/0"] * len(samples))), samples=samples)
    # Ctrl-C reaches the run as from a terminal, however the tests were started (a background job of a
    # non-interactive shell starts with SIGINT ignored, and children inherit that)
    return subprocess.Popen([sys.executable, "-m", "permed", "call", str(vcf), "-o", str(tmp_path / "out"),
                             "--format", "json,html"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_a_stopped_run_exits_with_the_signal_code_and_leaves_nothing(sig, code, word, tmp_path):
    proc = _big_call(tmp_path)
    out = tmp_path / "out"
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob(".permed-*/*")):  # stop it while it writes
        time.sleep(0.05)
    assert any(out.glob(".permed-*/*")), "the run finished before it could be stopped"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == f"permed: {word}; nothing was written"
    assert not out.exists()  # the run made the directory: it leaves none behind


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".permed-{dead.stdout.strip()}-abcd"
    stale.mkdir(parents=True)
    (stale / "S1.report.json").write_text("{")
    live = out / f".permed-{os.getpid()}-efgh"  # a run still going (this process) is left alone
    live.mkdir()
    vcf = write_vcf(tmp_path / "x.vcf", rec(*STAR2, "0/1"))
    assert cli("call", vcf, "-o", out, "--genes", "CYP2C19").returncode == 0
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("gz", [False, True])
def test_nul_bytes_after_a_header_are_refused_not_a_patient_without_data(gz, tmp_path):
    # 4.85 MB of gzipped NUL bytes once finished "done" with every gene no_data
    import gzip

    data = (HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n").encode() + b"\0" * 200_000
    p = tmp_path / ("nul.vcf.gz" if gz else "nul.vcf")
    p.write_bytes(gzip.compress(data) if gz else data)
    _refused(tmp_path, p, "line 7: NUL bytes where text should be: the file is binary or damaged, not a VCF")


def test_htslib_ending_the_process_becomes_our_one_line_error(tmp_path):
    # FORMAT PS:GT with the samples' GT values missing: htslib calls exit(1) when GT is read, and its
    # message went to our captured stream: the process died with nothing on stderr
    from helpers import run_cli

    header = HEADER.replace('Type=Integer,Description="Phase set"', 'Type=String,Description="Phase set"')
    vcf = write_vcf(tmp_path / "ps_gt.vcf", rec(*STAR2, "1|0", fmt="PS:GT"), header=header)
    out = tmp_path / "out"
    res = run_cli("call", vcf, "-o", out)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.strip().splitlines() == [
        f"permed: error: {vcf}: htslib cannot read the file: Unexpected type 0 at chr10:94781859"]
    assert not out.exists() or not list(out.iterdir())
    # and an ordinary run of a process that read files still ends normally
    assert run_cli("call", write_vcf(tmp_path / "ok.vcf", rec(*STAR2, "0/1")), "-o", out).returncode == 0


def test_a_header_type_that_does_not_exist_is_refused(tmp_path):
    # cyvcf2 raised a bare Exception ("type Str?ng not supported") when the field was read
    header = HEADER.replace("Type=Integer,Description=\"Phase set\"", "Type=Str\u00e9ng,Description=\"Phase set\"")
    vcf = write_vcf(tmp_path / "type.vcf", rec(*STAR2, "0|1:5", fmt="GT:PS"), header=header)
    _refused(tmp_path, vcf, "header: FORMAT PS has Type='Stréng'; a VCF header declares one of Integer, Float")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_whose_exception_is_lost_still_commits_nothing(sig, tmp_path, monkeypatch):
    """A signal's exception raised inside a C library or a module's import can vanish (seen once in CI: Ctrl-C
    during a 4,000-patient run, exit 0 with every report written); the command line notes each stop, and
    staged output is not committed after one."""
    from permed import errors
    from permed.launch import install_stop_handlers
    from permed.staging import StagedOutput

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.getsignal(s) for s in stops}
    monkeypatch.setattr(errors, "stop_signal", None)
    # as in a command started from a shell (a test runner may have put its own Ctrl-C handler in place)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        install_stop_handlers()
        out = tmp_path / "out"
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else errors.Terminated):
            with StagedOutput(out) as staged:
                staged.path("report.json").write_text("{}")
                try:
                    os.kill(os.getpid(), sig)
                    time.sleep(1)  # the handler runs here
                except BaseException:
                    pass  # what a library that loses the exception amounts to
                staged.commit()
        assert errors.stop_signal == sig
        assert not out.exists()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_a_stop_mangled_into_another_error_reports_the_stop(monkeypatch, capsys):
    """A signal landing inside a module's import can surface as another exception (seen: TypeError from numpy's
    import after Ctrl-C): once a stop was noted, the command reports the stop and its exit code, not a bug."""
    from permed import cli, errors

    def mangled(*_a, **_k):
        raise TypeError("expected a message argument")

    monkeypatch.setattr(cli, "app", mangled)
    monkeypatch.setattr(errors, "stop_signal", signal.SIGTERM)
    assert cli.run(["call", "x.vcf"]) == 143
    assert capsys.readouterr().err.strip() == "permed: terminated; nothing was written"
    monkeypatch.setattr(errors, "stop_signal", None)
    assert cli.run(["call", "x.vcf"]) == 1  # without a stop it is the bug it looks like
