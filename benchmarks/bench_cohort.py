"""Benchmark `permed cohort`: 1000 Genomes (3,202 samples x 19 gene files) against the floor, and
synthetic cohorts of growing size made from 1KGP haplotypes (memory flat, time linear, 200k projection).

Every measurement is a fresh process, running permed byte-compiled as an installed copy is. Wall times come
from unobserved runs; peak memory from one more run, as the largest sum of PSS (proportional set size: pages
shared by forked workers counted once) over the process tree (main process plus workers), sampled every 20 ms
(sampling takes CPU, so that run's time is not used). CPU seconds (user + system, every process of the run)
are printed beside the wall times: on a machine with few cores they bound how much faster a second worker can
make a run.

    python benchmarks/bench_cohort.py [--data DIR] [--repeat N] [--sizes 12500,50000,100000,200000]
                                      [--skip-1kgp] [--skip-synthetic] [--skip-dask] [--skip-dp] [--tmp DIR]

At 100,000 samples the same cohort is also written with a read depth beside every call (FORMAT GT:DP):
those lines go through htslib instead of permed's GT-only text reader, so both paths are measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"
POPS = ROOT.parent / "shared" / "data" / "1kgp_populations.tsv"
sys.path.insert(0, str(ROOT / "benchmarks"))
# every measured command runs in the environment this script started with: a LocalCluster writes its workers'
# settings into this process's environment (MALLOC_TRIM_THRESHOLD_=65536, thread caps, PYTHONHASHSEED) and
# leaves them there, and commands started later would inherit them (the allocator setting alone made
# `permed cohort` 1.5x slower, and the floor 1.2x)
ENV = dict(os.environ)

# the floor: read every genotype of every record once, with the library permed uses (cyvcf2)
FLOOR_ALL = r"""
import sys
from cyvcf2 import VCF
n = 0
for f in sys.argv[1:]:
    for rec in VCF(f):
        rec.genotype.array()
        n += 1
print(n)
"""


def measure(cmd: list[str], per_process: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak PSS MiB of the whole process tree); `per_process` receives the peak RSS MiB of
    the largest single process under "rss", of the main process under "main" and of every other process
    (workers; helpers such as multiprocessing's resource tracker included) under "others", largest first."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    root = psutil.Process(proc.pid)
    peak = 0
    peaks: dict[int, int] = {}  # pid -> peak RSS bytes
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            infos = [(p.pid, p.memory_full_info()) for p in procs if p.is_running()]
            peak = max(peak, sum(i.pss for _, i in infos))
            for pid, i in infos:
                peaks[pid] = max(peaks.get(pid, 0), i.rss)
        except (psutil.Error, ValueError):
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    if per_process is not None:
        mib = {pid: v / 2**20 for pid, v in peaks.items()}
        per_process["rss"] = max(mib.values(), default=0.0)
        per_process["main"] = mib.get(root.pid, 0.0)
        per_process["others"] = sorted((v for pid, v in mib.items() if pid != root.pid), reverse=True)
    return wall, peak / 2**20


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run, unobserved (sampling PSS costs CPU the run would otherwise
    have). CPU is user + system time of the whole process tree: the command's workers are its children and
    are waited for before it exits, so the kernel adds theirs to its own."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def wall(cmd: list[str]) -> float:
    return timed(cmd)[0]


def best(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(best wall seconds of `repeat` unobserved runs, peak PSS MiB of one more, observed run)."""
    return min(wall(cmd) for _ in range(repeat)), measure(cmd)[1]


