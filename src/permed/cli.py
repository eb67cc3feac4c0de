"""Command line: `permed call`, `cohort`, `query`, `schema`, `serve`, `worker`, `token create`, `kb build|info`.

A thin layer over the library: it turns flags into `Inputs` and `Options`, runs the one `Engine`,
writes through the report and cohort writers, and maps errors to exit codes (permed.errors).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from permed import __version__, errors
from permed.api import engine
from permed.errors import (
    INTERNAL_ERROR,
    INTERRUPTED,
    TERMINATED,
    USAGE_ERROR,
    ConfigurationError,
    MissingExtraError,
    OutputError,
    PermedError,
    Terminated,
)
from permed.launch import install_stop_handlers, is_batch
from permed.service import DEFAULT_MAX_UPLOAD_MB
from permed.service.job_limits import JobLimits
from permed.service.limits import DEFAULT_TOKEN_DAYS as _TOKEN_DAYS
from permed.service.limits import Limits

app = typer.Typer(add_completion=False, no_args_is_help=True, help="permed: pharmacogenomic calls from GRCh38 VCFs.")
kb_app = typer.Typer(no_args_is_help=True, help="Knowledge base: build from a PharmCAT release, inspect.")
app.add_typer(kb_app, name="kb")
token_app = typer.Typer(no_args_is_help=True, help="API tokens of the permed service.")
app.add_typer(token_app, name="token")
schema_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of permed's outputs.")
app.add_typer(schema_app, name="schema")
DATA_DIR = Path("permed-data")
err = Console(stderr=True)

REPORT_FORMATS = ("html", "pdf", "json", "pharmcat-tsv", "fhir")
OUTSIDE_FORMAT_HELP = ("Format of the --outside-calls files: cyrius, aldy, stellarpgx, pypgx or pharmcat "
                       "(default: detected from each file's content; pharmcat when nothing else matches).")
MIN_GP_HELP = ("Imputed/array inputs (VCF GP/DS, BGEN, pgen): a call needs the most likely genotype's probability >= "
               "this (a dosage within 1 - this of 0, 1 or 2); else the position is missing for that sample.")
MIN_INFO_HELP = ("Imputation quality (INFO R2, DR2 or INFO; BGEN: computed from the probabilities) below this makes "
                 "a position missing for every sample.")


def _version(value: bool) -> None:
    """The program's version and the knowledge base's (calls depend on both)."""
    if value:
        from permed.kb.load import load_kb

        kb = load_kb()
        print(f"permed {__version__}, knowledge base {kb.kb_version} (built {kb.built}, sha256 {kb.sha256[:12]})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")] = False,
) -> None:
    pass


def _genes(genes: str | None) -> tuple[str, ...] | None:
    return tuple(g.strip() for g in genes.split(",") if g.strip()) if genes else None


def _formats(report_format: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in report_format.split(",") if f.strip())
    bad = [f for f in formats if f not in REPORT_FORMATS]
    if bad or not formats:
        raise ConfigurationError(f"--format: {', '.join(bad) or report_format!r} is not one of html, pdf, json, "
                                 "pharmcat-tsv, fhir (comma-separated)")
    return tuple(f for f in formats if f != "json")  # the JSON report is always written


# options `permed call` and `permed cohort` share
BuildOption = Annotated[str, typer.Option(
    "--build", help="Genome build of the VCF inputs: GRCh38, GRCh37 (read at the knowledge base's GRCh37 "
    "positions, reported on GRCh38) or auto (from the header and the records; a contradiction is refused).")]
MinGpOption = Annotated[float, typer.Option("--min-gp", help=MIN_GP_HELP)]
MinInfoOption = Annotated[float, typer.Option("--min-info", help=MIN_INFO_HELP)]


@app.command("call")
def call_cmd(
    inputs: Annotated[list[Path] | None, typer.Argument(help="VCF/BCF files (.vcf, .vcf.gz, .bcf).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")] = Path("out"),
    example: Annotated[bool, typer.Option("--example", help="Run on the embedded example patient.")] = False,
    genes: Annotated[str | None, typer.Option("--genes", help="Comma-separated genes to call (default: all).")] = None,
    missing_to_ref: Annotated[bool, typer.Option(
        "--missing-to-ref", help="Read definition positions absent from the file as homozygous reference.")] = False,
    require_pass: Annotated[bool, typer.Option(
        "--require-pass", help="Ignore records whose FILTER is not PASS (PharmCAT uses all records).")] = False,
    combinations: Annotated[bool, typer.Option(
        "--combinations",
        help="Research mode: call combination and partial alleles when no exact call exists.")] = False,
    all_matches: Annotated[bool, typer.Option(
        "--all-matches", help="Report every matching diplotype, not only the top-scoring ones.")] = False,
    cyp2d6_from_vcf: Annotated[bool, typer.Option(
        "--cyp2d6-from-vcf", help="Call CYP2D6 from SNVs/indels (blind to deletions and duplications).")] = False,
    build: BuildOption = "auto",
    min_gp: MinGpOption = 0.9,
    min_info: MinInfoOption = 0.8,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    kb_path: Annotated[Path | None, typer.Option("--kb", help="Knowledge base file (default: packaged).")] = None,
    no_sample_reports: Annotated[bool, typer.Option(
        "--no-sample-reports", help="Write calls.tsv only (no per-sample JSON).")] = False,
    outside_calls: Annotated[list[Path] | None, typer.Option(
        "--outside-calls", help="Calls made elsewhere, repeatable: PharmCAT's TSV (gene, diplotype, phenotype, "
        "activity score; for every sample) or a CYP2D6 caller's output (Cyrius, Aldy, StellarPGx, PyPGx; for the "
        "samples it names). They replace the VCF-based call of their gene.")] = None,
    outside_calls_format: Annotated[str | None, typer.Option(
        "--outside-calls-format", help=OUTSIDE_FORMAT_HELP)] = None,
    medications: Annotated[str | None, typer.Option(
        "--medications", help="The patient's current drugs, comma-separated: names, RxNorm CUIs or ATC codes. "
        "Listed drugs with actionable advice come first; CYP2D6/CYP2C19 inhibitors adjust the phenotype used.")] = None,
    report_format: Annotated[str, typer.Option(
        "--format", help="Per-sample reports besides the JSON: html, pdf, pharmcat-tsv (PharmCAT 3.1's TSV "
        "layout), fhir (HL7 FHIR R4 Genomics Reporting bundle, <sample>.fhir.json), comma-separated, or json "
        "(JSON only).")] = "html",
    lang: Annotated[str, typer.Option("--lang", help="Report language: en, zh (any language with a catalog).")] = "en",
    fhir_bundle: Annotated[str, typer.Option(
        "--fhir-bundle", help="FHIR bundle type: transaction (POST to a FHIR server) or collection.")] = "transaction",
    fhir_patient: Annotated[str | None, typer.Option(
        "--fhir-patient", help="The FHIR Patient the bundle is about, e.g. Patient/123 (default: a Patient "
        "resource identified by the VCF sample name).")] = None,
) -> None:
    """Call star-allele diplotypes for every sample in the input files and interpret them."""
    from permed.engine import Inputs
    from permed.options import Options
    from permed.report.i18n import check_language

    formats = _formats(report_format)
    check_language(lang)  # refuse an unknown language before any work
    if "fhir" in formats:
        from permed.report.fhir import check_fhir_options

        check_fhir_options(fhir_bundle, fhir_patient)
    if "pdf" in formats and not no_sample_reports:
        from permed.report.html_report import check_pdf

        check_pdf()
    paths = list(inputs or [])
    if example:
        from permed.examples import example_vcf

        paths.insert(0, example_vcf())
    run_inputs = Inputs.of(vcfs=paths, outside_calls=list(outside_calls or []), medications=medications,
                           outside_calls_format=outside_calls_format)
    options = Options(genes=_genes(genes), missing_to_ref=missing_to_ref, require_pass=require_pass,
                      find_combinations=combinations, all_matches=all_matches, cyp2d6_from_vcf=cyp2d6_from_vcf,
                      workers=workers, build=build, min_gp=min_gp, min_info=min_info)
    t0 = time.perf_counter()
    eng = engine(kb_path)
    result = eng.run(run_inputs, options)
    if result.advice is not None:
        for m in result.advice.medications.unrecognised:
            print(f"permed: warning: --medications: {m!r} is neither a drug with guidelines nor a known CYP "
                  "inhibitor", file=sys.stderr)
    written = result.write(out, formats=formats, lang=lang, sample_reports=not no_sample_reports,
                           fhir_bundle=fhir_bundle, fhir_patient=fhir_patient)
    elapsed = time.perf_counter() - t0
    for e in result.phenotypes.outside_errors:
        # one plain line per problem (no wrapping), so logs and scripts can grep it
        print(f"permed: warning: {e.where}: {e.reason} ({e.gene} reported as not called)", file=sys.stderr)
    for w in result.phenotypes.outside_warnings:
        print(f"permed: warning: {w}", file=sys.stderr)
    _summary(result, out, len(written), elapsed)


def _summary(result, out: Path, n_files: int, elapsed: float) -> None:
    n = len(result.samples)
    err.print(f"permed: {n} sample(s), {len(result.calls.genes)} gene(s) in {elapsed:.2f} s -> {out}/ "
              f"({n_files} files)", markup=False, highlight=False)
    if n == 1:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold")
        for col in ("Gene", "Call", "Phenotype", "Status", "Missing"):
            table.add_column(col)
        for s in result.summaries(0):
            pheno = s.phenotype + (f" (AS {s.activity_score})" if s.activity_score else "")
            table.add_row(s.gene, s.call_text, pheno, s.status, "" if s.n_missing is None else str(s.n_missing))
        err.print(table)


@app.command("cohort")
def cohort_cmd(
    inputs: Annotated[list[Path], typer.Argument(
        help="Multi-sample VCF/BCF files: one, or one per chromosome/region.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")] = Path("cohort"),
    populations: Annotated[Path | None, typer.Option(
        "--populations", help="TSV mapping samples to groups: columns sample, population[, superpopulation].")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes on this machine.")] = 1,
    chunk_size: Annotated[int, typer.Option(
        "--chunk-size", min=1, help="Samples held in memory at once per unit (bounds memory).")] = 10_000,
    split_samples: Annotated[int | None, typer.Option(
        "--split-samples", min=1, help="Also partition each file into units of this many samples "
        "(more parallel units; each re-reads its file's records).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Dask distributed scheduler address (tcp://host:8786): run units on that cluster.")] = None,
    scheduler_timeout: Annotated[float, typer.Option(
        "--scheduler-timeout", min=0.1, help="Seconds to wait for the Dask scheduler to answer.")] = 30.0,
    genes: Annotated[str | None, typer.Option("--genes", help="Comma-separated genes to call (default: all).")] = None,
    missing_to_ref: Annotated[bool, typer.Option(
        "--missing-to-ref", help="Read definition positions absent from the file as homozygous reference.")] = False,
    require_pass: Annotated[bool, typer.Option(
        "--require-pass", help="Ignore records whose FILTER is not PASS (PharmCAT uses all records).")] = False,
    all_matches: Annotated[bool, typer.Option(
        "--all-matches", help="Report every matching diplotype, not only the top-scoring ones.")] = False,
    cyp2d6_from_vcf: Annotated[bool, typer.Option(
        "--cyp2d6-from-vcf", help="Call CYP2D6 from SNVs/indels (blind to deletions and duplications).")] = False,
    build: BuildOption = "auto",
    min_gp: MinGpOption = 0.9,
    min_info: MinInfoOption = 0.8,
    kb_path: Annotated[Path | None, typer.Option("--kb", help="Knowledge base file (default: packaged).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    outside_calls: Annotated[list[Path] | None, typer.Option(
        "--outside-calls", help="CYP2D6 calls of a copy-number-aware caller (Cyrius, Aldy, StellarPGx, PyPGx), "
        "matched to the samples by name; or PharmCAT's TSV (for every sample). Repeatable.")] = None,
    outside_calls_format: Annotated[str | None, typer.Option(
        "--outside-calls-format", help=OUTSIDE_FORMAT_HELP)] = None,
) -> None:
    """Call a whole cohort: calls.parquet, frequencies.parquet and summary.html (same calls as `permed call`)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from permed.biobank.output import write_cohort_blocks
    from permed.biobank.populations import read_populations
    from permed.engine import Inputs
    from permed.options import Options

    t0 = time.perf_counter()
    pops = read_populations(populations) if populations else None
    options = Options(genes=_genes(genes), missing_to_ref=missing_to_ref, require_pass=require_pass,
                      all_matches=all_matches, cyp2d6_from_vcf=cyp2d6_from_vcf, workers=workers,
                      chunk_size=chunk_size, split_samples=split_samples, parallel_regions=scheduler is not None,
                      evidence=False, advice=False, sample_warnings=False, build=build, min_gp=min_gp,
                      min_info=min_info)
    executor = None
    if scheduler:
        from permed.engine.executors import dask_executor

        executor = dask_executor(scheduler, scheduler_timeout)
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=err, disable=quiet, transient=False)
    with progress:
        task = progress.add_task("calling", total=None)

        def tick(total: int | None = None, advance: int = 0) -> None:
            # units report samples done; several units may cover the same samples (regions)
            if total is not None:
                progress.update(task, total=total)
            if advance:
                progress.advance(task, advance)

        run_inputs = Inputs.of(vcfs=list(inputs), outside_calls=list(outside_calls or []),
                               outside_calls_format=outside_calls_format)
        # blocks of samples are written as they are called: the whole cohort is never held at once
        blocks = engine(kb_path).stream(run_inputs, options, progress=tick, executor=executor)
        written = write_cohort_blocks(blocks, out, pops)
        progress.update(task, description="done")
    for w in written.outside_warnings:
        err.print(f"permed: warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if not quiet:
        n = written.n_samples
        elapsed = time.perf_counter() - t0
        rate = n / max(elapsed, 1e-9)
        names = ", ".join(p.name for p in written.paths)
        err.print(f"permed: {n} samples x {len(written.genes)} genes in {elapsed:.1f} s "
                  f"({rate:.0f} samples/s) -> {out}/ ({names})" if rate >= 10 else
                  f"permed: {n} sample(s) x {len(written.genes)} genes in {elapsed:.1f} s -> {out}/ ({names})",
                  markup=False, highlight=False)
        if written.unassigned:
            err.print(f"permed: warning: {written.unassigned} sample(s) not in {populations} "
                      "are grouped as (unassigned)", markup=False)


@app.command("query")
def query_cmd(
    cohort_dir: Annotated[Path, typer.Argument(help="Output directory of `permed cohort`.")],
    expression: Annotated[str | None, typer.Argument(
        help="Filter, e.g. \"CYP2C19 phenotype == 'Poor Metabolizer'\" (and/or/not, parentheses).")] = None,
    sql: Annotated[str | None, typer.Option(
        "--sql", help="Plain SQL (DuckDB) over the views calls, frequencies and samples.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, tsv, csv or json.")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write results to this file.")] = None,
) -> None:
    """Query a cohort's Parquet outputs: samples matching a filter, or any SQL."""
    import csv
    import io
    import json

    from permed.biobank.query import CohortQuery

    if fmt not in ("table", "tsv", "csv", "json"):
        raise ConfigurationError(f"--format: {fmt!r} is not one of table, tsv, csv, json")
    if (expression is None) == (sql is None):
        raise ConfigurationError("give either a filter expression or --sql QUERY (not both)")
    cohort = CohortQuery(cohort_dir)
    if sql is not None:
        cols, rows = cohort.sql(sql)
        note = f"{len(rows)} row(s)"
    else:
        cols, rows, total, warnings = cohort.filter(expression)
        for w in warnings:
            err.print(f"permed: warning: {w}", markup=False, highlight=False, soft_wrap=True)
        note = f"{len(rows)} of {total} samples match"
    if fmt == "table" and output is None:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold")
        for c in cols:
            table.add_column(str(c))
        for r in rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        Console().print(table)
    else:
        buf = io.StringIO()
        if fmt == "json":
            json.dump([dict(zip(cols, r)) for r in rows], buf, indent=1, default=str)
            buf.write("\n")
        else:
            w = csv.writer(buf, delimiter="\t" if fmt in ("tsv", "table") else ",", lineterminator="\n")
            w.writerow(cols)
            w.writerows(["" if v is None else v for v in r] for r in rows)
        if output is not None:
            tmp = output.with_name(f".{output.name}.tmp")
            try:
                tmp.write_text(buf.getvalue(), encoding="utf-8")
                os.replace(tmp, output)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise OutputError(f"{output}: cannot write ({exc.strerror})") from None
        else:
            sys.stdout.write(buf.getvalue())
    err.print(f"permed: {note}", markup=False, highlight=False)


_LIMITS = Limits()
_JOB_LIMITS = JobLimits()


JobMaxInflatedMb = Annotated[int, typer.Option(
    "--job-max-inflated-mb", min=1, help="Largest inflated VCF a job reads, MiB.")]
JobMaxRecords = Annotated[int, typer.Option("--job-max-records", min=1, help="Most records in a job's VCF.")]
JobMaxSamples = Annotated[int, typer.Option("--job-max-samples", min=1, help="Most samples in a job's VCF header.")]
JobMaxMemoryMb = Annotated[int, typer.Option(
    "--job-max-memory-mb", min=256, help="Address space a job may add to its worker's, MiB.")]
JobMaxSeconds = Annotated[float, typer.Option("--job-max-seconds", min=1.0, help="Wall time of one job, seconds.")]


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Database (SQLite) and file store.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option(
        "--database", help="SQLAlchemy URL instead of the SQLite file, e.g. postgresql://user@host/db.")] = None,
    job_workers: Annotated[int, typer.Option(
        "--job-workers", min=1, help="Worker processes running jobs in parallel (one job each).")] = 2,
    max_upload_mb: Annotated[int, typer.Option(
        "--max-upload-mb", min=1, help="Largest accepted upload, in MiB.")] = DEFAULT_MAX_UPLOAD_MB,
    job_lease: Annotated[float, typer.Option(
        "--job-lease", min=1.0, help="Seconds without a worker's heartbeat before its job is queued again.")] = 10.0,
    max_json_kb: Annotated[int, typer.Option(
        "--max-json-kb", min=1, help="Largest request body other than an upload, in KiB.")] = _LIMITS.max_json // 1024,
    max_header_kb: Annotated[int, typer.Option(
        "--max-header-kb", min=1, help="Largest request line and headers together, in KiB.")
    ] = _LIMITS.max_header_bytes // 1024,
    auth_failures: Annotated[int, typer.Option(
        "--auth-failures", min=0, help="Failed authentications per client address per minute before 429 "
        "(0: no limit).")] = _LIMITS.auth_failures,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", min=0.1, help="Seconds a client has to send a whole request header.")
    ] = _LIMITS.header_timeout,
    keep_alive: Annotated[int, typer.Option(
        "--keep-alive", min=1, help="Seconds an idle keep-alive connection is kept open.")] = _LIMITS.keep_alive,
    max_connections: Annotated[int, typer.Option(
        "--max-connections", min=1, help="Concurrent connections and requests before 503.")] = _LIMITS.max_connections,
    max_connections_per_client: Annotated[int, typer.Option(
        "--max-connections-per-client", min=0, help="Concurrent connections from one address (0: no cap; "
        "behind a reverse proxy every connection is the proxy's).")] = _LIMITS.max_connections_per_client,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        "--forwarded-allow-ips", help="Addresses of reverse proxies whose X-Forwarded-For names the client "
        "(comma-separated; default: none trusted).")] = None,
    token_days: Annotated[int, typer.Option(
        "--token-days", min=0, help="Validity of tokens created through the API unless asked (0: never expire).")
    ] = _TOKEN_DAYS,
    api_docs: Annotated[bool, typer.Option(
        "--api-docs", help="Serve /docs and /redoc (they load Swagger UI and ReDoc from a CDN).")] = False,
    job_max_inflated_mb: JobMaxInflatedMb = _JOB_LIMITS.inflated_mb,
    job_max_records: JobMaxRecords = _JOB_LIMITS.records,
    job_max_samples: JobMaxSamples = _JOB_LIMITS.samples,
    job_max_memory_mb: JobMaxMemoryMb = _JOB_LIMITS.memory_mb,
    job_max_seconds: JobMaxSeconds = _JOB_LIMITS.seconds,
    cds_config: Annotated[Path | None, typer.Option(
        "--cds-config", help="CDS Hooks: JSON file of the EHR issuers allowed to call (docs/cds-hooks.md); "
        "without it (or $PERMED_CDS_CONFIG) the CDS Hooks services are off.")] = None,
) -> None:
    """Run the permed service: REST API under /api/v1 (OpenAPI at /openapi.json), browser UI at /, job workers."""
    import copy
    from dataclasses import replace

    import uvicorn

    from permed.service.app import Settings, create_app
    from permed.service.connections import guarded_protocol

    _private_files()
    limits = replace(_LIMITS, max_upload=max_upload_mb * 1024**2, max_json=max_json_kb * 1024,
                     max_header_bytes=max_header_kb * 1024, auth_failures=auth_failures,
                     header_timeout=header_timeout, keep_alive=keep_alive, max_connections=max_connections,
                     max_connections_per_client=max_connections_per_client)
    app_ = create_app(Settings(data_dir=data_dir, database=database, run_worker=True, job_workers=job_workers,
                               max_upload=limits.max_upload, job_lease=job_lease, limits=limits,
                               token_days=token_days, api_docs=api_docs, cds_config=cds_config,
                               job_limits=JobLimits(
                                   inflated_mb=job_max_inflated_mb, records=job_max_records,
                                   samples=job_max_samples, memory_mb=job_max_memory_mb,
                                   seconds=job_max_seconds)))
    _raise_open_files_limit()
    # uvicorn's access log prints query strings (sample names); permed.access logs paths only
    logging_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    logging_config["loggers"]["permed"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    protocol = guarded_protocol(limits.header_timeout, limits.max_header_bytes, limits.max_connections_per_client)
    uvicorn.run(app_, host=host, port=port, log_level="info", access_log=False, log_config=logging_config,
                loop="uvloop", http=protocol, timeout_keep_alive=limits.keep_alive,
                limit_concurrency=limits.max_connections, proxy_headers=bool(forwarded_allow_ips),
                forwarded_allow_ips=forwarded_allow_ips or "")


def _private_files() -> None:
    """Files and directories this process creates are its user's only (genomes, reports, the database),
    whatever the umask it was started with; worker processes inherit it."""
    os.umask(0o077)


def _raise_open_files_limit() -> None:
    """The soft limit on open files up to the hard one: connections are capped by --max-connections, not by
    a low default that refuses every client once reached."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):
            pass  # not allowed here: keep the soft limit


@app.command("worker")
def worker_cmd(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The service's data directory.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (as for serve).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop when no job is queued.")] = False,
    job_lease: Annotated[float, typer.Option(
        "--job-lease", min=1.0, help="Seconds without a worker's heartbeat before its job is queued again.")] = 10.0,
    job_max_inflated_mb: JobMaxInflatedMb = _JOB_LIMITS.inflated_mb,
    job_max_records: JobMaxRecords = _JOB_LIMITS.records,
    job_max_samples: JobMaxSamples = _JOB_LIMITS.samples,
    job_max_memory_mb: JobMaxMemoryMb = _JOB_LIMITS.memory_mb,
    job_max_seconds: JobMaxSeconds = _JOB_LIMITS.seconds,
) -> None:
    """Run queued jobs of the service (`permed serve` starts and supervises two workers)."""
    from permed.service.store import Store
    from permed.service.worker import run_worker

    _private_files()  # indexed copies and results are written here
    store = Store(database) if database else Store.in_data_dir(data_dir)
    run_worker(store, data_dir, once=once, lease=job_lease,
               limits=JobLimits(inflated_mb=job_max_inflated_mb, records=job_max_records,
                                samples=job_max_samples, memory_mb=job_max_memory_mb, seconds=job_max_seconds))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="lab (upload, job state), clinician (reports, advice) or "
                                      "admin (everything, every organisation).")],
    name: Annotated[str, typer.Option("--name", help="Who or what the token is for.")] = "",
    organisation: Annotated[str | None, typer.Option(
        "--organisation", help="The organisation whose uploads the token sees (default: \"default\"; "
        "not for admin tokens).")] = None,
    expires_days: Annotated[int, typer.Option(
        "--expires-days", min=0, help="Days until the token expires (0: never).")] = _TOKEN_DAYS,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The service's data directory.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (as for serve).")] = None,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    from permed.service.tokens import check_organisation, check_role, create_token

    check_role(role)  # before anything is created on disk
    check_organisation(organisation)
    if role == "admin" and organisation:
        raise ConfigurationError("--organisation: an admin token works across organisations; give none")
    store = _service_store(data_dir, database)
    row, token = create_token(store, role, name, organisation=organisation, expires_days=expires_days)
    print(token)
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ", never expires"
    err.print(f"permed: token {row.id} ({role}{until}) created; it is shown only now", markup=False,
              soft_wrap=True)


def _service_store(data_dir: Path, database: str | None):
    """The service's store, its data directory (and SQLite file) made private to this user."""
    from permed.service.store import Store

    _private_files()
    if database:
        return Store(database)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Store.in_data_dir(data_dir)


@token_app.command("list")
def token_list(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The service's data directory.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (as for serve).")] = None,
) -> None:
    """List API tokens (never their values): id, role, name, organisation, created, expires, state."""
    from sqlalchemy import select

    from permed.service.store import ApiToken, Organisation, utcnow
    from permed.service.tokens import usable

    store = _service_store(data_dir, database)
    now = utcnow()
    print("\t".join(("id", "role", "name", "organisation", "created", "expires", "state")))
    with store.session() as s:
        for row, org in s.execute(select(ApiToken, Organisation.name).outerjoin(Organisation).order_by(ApiToken.id)):
            state = usable(row, now) or "valid"
            print("\t".join((str(row.id), row.role, _one_line(row.name), _one_line(org or "(all)"),
                             f"{row.created_at:%Y-%m-%d %H:%M}",
                             f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "never", state)))


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `permed token list`).")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The service's data directory.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (as for serve).")] = None,
) -> None:
    """Revoke an API token: refused from now on (a running server notices within 5 seconds)."""
    from permed.errors import UserError
    from permed.service.store import ApiToken

    store = _service_store(data_dir, database)
    with store.session() as s:
        row = s.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
        if row is None:
            raise UserError(f"no token with id {token_id} (see `permed token list`)")
        already = row.revoked
        row.revoked = True
        store.audit(s, None, f"token-revoke:{token_id} (command line)")
    err.print(f"permed: token {token_id} {'was already' if already else 'is now'} revoked", markup=False)


