"""Service jobs under attack and crashes (issue 11): decompression and shape bombs, memory and time limits
(each a one-line failure, never retried, the worker going on), leftovers of killed jobs and uploads
cleaned, workers that die with their server, operator restarts that cost no attempt, and stored results
checked before they are served. Jobs are queued straight into the store (the API is tested elsewhere)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HEADER, example_text, rec, slow_jobs_env, write_vcf

from permed.service.job_limits import JobLimits
from permed.service.store import Job, Store, Upload
from permed.service.tokens import create_token


@pytest.fixture()
def jobs(tmp_path, database_url):
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    store = Store(database_url) if database_url else Store.in_data_dir(data)
    return store, data, database_url


def queue(store: Store, data: Path, content: bytes, filename: str = "patient.vcf", meds: str | None = None) -> int:
    """Store an upload as the API does (file named by its SHA-256) with its queued job; the job's id."""
    sha = hashlib.sha256(content).hexdigest()
    suffix = ".vcf.gz" if content[:2] == b"\x1f\x8b" else ".vcf"
    (data / "uploads" / f"{sha}{suffix}").write_bytes(content)
    token = create_token(store, "lab")[0]
    with store.session() as s:
        upload = Upload(sha256=sha, request_key=hashlib.sha256(f"{sha}{meds}{time.time_ns()}".encode()).hexdigest(),
                        filename=filename, size=len(content), medications=meds, created_by=token.id,
                        organisation_id=token.organisation_id)
        s.add(upload)
        s.flush()
        job = Job(upload_id=upload.id)
        s.add(job)
        s.flush()
        return job.id


def job_of(store: Store, job_id: int) -> Job:
    with store.session() as s:
        return s.get(Job, job_id)


def wait_for(what, timeout: float = 60.0, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what.__name__}")


def _db_args(database_url) -> list[str]:
    return ["--database", database_url] if database_url else []


# 1. limits -----------------------------------------------------------------------------------------