def cohort(files: list[str], extra: list[str], repeat: int) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
    try:
        return best([sys.executable, "-m", "permed", "cohort", *files, "-o", str(out / "out"), "--quiet", *extra],
                    repeat)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compile_permed() -> None:
    """permed's modules byte-compiled, as `pip install .` leaves them. An editable checkout on a machine that sets
    PYTHONDONTWRITEBYTECODE (the development machines do) otherwise compiles every module again in every
    measured run: 0.1-0.2 s of each run's fixed cost that an installed permed does not pay."""
    import compileall

    import permed

    compileall.compile_dir(Path(permed.__file__).parent, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="12500,50000,100000,200000")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-1kgp", action="store_true")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-dp", action="store_true", help="skip the GT:DP (htslib path) run at 100,000 samples")
    ap.add_argument("--tmp", type=Path, default=None, help="directory for the synthetic VCFs")
    args = ap.parse_args()
    compile_permed()
    files = sorted(str(p) for p in args.data.glob("*.vcf.gz"))
    if not files:
        raise SystemExit(f"no VCFs in {args.data}")
    if args.skip_1kgp:
        scale(args)
        return
    n = 3202
    print(f"1KGP: {len(files)} files, {n} samples; cores: {os.cpu_count()}; best of {args.repeat}")
    floor = best([sys.executable, "-c", FLOOR_ALL, *files], args.repeat)
    print(f"{'floor: cyvcf2 reads every genotype once':50s} {floor[0]:7.2f} s  {floor[1]:6.0f} MiB")
    pops = ["--populations", str(POPS)] if POPS.exists() else []
    for label, extra in (("permed cohort, 1 worker", ["--workers", "1"]),
                         ("permed cohort, 2 workers", ["--workers", "2"])):
        wall, rss = cohort(files, extra + pops, args.repeat)
        print(f"{label:50s} {wall:7.2f} s  {rss:6.0f} MiB   {wall / floor[0]:.2f}x floor  {n / wall:6.0f} samples/s")
    if args.skip_synthetic:
        return
    scale(args)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def interleaved_best(cmds: dict[str, list[str]], repeat: int, cpu: dict | None = None) -> dict[str, float]:
    """Best wall of each command over `repeat` rounds, every round running each command once in turn: the
    machine's speed drifts (shared 2-core host), and interleaving exposes every command to the same drift.
    `cpu` receives each command's least CPU seconds over the rounds."""
    out = {k: float("inf") for k in cmds}
    least_cpu = {k: float("inf") for k in cmds}
    for _ in range(repeat):
        for k, cmd in cmds.items():
            w, c = timed(cmd)
            out[k], least_cpu[k] = min(out[k], w), min(least_cpu[k], c)
    if cpu is not None:
        cpu.update(least_cpu)
    return out


def peak_rss_per_process(cmd: list[str]) -> dict:
    """Peak RSS MiB per process in one observed run (see `measure`)."""
    pp: dict = {}
    measure(cmd, pp)
    return pp


def per_process_text(pp: dict) -> str:
    if not pp["others"]:
        return f"main {pp['main']:.0f} (no other process)"
    return f"main {pp['main']:.0f}, workers " + ", ".join(f"{v:.0f}" for v in pp["others"])


def cohort_cmd(vcf: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "permed", "cohort", str(vcf), "-o", str(out), "--quiet", *extra]