audit_app = typer.Typer(no_args_is_help=True, help="The service's audit log.")
app.add_typer(audit_app, name="audit")
AUDIT_FORMATS = ("jsonl", "csv")


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(
        "--since", help="Only events at or after this UTC time (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")
    ] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The service's data directory.")] = DATA_DIR,
    database: Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (as for serve).")] = None,
) -> None:
    """Export the audit log: time (UTC), token id and name, action, sample (upload) id, client address."""
    import csv
    import json
    from datetime import datetime

    from sqlalchemy import select

    from permed.service.store import ApiToken, AuditEvent

    if fmt not in AUDIT_FORMATS:
        raise ConfigurationError(f"--format: {fmt!r} is not one of {', '.join(AUDIT_FORMATS)}")
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since.strip().removesuffix("Z"))
        except ValueError:
            raise ConfigurationError(f"--since: {since!r} is not a date or time (YYYY-MM-DD[THH:MM[:SS]])") from None
        if start.tzinfo is not None:  # stored times are naive UTC
            from datetime import UTC

            start = start.astimezone(UTC).replace(tzinfo=None)
    store = _service_store(data_dir, database)
    fields = ("id", "at", "token_id", "token_name", "action", "sample_id", "client")
    tmp = None
    if output is not None:
        tmp = output.with_name(f".{output.name}.tmp")
        try:
            fh = tmp.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise OutputError(f"{output}: cannot write ({exc.strerror})") from None
    else:
        fh = sys.stdout
    n = 0
    try:
        writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
        if writer:
            writer.writerow(fields)
        query = select(AuditEvent, ApiToken.name).outerjoin(ApiToken, AuditEvent.token_id == ApiToken.id)
        if start is not None:
            query = query.where(AuditEvent.at >= start)
        with store.session() as s:
            for e, token_name in s.execute(query.order_by(AuditEvent.id)).yield_per(1000):
                values = (e.id, e.at.isoformat() + "Z", e.token_id, token_name, e.action, e.upload_id, e.client)
                if writer:
                    writer.writerow(["" if v is None else v for v in values])
                else:
                    fh.write(json.dumps(dict(zip(fields, values)), ensure_ascii=False) + "\n")
                n += 1
        if tmp is not None:
            fh.close()
            os.replace(tmp, output)
    except OSError as exc:
        raise OutputError(f"{output or 'stdout'}: cannot write ({exc.strerror})") from None
    finally:
        if tmp is not None:
            fh.close()
            tmp.unlink(missing_ok=True)
    err.print(f"permed: {n} audit event(s)", markup=False, highlight=False)