def test_decompression_bomb_fails_at_the_inflated_limit_not_retried(jobs):
    """A 5 MiB-inflating gzip under a 1 MiB limit: counting stops at the limit, one line, no retry; the
    next job in the queue runs."""
    from permed.service.worker import run_worker

    store, data, _ = jobs
    body = b"".join(rec("chr10", 94761900 + i, "C", "T", "0/1").encode() for i in range(150_000))
    bomb = gzip.compress(HEADER.encode() + b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n" + body)
    assert len(gzip.decompress(bomb)) > 5 * 1024**2
    # zeros behind a valid header (under the limit): binary data, refused before anything is recompressed
    zeros = gzip.compress(HEADER.encode() + b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
                          + b"\0" * 900_000)
    bad = queue(store, data, bomb, "bomb.vcf.gz")
    nul = queue(store, data, zeros, "zeros.vcf.gz")
    good = queue(store, data, example_text().encode())
    started = time.monotonic()
    assert run_worker(store, data, once=True, limits=JobLimits(inflated_mb=1)) == 3
    assert time.monotonic() - started < 120
    failed = job_of(store, bad)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.error == "the VCF inflates beyond 1 MiB (limit --job-max-inflated-mb)"
    z = job_of(store, nul)
    assert (z.state, z.attempts) == ("failed", 1)
    assert z.error == "zeros.vcf.gz: line 7: a NUL byte (binary data): not VCF text"
    assert job_of(store, good).state == "done"
    for content in (bomb, zeros):  # nothing written for them
        assert not list(data.glob(f"indexed/*{hashlib.sha256(content).hexdigest()}*"))


def test_records_and_samples_limits(jobs):
    from permed.service.worker import run_worker

    store, data, _ = jobs
    many_records = "".join(rec("chr10", 1000 + i, "A", "G", "0/1") for i in range(50))
    records = queue(store, data, write_vcf(data / "r.vcf", many_records).read_bytes())
    samples = queue(store, data, write_vcf(data / "s.vcf", rec("chr10", 1000, "A", "G", *["0/1"] * 12),
                                           samples=[f"P{i}" for i in range(12)]).read_bytes())
    assert run_worker(store, data, once=True, limits=JobLimits(records=20, samples=5)) == 2
    r, s = job_of(store, records), job_of(store, samples)
    assert (r.state, r.attempts) == (s.state, s.attempts) == ("failed", 1)
    assert r.error == "the VCF holds more than 20 records (limit --job-max-records)"
    assert s.error == "the VCF names more than 5 samples (limit --job-max-samples)"


def test_shape_is_counted_alike_in_vcf_gzip_bgzip_and_bcf(tmp_path):
    from pysam import bcftools

    from permed.service.indexing import check_shape

    text = example_text().encode()
    n_records = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    plain = tmp_path / "a.vcf"
    plain.write_bytes(text)
    (tmp_path / "a.vcf.gz").write_bytes(gzip.compress(text))
    bcftools.view("-Oz", "-o", str(tmp_path / "b.vcf.gz"), str(plain), catch_stdout=False)
    bcftools.view("-Ob", "-o", str(tmp_path / "a.bcf"), str(plain), catch_stdout=False)
    bcftools.view("-Ou", "-o", str(tmp_path / "u.bcf"), str(plain), catch_stdout=False)
    for name in ("a.vcf", "a.vcf.gz", "b.vcf.gz", "a.bcf", "u.bcf"):
        shape = check_shape(tmp_path / name, JobLimits())
        assert (shape.records, shape.samples) == (n_records, 1), name
    with pytest.raises(Exception, match="more than 100 records"):
        check_shape(tmp_path / "a.bcf", JobLimits(records=100))
    no_newline = tmp_path / "c.vcf"
    no_newline.write_bytes(text.rstrip(b"\n"))
    assert check_shape(no_newline, JobLimits()).records == n_records


def test_memory_error_fails_the_job_cleanly_and_the_worker_goes_on(jobs, monkeypatch):
    """An allocation beyond the job's address-space limit: the job fails with the limit's name once
    (not retried, no loop); the worker itself is not limited and runs the next job."""
    import permed.report.output as output
    from permed.service.worker import run_worker

    store, data, _ = jobs
    greedy = queue(store, data, example_text().encode(), meds="codeine")
    real = output.write_outputs
    # the job may add 1 GiB to what this (test) process maps when the job's process is forked from it
    limits = JobLimits(memory_mb=1024)

    def hungry(result, out_dir, **kwargs):
        if Path(out_dir).name == str(job_of(store, greedy).upload_id):
            _ = bytearray(3 * 1024**3)  # 2 GiB beyond the allowance
        return real(result, out_dir, **kwargs)

    monkeypatch.setattr(output, "write_outputs", hungry)
    fine = queue(store, data, example_text().encode(), meds="clopidogrel")
    assert run_worker(store, data, once=True, limits=limits) == 2
    g = job_of(store, greedy)
    assert (g.state, g.attempts, g.error) == ("failed", 1, str(limits.out_of_memory()))
    assert g.error.endswith("of memory (limit --job-max-memory-mb)")
    assert job_of(store, fine).state == "done"
    assert not list(data.glob("results/*/.permed-*"))


def test_a_job_past_its_deadline_is_killed_its_staging_removed_and_the_queue_moves_on(jobs, monkeypatch):
    import permed.report.output as output
    from permed.service.worker import run_worker
    from permed.staging import StagedOutput

    store, data, _ = jobs
    stuck = queue(store, data, example_text().encode(), meds="codeine")
    real = output.write_outputs
    pid_file = data / "stuck.pid"

    def never_ends(result, out_dir, **kwargs):
        if Path(out_dir).name != str(job_of(store, stuck).upload_id):
            return real(result, out_dir, **kwargs)
        with StagedOutput(out_dir) as out:  # half-written reports, as a job killed while writing leaves them
            out.path("x.report.json").write_text("{")
            pid_file.write_text(str(os.getpid()))
            time.sleep(600)
        return []

    monkeypatch.setattr(output, "write_outputs", never_ends)
    nxt = queue(store, data, example_text().encode(), meds="clopidogrel")
    started = time.monotonic()
    assert run_worker(store, data, once=True, limits=JobLimits(seconds=3)) == 2
    assert time.monotonic() - started < 60  # not 600 s
    s = job_of(store, stuck)
    assert (s.state, s.attempts, s.error) == ("failed", 1, "the job ran longer than 3 s (limit --job-max-seconds)")
    assert job_of(store, nxt).state == "done"
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed, not left running
    assert not list(data.glob("results/*/.permed-*"))  # its staging folder went with it
    assert not list(data.glob(f"results/{s.upload_id}/*.report.*"))


def test_a_worker_that_already_maps_more_than_the_limit_still_runs_its_jobs(jobs):
    """The memory limit is the job's allowance, not a cap on the worker's own address space: a worker whose
    process already maps more (reserved, untouched pages, as duckdb's or many threads' are) than the limit
    ran every job into a failed mapping before (service tests failed at random in full runs, on an xdist
    process grown past 4 GiB by the tests that ran before them)."""
    import mmap

    from permed.service.worker import run_worker

    store, data, _ = jobs
    job_id = queue(store, data, example_text().encode(), meds="clopidogrel")
    limits = JobLimits(memory_mb=256)
    reserved = mmap.mmap(-1, 2 * 1024**3)  # 2 GiB of address space, never touched
    try:
        assert run_worker(store, data, once=True, limits=limits) == 1
    finally:
        reserved.close()
    j = job_of(store, job_id)
    assert (j.state, j.error) == ("done", None), j.error


# 2. leftovers --------------------------------------------------------------------------------------


def test_worker_start_removes_stale_leftovers_only(jobs):
    import socket

    from permed.service.worker import run_worker

    store, data, _ = jobs
    old = time.time() - 3600
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    made = {}
    for name, path in {
        "staging-old": data / "results" / "7" / ".permed-abc",
        "staging-dead-writer": data / "results" / "7" / f".permed-{dead.pid}-xyz",
        "staging-live": data / "results" / "8" / f".permed-{os.getpid()}-live",
    }.items():
        path.mkdir(parents=True)
        (path / "a.report.json").write_text("{")
        made[name] = path
    for name, path in {"upload-old": data / "uploads" / ".upload-old", "upload-open": data / "uploads" / ".upload-open",
                       "upload-fresh": data / "uploads" / ".upload-fresh"}.items():
        path.write_bytes(b"##fileformat=VCFv4.2\n")
        made[name] = path
    (data / "indexed").mkdir()
    host = socket.gethostname()
    made["indexed-dead"] = data / "indexed" / f".{'a' * 64}.{host}-{dead.pid}.0f0f.tmp"
    made["indexed-live"] = data / "indexed" / f".{'b' * 64}.{host}-{os.getpid()}.0f0f.tmp"
    for name in ("indexed-dead", "indexed-live"):
        made[name].write_bytes(b"x")
    for name in ("staging-old", "staging-dead-writer", "upload-old", "upload-open"):
        for p in [made[name], *made[name].rglob("*")] if made[name].is_dir() else [made[name]]:
            os.utime(p, (old, old))
    with open(made["upload-open"], "ab"):  # a slow upload still being received: kept however old
        assert run_worker(store, data, once=True) == 0
    gone = {name for name, path in made.items() if not path.exists()}
    assert gone == {"staging-old", "staging-dead-writer", "upload-old", "indexed-dead"}


# 3. parent death -----------------------------------------------------------------------------------


PARENT = """
import sys, time
from pathlib import Path
from permed.service.supervisor import WorkerSupervisor
data, db = Path(sys.argv[1]), (sys.argv[2] or None)
with WorkerSupervisor(data, db, lease=3):
    time.sleep(3600)
"""


def test_workers_exit_when_their_server_is_killed_and_the_job_is_not_lost(jobs):
    """kill -9 of the process that supervises the workers (as `permed serve` does): its workers exit
    within seconds instead of running on unsupervised; their job is queued again without using up an
    attempt, and the next server's worker finishes it."""
    import psutil

    from permed.service.worker import run_worker

    store, data, database_url = jobs
    job_id = queue(store, data, example_text().encode())
    started = data.parent / "started"
    started.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(data), database_url or ""],
                              env=slow_jobs_env(60, started))
    try:
        wait_for(lambda: any(started.iterdir()))  # a worker's job has begun, not merely been claimed
        workers = psutil.Process(parent.pid).children()
        assert len(workers) == 2  # two workers by default
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, "workers outlived their server"
    finally:
        for p in psutil.Process().children(recursive=True):
            p.kill()
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions) == ("queued", 0, 1)
    assert run_worker(store, data, once=True) == 1
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions) == ("done", 1, 1)


