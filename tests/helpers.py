"""Shared test helpers: run the CLI in this process or as a real one, read reports, build small VCFs."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

from permed.examples import example_vcf

ROOT = Path(__file__).resolve().parents[1]
REPORT_SCHEMA_FILE = ROOT / "docs" / "schema" / "report.schema.json"

HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr10,length=133797422>
##contig=<ID=chr1,length=248956422>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">
"""


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`permed ARGS` as a real process (the command-line contract: exit codes, streams, files)."""
    return subprocess.run([sys.executable, "-m", "permed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=env)


def slow_jobs_env(delay: float, started: Path | None = None) -> dict:
    """Environment for a `permed worker` / `permed serve` process whose jobs each wait `delay` seconds
    first (tests/hooks/slow_jobs, loaded through PYTHONPATH). `started`: a folder where each worker marks,
    by its pid, that its job has begun (a claimed job's "running" state comes a moment earlier)."""
    import os

    hook = str(Path(__file__).parent / "hooks" / "slow_jobs")
    path = os.pathsep.join(p for p in (hook, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PERMED_TEST_JOB_DELAY": str(delay)}
    if started is not None:
        env["PERMED_TEST_JOB_STARTED"] = str(started)
    return env


def cli(*args) -> subprocess.CompletedProcess:
    """`permed ARGS` in this process (same code path as the real command, without its start-up cost):
    the exit code and what was written to stdout and stderr."""
    from permed.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in args])
    return subprocess.CompletedProcess(["permed", *map(str, args)], code, out.getvalue(), err.getvalue())


def match(paths, **options):
    """Read and match VCF files with the packaged knowledge base (the engine's match stage)."""
    from permed.api import engine
    from permed.engine import Inputs
    from permed.options import Options

    return engine().match(Inputs.of(vcfs=paths), Options(**options))


@cache
def _report_validator():
    import jsonschema

    schema = json.loads(REPORT_SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_report(data: dict, where: str = "report") -> dict:
    """A report (parsed JSON) checked against the published schema (docs/schema/report.schema.json)
    and the model the service loads it with."""
    from permed.report.model import PatientReport

    errors = sorted(_report_validator().iter_errors(data), key=lambda e: list(e.path))
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].path)}"
    PatientReport.model_validate(data)
    return data


def read_report(path: Path) -> dict:
    """A written report.json, parsed and checked (check_report)."""
    return check_report(json.loads(Path(path).read_text(encoding="utf-8")), str(path))


def example_text() -> str:
    return example_vcf().read_text()


def two_patient_text(first: str = "PAT-A", second: str = "PAT-B") -> str:
    """The example VCF with two samples: `first` carries the example's genotypes, `second` is
    homozygous reference everywhere (so their reports differ, e.g. CYP2C19 *2/*17 against *38/*38)."""
    out = []
    for line in example_text().splitlines():
        if line.startswith("##"):
            out.append(line)
        elif line.startswith("#"):
            out.append("\t".join(line.split("\t")[:9] + [first, second]))
        else:
            out.append(line + "\t0/0")
    return "\n".join(out) + "\n"


def write_vcf(path: Path, body: str, samples=("S1",), header: str = HEADER) -> Path:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
    return write_text(path, header + cols + body)


def write_text(path: Path, text: str) -> Path:
    """`text` to `path`, gzipped when the name ends in .gz."""
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def rec(chrom: str, pos: int, ref: str, alt: str, *gts: str, fmt: str = "GT", filt: str = "PASS",
        info: str = ".") -> str:
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", filt, info, fmt, *gts]) + "\n"


def chromium_path() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("Chromium is needed for the browser smoke tests: run `bash scripts/test.sh` (installs it)")


class ChromiumPage:
    """A headless Chromium page that records console errors and any request leaving file:/data:."""

    def __init__(self, width: int = 1200, height: int = 900):
        self.viewport = {"width": width, "height": height}
        self.errors: list[str] = []
        self.external: list[str] = []

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = self._browser.new_page(viewport=self.viewport)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.external.append(r.url)
                if not r.url.startswith(("file:", "data:")) else None)
        self.page = page
        return self

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._pw.stop()


class Served:
    """`permed serve` as a real process on a free loopback port; its log (stdout+stderr) goes to a file."""

    def __init__(self, data: Path, database: str | None = None, env: dict | None = None, args: tuple = (),
                 umask: int | None = None):
        """`env`: the whole environment of the server (default: this process's); `args`: more options;
        `umask`: the server's umask (default: this process's)."""
        import os
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.log = Path(data).with_name(Path(data).name + ".log")
        self.cmd = [sys.executable, "-m", "permed", "serve", "--port", str(self.port), "--data-dir", str(data)]
        if database:
            self.cmd += ["--database", database]
        self.cmd += [str(a) for a in args]
        self.env = env or dict(os.environ)
        self.umask = umask

    def __enter__(self) -> Served:
        import time

        import httpx

        self._logfile = self.log.open("wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._logfile, stderr=subprocess.STDOUT,
                                     umask=-1 if self.umask is None else self.umask)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.api}/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        self.__exit__()
        raise AssertionError(f"permed serve did not start:\n{self.log.read_text()}")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._logfile.close()