@kb_app.command("build")
def kb_build(
    source: Annotated[Path, typer.Option("--source", help="PharmCAT release directory (with definition/).")],
    release: Annotated[str, typer.Option("--release", help="PharmCAT release the files come from.")] = "3.1.1",
    output: Annotated[Path | None, typer.Option("--output", help="KB file to write (default: packaged KB).")] = None,
    built: Annotated[str | None, typer.Option("--built", help="Build date to record (YYYY-MM-DD).")] = None,
    phenotypes: Annotated[list[Path] | None, typer.Option(
        "--phenotypes", help="Extra directory of PharmCAT-format phenotype tables (e.g. CPIC tables incl. CYP2D6)."
    )] = None,
    pypgx: Annotated[Path | None, typer.Option(
        "--pypgx", help="PyPGx data directory (allele functions / diplotype tables for G6PD, RYR1).")] = None,
    dpwg_phenotypes: Annotated[Path | None, typer.Option(
        "--dpwg-phenotypes", help="Directory of DPWG phenotype tables (PharmCAT format).")] = None,
    guidelines: Annotated[Path | None, typer.Option(
        "--guidelines", help="Directory of PharmCAT guideline files (CPIC_*.json, DPWG_*.json).")] = None,
) -> None:
    """Convert PharmCAT allele definitions, exemptions and phenotype tables into permed's KB format."""
    from importlib import resources

    from permed.kb.build import build_kb
    from permed.kb.load import PACKAGED_KB, dump_kb, load_kb_file

    kb = build_kb(source, release=release, built=built, extra_phenotypes=phenotypes, pypgx=pypgx,
                  dpwg_phenotypes=dpwg_phenotypes, guidelines=guidelines)
    target = output or Path(str(resources.files("permed.kb") / "data" / PACKAGED_KB))
    dump_kb(kb, target)
    load_kb_file(target)  # refuse to leave a KB that does not load
    err.print(f"permed: wrote {target} ({len(kb.genes)} genes, KB {kb.kb_version}, sha256 {kb.sha256[:12]}...)")
    loci = [loc for d in kb.genes.values() for loc in d.loci]
    if any(loc.position37 is not None for loc in loci):
        from permed.kb.build import grch37_leave_one_out

        tested, wrong = grch37_leave_one_out(kb.genes)
        interpolated = sum(loc.grch37_interpolated for loc in loci)
        mapped = sum(loc.position37 is not None for loc in loci)
        err.print(f"permed: GRCh37 positions: {mapped - interpolated} from PyPGx's table, {interpolated} "
                  f"interpolated, {len(loci) - mapped} unmapped, of {len(loci)}; the interpolation rule predicts "
                  f"{tested - len(wrong)} of {tested} PyPGx-mapped positions from their neighbours")