def test_a_worker_whose_server_is_already_gone_takes_no_job(jobs):
    """The fallback where no parent-death signal exists: a worker started for a server that is no
    longer its parent stops before claiming anything."""
    from permed.service.worker import run_worker

    store, data, _ = jobs
    job_id = queue(store, data, example_text().encode())
    assert os.getppid() != 1
    assert run_worker(store, data, once=True, parent_pid=1) == 0
    assert job_of(store, job_id).state == "queued"


def test_a_stop_that_comes_while_a_job_is_claimed_does_not_count_as_an_interruption(jobs, monkeypatch):
    """When a server dies, one worker puts its job back and the other may claim it just as its own stop
    arrives: the job goes back queued with neither an attempt nor an interruption (CI saw 2 interruptions)."""
    import permed.service.worker as worker_module

    store, data, _ = jobs
    job_id = queue(store, data, example_text().encode())
    claim = worker_module.claim

    def claim_then_stop(store_, me):
        job = claim(store_, me)
        worker_module._stop.requested = True  # SIGTERM arriving between the claim and the job's start
        return job

    monkeypatch.setattr(worker_module, "claim", claim_then_stop)
    assert worker_module.run_worker(store, data) == 0
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions, j.worker) == ("queued", 0, 0, None)


# 4. interruptions ------------------------------------------------------------------------------------


