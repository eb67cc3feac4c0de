"""Installs that fit: the wheel and sdist build and pass `twine check`, and each extra works in a fresh venv
(installed from the built wheel with the lock file, as a user would): the core runs the call/report path and
names the extra a command lacks; `cohort`, `service`, `pdf` and `all` run what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
EXTRAS = ("", "cohort", "service", "pdf", "imputed", "federation", "all")


def run(*args, cwd=None, check=True, env=None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900,
                         env={**os.environ, **(env or {})})
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} -> {res.returncode}\n{res.stdout[-2000:]}\n"
                             f"{res.stderr[-2000:]}")
    return res


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def venvs(dist, tmp_path_factory) -> dict[str, Path]:
    """A fresh venv per extra, each with permed installed from the wheel under the lock file."""
    (wheel,) = dist.glob("permed-*.whl")
    base = tmp_path_factory.mktemp("venvs")

    def make(extra: str) -> tuple[str, Path]:
        venv = base / (extra or "core")
        run(sys.executable, "-m", "venv", venv)
        spec = f"permed[{extra}] @ {wheel.as_uri()}" if extra else str(wheel)
        run(venv / "bin" / "pip", "install", "-q", "-c", CONSTRAINTS, spec)
        return extra, venv

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(make, EXTRAS))


def test_wheel_and_sdist_build_and_pass_twine_check(dist):
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    run(sys.executable, "-m", "twine", "check", "--strict", *files)
    names = zipfile.ZipFile(next(f for f in files if f.suffix == ".whl")).namelist()
    # the data the engine needs at run time ships in the wheel
    for needed in ("permed/kb/data/permed-kb.json.gz", "permed/kb/data/NOTICE.md",
                   "permed/examples/example_patient.vcf", "permed/report/templates/report.html.j2",
                   "permed/report/locale/zh/LC_MESSAGES/messages.po"):
        assert needed in names, needed


def _permed(venv: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return run(venv / "bin" / "permed", *args, cwd=cwd, check=False)


def test_the_core_install_calls_and_names_the_extra_a_command_needs(venvs, tmp_path):
    core = venvs[""]
    pip_list = run(core / "bin" / "pip", "list", "--format=freeze").stdout.lower()
    for heavy in ("pyarrow", "duckdb", "dask", "fastapi", "sqlalchemy", "weasyprint", "pysam", "cbgen", "opendp"):
        assert f"\n{heavy}==" not in "\n" + pip_list, heavy  # lean: none of the extras' packages
    res = _permed(core, "call", "--example", "-o", tmp_path / "out", "--format", "html,fhir", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "EXAMPLE-PATIENT.report.html").is_file()
    assert (tmp_path / "out" / "EXAMPLE-PATIENT.fhir.json").is_file()
    example = run(core / "bin" / "python", "-c", "from permed.examples import example_vcf; print(example_vcf())"
                  ).stdout.strip()
    for args, extra in ((("cohort", example, "-o", tmp_path / "c"), "cohort"),
                        (("serve", "--data-dir", tmp_path / "d"), "service"),
                        (("token", "create", "--role", "lab", "--data-dir", tmp_path / "d"), "service"),
                        (("call", "--example", "-o", tmp_path / "p", "--format", "pdf"), "pdf")):
        res = _permed(core, *args, cwd=tmp_path)
        assert res.returncode == 64, (args, res.stderr)
        assert f"pip install 'permed[{extra}]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "c").exists()
    api = run(core / "bin" / "python", "-c", "import permed; permed.cohort([])", check=False)
    assert "MissingExtraError" in api.stderr and "permed[cohort]" in api.stderr


def test_each_extra_runs_what_it_promises(venvs, tmp_path):
    example = run(venvs["cohort"] / "bin" / "python", "-c",
                  "from permed.examples import example_vcf; print(example_vcf())").stdout.strip()
    # cohort: Parquet tables from the example
    res = _permed(venvs["cohort"], "cohort", example, "-o", tmp_path / "cohort", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "cohort").glob("*.parquet"))
    # pdf: a PDF report
    res = _permed(venvs["pdf"], "call", "--example", "-o", tmp_path / "pdf", "--format", "pdf", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "pdf" / "EXAMPLE-PATIENT.report.pdf").read_bytes().startswith(b"%PDF")
    # service: a token in a new data directory, and the app with its CDS Hooks and FHIR routes builds
    res = _permed(venvs["service"], "token", "create", "--role", "lab", "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run(venvs["service"] / "bin" / "python", "-c",
        "from pathlib import Path; from permed.service.app import Settings, create_app; "
        f"create_app(Settings(data_dir=Path({str(tmp_path / 'data')!r})))")
    # imputed: the BGEN and pgen readers' libraries; federation: a node's app and the federated client
    run(venvs["imputed"] / "bin" / "python", "-c", "import cbgen, pgenlib; import permed.genotypes.imputed")
    assert _permed(venvs["imputed"], "cohort", example, "-o", tmp_path / "c2", cwd=tmp_path).returncode == 64
    run(venvs["federation"] / "bin" / "python", "-c",
        "import opendp, permed.federation.app, permed.federation.client, permed.federation.privacy")
    res = _permed(venvs["federation"], "cohort", example, "-o", tmp_path / "fed", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = _permed(venvs["federation"], "node", "token", "create", tmp_path / "fed", "--scope", "count", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip(), res.stderr
    # all: every optional module imports
    run(venvs["all"] / "bin" / "python", "-c",
        "import permed.service.app, permed.biobank.output, permed.biobank.query, weasyprint, jwt, duckdb, "
        "cbgen, pgenlib, opendp, permed.federation.app")