@kb_app.command("info")
def kb_info(
    kb_path: Annotated[Path | None, typer.Option("--kb", help="Knowledge base file (default: packaged).")] = None,
) -> None:
    """Show the loaded knowledge base: version, sources, licence, genes."""
    from permed.kb.load import load_kb

    kb = load_kb(kb_path)
    from rich.table import Table

    console = Console()
    console.print(f"KB version: {kb.kb_version}  (built {kb.built}, sha256 {kb.sha256})")
    for s in kb.sources:
        console.print(f"Source: {s.name}, release {s.release}, data {s.data_version} <{s.url}> [{s.licence}]")
    console.print(f"Licence: {kb.licence}")
    table = Table(show_header=True, header_style="bold")
    for col in ("Gene", "Chrom", "Positions", "On GRCh37", "Named alleles", "Data version", "Exemptions"):
        table.add_column(col)
    unmapped = {}
    for g, d in sorted(kb.genes.items()):
        ex = d.exemptions
        flags = [n for n, v in (("required", ex.required_positions), ("priorities", ex.unphased_priorities),
                                ("extra", ex.extra_loci)) if v]
        on37 = [loc.position for loc in d.loci if loc.position37 is not None]
        if on37 and len(on37) < len(d.loci):
            unmapped[g] = [loc.position for loc in d.loci if loc.position37 is None]
        table.add_row(g, d.chromosome, str(len(d.loci)), str(len(on37)), str(len(d.alleles)), d.data_version or "",
                      ",".join(flags))
    console.print(table)
    interpolated = {g: n for g, d in sorted(kb.genes.items()) if (n := sum(loc.grch37_interpolated for loc in d.loci))}
    if interpolated:
        # not from a table row: inferred between PyPGx-mapped positions (docs/grch37-unmapped.md lists them)
        console.print("GRCh37 positions interpolated between PyPGx-mapped positions (GRCh38's base assumed): "
                      + ", ".join(f"{g} {n}" for g, n in interpolated.items()), soft_wrap=True)
    if unmapped:
        # GRCh37 input leaves these missing: say which, so a reader can judge a GRCh37 call
        console.print("Definition positions (GRCh38) without a GRCh37 position (missing when reading GRCh37):")
        for g, positions in unmapped.items():
            console.print(f"{g}: {', '.join(map(str, positions))}", soft_wrap=True)