def dask_run(vcf: Path, repeat: int, local_extra: list[str]) -> tuple[float, float]:
    """(best wall of `permed cohort --scheduler` on a LocalCluster of 2 single-threaded worker processes, best
    wall of the local run with `local_extra`), interleaved. The cluster splits the file over its workers by
    itself (as `--workers 2` does) and its units stream chunks back as they make them."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
        try:
            got = interleaved_best({
                "dask": cohort_cmd(vcf, out / "dask", ["--scheduler", cluster.scheduler_address]),
                "local": cohort_cmd(vcf, out / "local", local_extra)}, repeat)
            return got["dask"], got["local"]
        finally:
            shutil.rmtree(out, ignore_errors=True)


def depth_run(tmp: Path, size: int, args) -> None:
    """The same cohort with FORMAT GT:DP (read through htslib): floor, 1 and 2 workers, interleaved."""
    from synthetic_cohort import write_cohort_vcf

    vcf = tmp / f"syn{size}-dp.vcf.gz"
    write_cohort_vcf(size, vcf, args.data, with_dp=True)
    out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
    try:
        got = interleaved_best({"floor": [sys.executable, "-c", FLOOR_ALL, str(vcf)],
                                "1": cohort_cmd(vcf, out / "1", ["--workers", "1"]),
                                "2": cohort_cmd(vcf, out / "2", ["--workers", "2"])}, args.repeat)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        vcf.unlink()
    fl, w1, w2 = got["floor"], got["1"], got["2"]
    print(f"{'':8s} GT:DP (htslib path): floor {fl:6.2f} s; 1 worker {w1:6.2f} s ({w1 / fl:.2f}x); "
          f"2 workers {w2:6.2f} s ({w2 / fl:.2f}x); speed-up {w1 / w2:.2f}x ({load()})", flush=True)


def scale(args) -> None:
    """Synthetic cohorts, one plain-gzip file each (a biobank export): 1 and 2 workers against the floor."""
    from synthetic_cohort import write_cohort_vcf

    print(f"\nsynthetic cohorts from 1KGP haplotypes (records at pharmacogene windows only, one plain-gzip file); "
          f"best of {args.repeat} interleaved rounds (floor, 1 worker, 2 workers in turn); RSS = peak of the largest "
          "single process (every process's peak on the line below); load = 1-min load average before the size's "
          "runs (2 cores)")
    print(f"{'samples':>8} {'floor':>8} {'1 worker':>10} {'ratio':>6} {'RSS':>9} {'2 workers':>10} {'ratio':>6} "
          f"{'RSS':>9} {'speed-up':>8}")
    tmp = Path(tempfile.mkdtemp(prefix="permed-synth-", dir=args.tmp))
    rows = []
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            vcf = tmp / f"syn{size}.vcf.gz"
            write_cohort_vcf(size, vcf, args.data)
            l0 = load()
            out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
            try:
                cmds = {"floor": [sys.executable, "-c", FLOOR_ALL, str(vcf)],
                        "1": cohort_cmd(vcf, out / "1", ["--workers", "1"]),
                        "2": cohort_cmd(vcf, out / "2", ["--workers", "2"])}
                cpu: dict = {}
                got = interleaved_best(cmds, args.repeat, cpu)
                r1, r2 = peak_rss_per_process(cmds["1"]), peak_rss_per_process(cmds["2"])
            finally:
                shutil.rmtree(out, ignore_errors=True)
            fl, w1, w2 = got["floor"], got["1"], got["2"]
            rows.append((size, w1, w2, r1["rss"], r2["rss"]))
            print(f"{size:8d} {fl:6.2f} s {w1:8.2f} s {w1 / fl:5.2f}x {r1['rss']:5.0f} MiB "
                  f"{w2:8.2f} s {w2 / fl:5.2f}x {r2['rss']:5.0f} MiB {w1 / w2:7.2f}x  ({l0})", flush=True)
            print(f"{'':8s} peak RSS per process (MiB): 1 worker {per_process_text(r1)}; "
                  f"2 workers {per_process_text(r2)}", flush=True)
            # on n cores a run that spends C seconds of CPU needs at least C / n seconds of wall, so the
            # 2-worker run's CPU bounds the speed-up any packing of its work could give on this machine
            cores = os.cpu_count() or 1
            print(f"{'':8s} CPU, all processes (least of the rounds): floor {cpu['floor']:.2f} s, 1 worker "
                  f"{cpu['1']:.2f} s ({cpu['1'] / w1:.2f} cores busy), 2 workers {cpu['2']:.2f} s "
                  f"({cpu['2'] / w2:.2f} cores busy); on {cores} cores the 2-worker run needs >= "
                  f"{cpu['2'] / cores:.2f} s, a speed-up of at most {w1 / (cpu['2'] / cores):.2f}x", flush=True)
            if size == 100_000 and not args.skip_dask:
                ld = load()
                wd, wl = dask_run(vcf, args.repeat, ["--workers", "2"])
                print(f"{'':8s} Dask LocalCluster, 2 workers: {wd:6.2f} s; --workers 2 in the same rounds: {wl:6.2f} s;"
                      f" Dask {wd / wl:.2f}x local ({ld})", flush=True)
            vcf.unlink()
            if size == 100_000 and not args.skip_dp:
                depth_run(tmp, size, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        for label, col in (("1 worker", 1), ("2 workers", 2)):
            # least-squares line through (samples, seconds): fixed cost + per-sample cost
            xs, ys = [r[0] for r in rows], [r[col] for r in rows]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            icpt = my - slope * mx
            resid = max(abs(y - (icpt + slope * x)) / y for x, y in zip(xs, ys))
            print(f"fit, {label}: {icpt:.1f} s + {slope * 1e6:.1f} us/sample (largest deviation {resid:.0%}); "
                  f"projected 500,000 samples: {icpt + slope * 500_000:.0f} s")
        print(f"peak RSS of any process: {min(min(r[3], r[4]) for r in rows):.0f}-"
              f"{max(max(r[3], r[4]) for r in rows):.0f} MiB")


if __name__ == "__main__":
    main()