def test_sigterm_requeues_without_an_attempt_kill_9_costs_one(jobs):
    from permed.service.worker import recover, run_worker

    store, data, database_url = jobs
    job_id = queue(store, data, example_text().encode())
    cmd = [sys.executable, "-m", "permed", "worker", "--data-dir", str(data), *_db_args(database_url)]

    started = data.parent / "started"
    started.mkdir()

    def run_until_running():
        proc = subprocess.Popen(cmd, env=slow_jobs_env(60, started))
        # the job's own start, not its claim: a stop between the two is not an interruption (see
        # test_a_stop_that_comes_while_a_job_is_claimed_...), and CI once sent SIGTERM in that gap
        wait_for(lambda: (started / str(proc.pid)).exists())
        assert job_of(store, job_id).state == "running"
        return proc

    worker = run_until_running()
    try:
        worker.send_signal(signal.SIGTERM)  # an operator restart
        assert worker.wait(timeout=20) == 0
    finally:
        worker.kill()
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions, j.worker) == ("queued", 0, 1, None)

    worker = run_until_running()
    try:
        worker.send_signal(signal.SIGKILL)  # the worker alone dies: that counts
        worker.wait(timeout=20)
    finally:
        worker.kill()
    assert recover(store, lease=0) == 1
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions) == ("queued", 1, 1)
    assert run_worker(store, data, once=True) == 1
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.interruptions) == ("done", 2, 1)