@schema_app.command("report")
def schema_report() -> None:
    """Print the JSON Schema of OUT/<sample>.report.json (permed.report/1)."""
    from permed.report.model import report_schema_text

    sys.stdout.write(report_schema_text())


# --- federation (issue 15): `permed node` serves a cohort as a GA4GH Beacon v2 node (aggregates only, under
# disclosure control); `permed federate` sends one query to many nodes. The logic is in permed.federation.
node_app = typer.Typer(no_args_is_help=True, help="Serve a `permed cohort` directory as a GA4GH Beacon v2 node.")
app.add_typer(node_app, name="node")
node_token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the institutions querying a node.")
node_app.add_typer(node_token_app, name="token")
CohortDirArg = Annotated[Path, typer.Argument(help="Output directory of `permed cohort` (the node's data).")]


def _cohort_dir(path: Path) -> Path:
    from permed.errors import UserError

    if not (path / "calls.parquet").is_file():
        raise UserError(f"{path}: no calls.parquet; give a directory written by `permed cohort`")
    return path


@node_token_app.command("create")
def node_token_create(
    cohort_dir: CohortDirArg,
    scope: Annotated[str, typer.Option("--scope", help="boolean, count or aggregate (each includes the ones "
                                                       "before it).")] = "boolean",
    institution: Annotated[str | None, typer.Option("--institution", help="Who the token is for (audited).")] = None,
    expires_days: Annotated[int, typer.Option("--expires-days", help="Validity in days (0: never expires).")] = 90,
) -> None:
    """Print a new bearer token (shown once; stored as its SHA-256 beside the cohort, in node.sqlite)."""
    from permed.federation.tokens import create

    _private_files()
    token_id, token = create(_cohort_dir(cohort_dir), scope, institution, expires_days)
    print(token)
    err.print(f"permed: node token {token_id} ({scope}) created; it is shown only now", markup=False)


