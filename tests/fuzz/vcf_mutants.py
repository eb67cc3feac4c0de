"""A seeded mutational fuzzer for VCF input: real records, changed the ways careless tools and attackers
change them, each run through `permed call` in-process.

The contract checked for every mutant (issue 11):
- the command ends with exit 0, or exit 2 and one line `permed: error: FILE: ...` on stderr;
- nothing else: no other exception (exit 1, "internal error"), no death of the process, no hang;
- after an error the output directory holds nothing.

Mutants run in a child process (`run_batch`), so a death (segfault, a C library calling exit) or a hang
is seen by the parent and names the mutant that caused it; inside the child they run in-process, one
after the other, as fast as the CLI allows. Used by tests/fuzz/test_fuzz.py (a fixed budget in CI) and
scripts/fuzz_vcf.py (long runs).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared"
SEED_GENES = ("CYP2C19", "CYP2C9", "TPMT", "DPYD", "UGT1A1", "SLCO1B1")
MUTANT_TIMEOUT = 60  # seconds: a mutant taking longer is a hang

_EDGE_INTS = ["0", "-1", "1", "2147483647", "2147483648", "4294967296", "4294967297", "9223372036854775807",
              "99999999999999999999", "1e5", "0x10", "+5", " 5", "", ".", "NaN"]
_BASES = ["A", "C", "G", "T", "N", "a", "n", "*", ".", "<NON_REF>", "<*>", "<DEL>", "ACGTACGTAC" * 20, "",
          "X", "A,C", "G]chr1:5]", "ACGN", "\x00", "é"]
_GTS = ["0/1", "1/1", "0|1", "1|0", "./.", ".", "0", "1", "0/1/1", "0/0/0/1", "2/3", "99/1", "-1/0", "a/b", "|",
        "0|", "/1", "0//1", "1/.", ".|1", "0/1:5", "", "0" * 200, "1\t0", "0 / 1"]
_INFOS = [".", "END=999999999", "END=1", "END=-5", "END=abc", "END", "=", ";;", "END=94781900;END=5",
          "AC=1,2,3", "DP=\x01"]
_FORMATS = ["GT", "PS:GT", "GT:PS", "DP", "GT:AD", "AD:GT", "GT:XX", "", ".", "GT:GT", "GT:AD:DP:GQ:PL:PS"]
_CHROMS = ["", "chr10", "10", "chrUn", "chr10 ", "chr\t10", "chrM", "chrY", "chr1", "\xe9", "chr10;", "*"]


@dataclass
class Seed:
    header: list[str]  # header lines without the #CHROM line
    columns: str  # the #CHROM line
    records: list[str]


def _example_seed() -> Seed:
    from permed.examples import example_vcf

    lines = example_vcf().read_text().splitlines(keepends=True)
    header = [x for x in lines if x.startswith("##")]
    columns = next(x for x in lines if x.startswith("#CHROM"))
    records = [x for x in lines if not x.startswith("#")]
    # the patient's variant records and every tenth other one: the same kinds of line, a tenth of the work
    keep = [x for i, x in enumerate(records) if i % 10 == 0 or x.rstrip("\n").split("\t")[-1][:3] not in ("0/0", "0|0")]
    return Seed(header, columns, keep)


def _kgp_seed(max_records: int = 40, n_samples: int = 3) -> Seed | None:
    """Real 1000 Genomes records at definition positions (a few samples), when ../shared is here."""
    from permed.api import load_kb

    data = SHARED / "data" / "1kgp-grch38"
    if not data.exists():
        return None
    kb = load_kb()
    header: list[str] = []
    columns = ""
    records: list[str] = []
    for gene in SEED_GENES:
        path = data / f"{gene}.vcf.gz"
        if not path.exists():
            continue
        wanted = {loc.position for loc in kb.genes[gene].loci}
        with gzip.open(path, "rt") as fh:
            for line in fh:
                if line.startswith("##"):
                    if not records and not columns:
                        header.append(line)
                    continue
                if line.startswith("#CHROM"):
                    columns = columns or "\t".join(line.rstrip("\n").split("\t")[: 9 + n_samples]) + "\n"
                    continue
                f = line.split("\t", 10)
                if int(f[1]) in wanted:
                    # the INFO column is long and says nothing to the reader: keep it short
                    f[7] = "."
                    records.append("\t".join(f[:9] + line.rstrip("\n").split("\t")[9: 9 + n_samples]) + "\n")
                    if len(records) >= max_records * (SEED_GENES.index(gene) + 1) // len(SEED_GENES):
                        break
    return Seed(header, columns, records) if records else None


def seeds() -> list[Seed]:
    out = [_example_seed()]
    kgp = _kgp_seed()
    if kgp is not None:
        out.append(kgp)
    return out


def _mutate_record(rng: random.Random, line: str, n_samples: int) -> str:
    f = line.rstrip("\n").split("\t")
    op = rng.randrange(14)
    if op == 0 and len(f) > 1:
        f[1] = rng.choice(_EDGE_INTS)
    elif op == 1:
        f[0] = rng.choice(_CHROMS)
    elif op in (2, 3) and len(f) > 4:
        f[3 if op == 2 else 4] = rng.choice(_BASES)
    elif op == 4 and len(f) > 7:
        f[7] = rng.choice(_INFOS)
    elif op == 5 and len(f) > 8:
        f[8] = rng.choice(_FORMATS)
    elif op in (6, 7) and len(f) > 9:
        f[rng.randrange(9, len(f))] = rng.choice(_GTS)
    elif op == 8:
        del f[rng.randrange(len(f)):]  # a cut line (missing columns)
    elif op == 9:
        f.insert(rng.randrange(len(f) + 1), rng.choice(["", ".", "0/1", "x"]))
    elif op == 10 and len(f) > 6:
        f[5] = rng.choice(["NaN", "-1", "abc", "1e400", ""])
        f[6] = rng.choice(["", "PASS;LowQual", "q10", ".", "\x7f"])
    elif op == 11:
        f = ["\t".join(f)[: rng.randrange(1, max(2, len("\t".join(f))))]]  # truncated anywhere
    elif op == 12 and len(f) > 9:
        f[8] = "GT:PS"
        for i in range(9, len(f)):
            f[i] = f"{rng.choice(_GTS)}:{rng.choice(_EDGE_INTS)}"
    else:
        i = rng.randrange(len(f))
        f[i] = f[i] + rng.choice(["\x00", "\r", " ", "\t", "é", "\xff"])
    return "\t".join(f) + "\n"


def _mutate_header(rng: random.Random, header: list[str], columns: str) -> tuple[list[str], str]:
    header = list(header)
    op = rng.randrange(8)
    if op == 0 and header:
        header = [h for h in header if not h.startswith("##FORMAT=<ID=GT")]
    elif op == 1:
        header = [h for h in header if not h.startswith("##contig")]
    elif op == 2:
        header.append(rng.choice([
            "##contig=<ID=chr10,length=135534747>\n", "##contig=<ID=chr10,length=1>\n",
            "##FORMAT=<ID=PS,Number=1,Type=String,Description=\"x\">\n", "##INFO=<ID=END,Number=1,Type=Float>\n",
            "##FORMAT=<ID=GT,Number=2,Type=Integer,Description=\"x\">\n", "##reference=hg19\n", "##bad\n",
            "##FORMAT=<ID=AD,Number=1,Type=Integer,Description=\"x\">\n"]))
    elif op == 3:
        cols = columns.rstrip("\n").split("\t")
        cols.append(cols[-1])  # a duplicate sample name
        columns = "\t".join(cols) + "\n"
    elif op == 4:
        cols = columns.rstrip("\n").split("\t")
        columns = "\t".join(cols[: rng.randrange(1, len(cols) + 1)]) + "\n"
    elif op == 5 and header:
        del header[rng.randrange(len(header))]
    elif op == 6:
        header.insert(rng.randrange(len(header) + 1), "chr10\t5\t.\tA\tC\t.\tPASS\t.\tGT\t0/1\n")
    else:
        cols = columns.rstrip("\n").split("\t")
        if len(cols) > 9:
            cols[9] = rng.choice(["../../x", "\u202eevil", "", "a b", "x" * 300, ".hidden"])
        columns = "\t".join(cols) + "\n"
    return header, columns


def mutant(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """One mutated VCF (bytes) and how it was made (for reports)."""
    header, columns, records = seed.header, seed.columns, list(seed.records)
    n_samples = max(0, len(columns.split("\t")) - 9)
    what = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.randrange(10)
        if kind < 6 and records:
            i = rng.randrange(len(records))
            records[i] = _mutate_record(rng, records[i], n_samples)
            what.append(f"record {i}")
        elif kind == 6 and records:
            i = rng.randrange(len(records))
            records.insert(rng.randrange(len(records) + 1), records[i])  # a duplicate (elsewhere)
            what.append(f"duplicate {i}")
        elif kind == 7 and records:
            rng.shuffle(records)
            what.append("shuffle")
        else:
            header, columns = _mutate_header(rng, header, columns)
            what.append("header")
    text = ("".join(header) + columns + "".join(records)).encode("utf-8", "surrogateescape")
    if rng.random() < 0.05:  # raw bytes: a flipped byte anywhere
        b = bytearray(text)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        text = bytes(b)
        what.append("bytes")
    if rng.random() < 0.02:
        text = text[: rng.randrange(len(text))]
        what.append("cut file")
    return text, "+".join(what)


def _check_stages(path: Path) -> str | None:
    """Read, match and interpret in this process (the stages a VCF reaches; reports are built from their
    results and tested elsewhere): success or our own error, nothing else."""
    from permed.api import engine
    from permed.engine import Inputs
    from permed.errors import UserError
    from permed.options import Options

    eng = engine()
    try:
        eng.interpret(eng.match(Inputs.of(vcfs=path), Options()))
    except UserError as exc:
        if not str(exc).startswith(f"{path}"):
            return f"error does not name the file: {str(exc)[:300]}"
    except Exception as exc:  # noqa: BLE001 - anything else breaks the contract
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def _check_one(path: Path, out: Path) -> str | None:
    """Run `permed call` in this process; the broken contract as text, or None."""
    from permed.cli import run

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run(["call", str(path), "-o", str(out), "--format", "json"])
    err = [x for x in stderr.getvalue().splitlines() if x.strip()]
    if code == 0:
        for report in out.glob("*.report.json"):
            json.loads(report.read_text(encoding="utf-8"))
        return None
    if code != 2:
        return f"exit {code}: {' | '.join(err)[:300]}"
    if len(err) != 1 or not err[0].startswith(f"permed: error: {path}"):
        return f"error not one line naming the file: {' | '.join(err)[:300]}"
    left = [p.name for p in out.iterdir()] if out.exists() else []
    if left:
        return f"output left after an error: {left[:3]}"
    return None


def _child(seed_value: int, start: int, count: int, progress: Path) -> None:
    """The child's loop: mutants start..start+count of this seed; progress file names the current one."""
    import signal

    def hang(_signum, _frame):
        raise TimeoutError("mutant took too long")

    signal.signal(signal.SIGALRM, hang)
    corpus = seeds()
    work = Path(tempfile.mkdtemp(prefix="permed-fuzz-"))
    failures = []
    try:
        for k in range(start, start + count):
            rng = random.Random(f"{seed_value}:{k}")
            seed = corpus[k % len(corpus)]
            data, what = mutant(seed, rng)
            gz = rng.random() < 0.2
            path = work / f"m{k}.vcf{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(data) if gz else data)
            out = work / f"out{k}"
            progress.write_text(f"{k}\n")
            signal.alarm(MUTANT_TIMEOUT)
            try:
                # every tenth mutant goes through the whole command (reports, exit code, clean output
                # directory); the others through the stages a file reaches, ten times faster
                problem = _check_one(path, out) if k % 10 == 0 else _check_stages(path)
            except TimeoutError:
                problem = "hang"
            finally:
                signal.alarm(0)
            if problem:
                failures.append({"mutant": k, "what": what, "problem": problem})
            path.unlink(missing_ok=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress.write_text(json.dumps({"done": True, "failures": failures}))


@dataclass
class BatchResult:
    ran: int
    failures: list[dict]  # {"mutant", "what", "problem"}; problem "death: ..." when the process died


def run_batch(seed_value: int, start: int, count: int, timeout: float | None = None) -> BatchResult:
    """Run mutants [start, start+count) in a child process; a death is recorded and the rest go on in a
    new child."""
    failures: list[dict] = []
    ran = 0
    k = start
    with tempfile.TemporaryDirectory() as tmp:
        progress = Path(tmp) / "progress"
        while k < start + count:
            progress.write_text("")
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import vcf_mutants; "
                    f"vcf_mutants._child({seed_value}, {k}, {start + count - k}, __import__('pathlib').Path("
                    f"{str(progress)!r}))")
            env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                                  env=env)
            state = progress.read_text()
            if state.startswith("{"):
                result = json.loads(state)
                failures += result["failures"]
                ran += start + count - k
                break
            # the child ended: the progress file names the mutant it was running
            dead_at = int(state) if state.strip() else k
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            # htslib ending the process itself is turned into our one-line error, exit 2 (genotypes/files.py)
            ours = proc.returncode == 2 and last.startswith("permed: error: ") and f"/m{dead_at}.vcf" in last
            if not ours:
                failures.append({"mutant": dead_at, "what": "", "problem":
                                 f"death (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"})
            ran += dead_at - k + 1
            k = dead_at + 1
    return BatchResult(ran, failures)


def reproduce(seed_value: int, k: int) -> tuple[bytes, str]:
    """The bytes of mutant k (to save a failing case as a file)."""
    corpus = seeds()
    rng = random.Random(f"{seed_value}:{k}")
    return mutant(corpus[k % len(corpus)], rng)