def test_a_job_whose_process_dies_uses_its_attempts_then_fails(jobs, monkeypatch):
    import permed.report.output as output
    from permed.service.worker import MAX_ATTEMPTS, run_worker

    store, data, _ = jobs
    job_id = queue(store, data, example_text().encode())

    def crash(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer or a crash in C would end it

    monkeypatch.setattr(output, "write_outputs", crash)
    assert run_worker(store, data, once=True) == MAX_ATTEMPTS
    j = job_of(store, job_id)
    assert (j.state, j.attempts) == ("failed", MAX_ATTEMPTS)
    assert j.error == f"the job's process died {MAX_ATTEMPTS} times (last: SIGKILL)"


# 5. result integrity ---------------------------------------------------------------------------------


def test_results_are_checksummed_damage_is_detected_and_a_rerun_repairs(jobs):
    from permed.service.results import DAMAGED, DamagedResult, digests, file_sha256, rerun, verify, verify_all
    from permed.service.worker import results_dir, run_worker

    store, data, _ = jobs
    job_id = queue(store, data, example_text().encode(), meds="clopidogrel")
    assert run_worker(store, data, once=True) == 1
    job = job_of(store, job_id)
    expected = digests(job)
    folder = results_dir(data, job.upload_id)
    report = next(folder.glob("*.report.json"))
    html = next(folder.glob("*.html"))
    assert {report.name, html.name} <= set(expected)
    assert all(file_sha256(folder / n) == d for n, d in expected.items())
    verify_all(folder, expected)
    assert verify(report, expected) == report

    good = report.read_bytes()
    report.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DamagedResult, match=DAMAGED):
        verify(report, expected)
    report.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # one byte changed, same size
    with pytest.raises(DamagedResult):
        verify(report, expected)
    report.write_bytes(good)
    verify(report, expected)
    html.unlink()  # deleted
    with pytest.raises(DamagedResult):
        verify(html, expected)
    with pytest.raises(DamagedResult):
        verify_all(folder, expected)
    assert str(DamagedResult()) == "stored result damaged, re-run the job"

    assert rerun(store, data, job_id)
    j = job_of(store, job_id)
    assert (j.state, j.attempts, j.results_sha256) == ("queued", 0, None)
    assert not folder.exists()
    assert not rerun(store, data, job_id)  # already queued
    assert run_worker(store, data, once=True) == 1
    j = job_of(store, job_id)
    assert j.state == "done"
    verify_all(folder, digests(j))
    assert json.loads(j.results_sha256) == digests(j)


def test_supervisor_passes_limits_to_its_workers():
    from permed.service.supervisor import WorkerSupervisor

    cmd = WorkerSupervisor(Path("d"), None, limits=JobLimits(records=5, seconds=60)).cmd
    assert cmd[-4:] == ["--job-max-records", "5", "--job-max-seconds", "60"]
    assert "--job-max-samples" not in WorkerSupervisor(Path("d"), None).cmd


def test_a_record_htslib_ends_the_process_on_fails_the_job_with_its_reason(jobs, tmp_path):
    """htslib calls exit() on some records (FORMAT PS:GT with the GT values missing); the job's process
    turns that into our one-line reason, and the job fails once (the input's fault, never retried) while
    the worker goes on with the next job."""
    from permed.service.worker import run_worker

    store, data, _ = jobs
    header = HEADER.replace('Type=Integer,Description="Phase set"', 'Type=String,Description="Phase set"')
    body = write_vcf(tmp_path / "x.vcf", rec("chr10", 94781859, "G", "A", "1|0", fmt="PS:GT"),
                     header=header).read_bytes()
    bad = queue(store, data, body, filename="ps_gt.vcf")
    fine = queue(store, data, example_text().encode(), meds="clopidogrel")
    assert run_worker(store, data, once=True) == 2
    j = job_of(store, bad)
    assert (j.state, j.attempts, j.error) == (
        "failed", 1, "ps_gt.vcf: htslib cannot read the file: Unexpected type 0 at chr10:94781859")
    assert job_of(store, fine).state == "done"