@node_token_app.command("list")
def node_token_list(cohort_dir: CohortDirArg) -> None:
    """Tokens of the node: id, scope, institution, created, expires, revoked, epsilon spent."""
    from permed.federation.store import NodeStore

    _private_files()
    store = NodeStore(_cohort_dir(cohort_dir))
    print("id\tscope\tinstitution\tcreated\texpires\trevoked\tepsilon_spent")
    for t in store.tokens():
        print("\t".join(str(t[k] if t[k] is not None else "") for k in (
            "id", "scope", "institution", "created_at", "expires_at", "revoked", "epsilon_spent")))


@node_token_app.command("revoke")
def node_token_revoke(cohort_dir: CohortDirArg, token_id: Annotated[int, typer.Argument(help="Token id.")]) -> None:
    """Refuse a token from now on."""
    from permed.errors import UserError
    from permed.federation.store import NodeStore

    _private_files()
    if not NodeStore(_cohort_dir(cohort_dir)).revoke(token_id):
        raise UserError(f"node token {token_id}: no such token")


@node_app.command("audit")
def node_audit(cohort_dir: CohortDirArg) -> None:
    """The node's audit log as JSON lines: who asked what, the answer's granularity, epsilon spent."""
    import json

    from permed.federation.store import NodeStore

    _private_files()
    for row in NodeStore(_cohort_dir(cohort_dir)).audit_rows():
        print(json.dumps(row, ensure_ascii=False))


