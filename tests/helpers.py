"""Shared test helpers: run the CLI as a real process, build small VCFs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from permed.cli import example_vcf

HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr10,length=133797422>
##contig=<ID=chr1,length=248956422>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "permed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


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
    text = header + cols + body
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

    def __init__(self, data: Path, database: str | None = None, env: dict | None = None):
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
        self.env = {**os.environ, **(env or {})}

    def __enter__(self) -> Served:
        import time

        import httpx

        self._logfile = self.log.open("wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._logfile, stderr=subprocess.STDOUT)
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