@node_app.command("serve")
def node_serve(
    cohort_dir: CohortDirArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8080,
    config: Annotated[Path | None, typer.Option("--config", help="node.toml: k, differential privacy, "
                                                "identity (docs/federation.md).")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option("--ssl-certfile", help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option("--ssl-keyfile", help="TLS private key (PEM).")] = None,
) -> None:
    """Serve the cohort as a Beacon v2 node: /api, /api/individuals (boolean/count), POST /api/aggregate."""
    import copy

    import uvicorn

    from permed.federation.app import create_app
    from permed.federation.config import read_config
    from permed.federation.node import Node
    from permed.service.connections import guarded_protocol

    _private_files()
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigurationError("--ssl-certfile and --ssl-keyfile go together")
    node = Node(_cohort_dir(cohort_dir), read_config(config))
    err.print(f"permed: node {node.config.node.id}: {node.cohort.n} individuals, {len(node.cohort.genes)} genes, "
              f"k={node.config.disclosure.k}, privacy {node.config.privacy.mechanism}", markup=False)
    logging_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    logging_config["loggers"]["permed"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(create_app(node), host=host, port=port, log_level="warning", access_log=False,
                log_config=logging_config, http=guarded_protocol(_LIMITS.header_timeout, _LIMITS.max_header_bytes,
                                                                  _LIMITS.max_connections_per_client),
                timeout_keep_alive=_LIMITS.keep_alive, limit_concurrency=_LIMITS.max_connections,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)


def _node_tokens(nodes: list[str], token: list[str] | None, tokens_file: Path | None) -> dict[str, str | None]:
    """URL -> token: one --token for every node, one per --node in order, or a file of 'URL TOKEN' lines."""
    from permed.errors import UserError

    given = list(token or [])
    if given and len(given) not in (1, len(nodes)):
        raise ConfigurationError(f"--token: give one for every node or one per --node ({len(nodes)}), not "
                                 f"{len(given)}")
    out = {u: (given[0] if len(given) == 1 else given[i]) if given else None for i, u in enumerate(nodes)}
    if tokens_file is not None:
        try:
            lines = tokens_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{tokens_file}: cannot be read ({exc})") from None
        for no, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 2:
                raise UserError(f"{tokens_file}: line {no}: expected 'URL TOKEN'")
            out[fields[0].rstrip("/")] = out[fields[0]] = fields[1]
    return {u: out.get(u) or out.get(u.rstrip("/")) for u in nodes}


@app.command("federate")
def federate_cmd(
    query: Annotated[str, typer.Argument(help="'GENE KIND', e.g. 'CYP2C19 phenotype'; GENE may be a comma-"
                                              "separated list or '*', KIND phenotype, diplotype or allele.")],
    node: Annotated[list[str], typer.Option("--node", help="A node's base URL (repeatable).")],
    by: Annotated[list[str] | None, typer.Option("--by", help="population or superpopulation (repeatable).")] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="A Beacon filter 'ID OP VALUE', e.g. 'CYP2D6:phenotype=Poor Metabolizer' (repeatable: "
        "all must hold).")] = None,
    token: Annotated[list[str] | None, typer.Option(
        "--token", help="Bearer token: one for all nodes or one per --node (visible to other users in the process "
        "list: prefer --tokens-file).")] = None,
    tokens_file: Annotated[Path | None, typer.Option("--tokens-file", help="Lines 'URL TOKEN'.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file (parquet needs it).")
                      ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a chart of the combined frequencies "
                                                             "by group.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each node.")] = 30.0,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="CA bundle to verify nodes' TLS with.")] = None,
) -> None:
    """Send one PGx aggregate query to every node at once and combine the answers (bounds for suppressed cells,
    each node's status)."""
    from permed.errors import FederationError, UserError
    from permed.federation.client import federate, parse_filter_text, parse_query

    if fmt not in ("table", "json", "parquet"):
        raise ConfigurationError(f"--format: {fmt!r} is not table, json or parquet")
    if fmt == "parquet" and output is None:
        raise ConfigurationError("--format parquet needs -o FILE")
    bad = [b for b in by or [] if b not in ("population", "superpopulation")]
    if bad:
        raise ConfigurationError(f"--by: {bad[0]!r} is not population or superpopulation")
    try:
        genes, kinds = parse_query(query)
        filter_docs = [parse_filter_text(f) for f in filters or []]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    result = federate(node, genes=genes, kinds=kinds, by=list(by or []), filters=filter_docs,
                      tokens=_node_tokens(node, token, tokens_file), timeout=timeout,
                      verify=str(ca_file) if ca_file else True)
    for n in result.node_status():
        if n["status"] != "ok":
            err.print(f"permed: warning: node {n['url']}: {n['status']}: {n['detail']}", markup=False,
                      highlight=False, soft_wrap=True)
    if fmt == "parquet":
        result.write_parquet(output)
    else:
        text = result.to_json() + "\n" if fmt == "json" else _federated_table(result)
        if output is not None:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    if html is not None:
        result.write_html(html)
    if not any(n.status == "ok" for n in result.nodes):
        raise FederationError(f"no node answered ({len(result.nodes)} asked)")


def _federated_table(result) -> str:
    lines = ["node\tstatus\tindividuals\tdetail"]
    lines += [f"{n['url']}\t{n['status']}\t{n.get('nSamples') if n.get('nSamples') is not None else ''}\t"
              f"{n['detail']}" for n in result.node_status()]
    lines += ["", "gene\tkind\tvalue\tlevel\tgroup\tcount\tn_determined\tfrequency"]
    for r in result.rows:
        count = r["count"] if r["count"] is not None else f"{r['count_low']}-{r['count_high'] or '?'}"
        det = r["n_determined"] if r["n_determined"] is not None else (
            f"{r['n_determined_low']}-{r['n_determined_high'] or '?'}")
        freq = (f"{r['frequency']:.4f}" if r["frequency"] is not None else
                f"{r['frequency_low']:.4f}-{r['frequency_high']:.4f}" if r["frequency_low"] is not None else "")
        noise = f" ±{r['noise_sd']:.1f}" if r.get("noise_sd") else ""
        lines.append(f"{r['gene']}\t{r['kind']}\t{r['value']}\t{r['level']}\t{r['group']}\t{count}{noise}\t{det}"
                     f"\t{freq}")
    return "\n".join(lines) + "\n"
# --- end of federation


def _stopped(signum: int) -> int:
    interrupted = signum == signal.SIGINT
    err.print(f"permed: {'interrupted' if interrupted else 'terminated'}; nothing was written", markup=False,
              highlight=False)
    return INTERRUPTED if interrupted else TERMINATED


def run(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` and return the exit code (errors: one line on stderr)."""
    try:
        code = app(args=argv, prog_name="permed", standalone_mode=False)
        if code == INTERRUPTED:  # typer turns Ctrl-C into a returned 130 in this mode
            raise KeyboardInterrupt
    except PermedError as exc:
        err.print(f"permed: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _stopped(signal.SIGINT)
    except Terminated:
        return _stopped(signal.SIGTERM)
    except Exception as exc:  # usage errors (typer's click) and anything unexpected
        if errors.stop_signal is not None:
            # a stop signal's exception mangled on its way (inside an import it can surface as another error)
            return _stopped(errors.stop_signal)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click.UsageError, BadParameter...
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "permed"
            err.print(f"permed: error: {exc.format_message()} (see {where} --help)", markup=False, highlight=False,
                      soft_wrap=True)
            return USAGE_ERROR
        # an optional dependency group (pip install 'permed[cohort]' ...) is not installed
        missing = MissingExtraError.from_import_error(exc) if isinstance(exc, ImportError) else None
        if missing is not None:
            err.print(f"permed: error: {missing}", markup=False, highlight=False, soft_wrap=True)
            return missing.exit_code
        if os.environ.get("PERMED_DEBUG"):
            raise
        err.print(f"permed: internal error: {type(exc).__name__}: {exc} (set PERMED_DEBUG=1 for a traceback)",
                  markup=False, highlight=False, soft_wrap=True)
        return INTERNAL_ERROR
    return 0


def main() -> None:
    batch = is_batch(sys.argv[1:])
    if batch:
        install_stop_handlers()  # already in place when started by `permed` (permed.launch)
        # pydantic looks for plugins in every installed distribution's metadata when it builds its first
        # model (tens of milliseconds); a batch command has no use for them (the service keeps them)
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    code = run()
    if batch:
        # a finished command ends here without the interpreter's teardown (freeing every object of the
        # libraries and the knowledge base takes a tenth of a second); outputs are closed, streams flushed
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
