"""The REST API (FastAPI), versioned under /api/v1; OpenAPI at /openapi.json.

Every route but /api/v1/health needs a token (`Authorization: Bearer <token>`), checked by the request
guard (security.py) before any body is read. A token other than an admin's sees only its
organisation's uploads (another organisation's upload is a 404, so ids do not tell what exists); lab
tokens upload and follow jobs, clinicians read reports and advice (docs/security.md). Every read and
every refusal is audited with the client address. Uploads (raw body or
multipart, see uploads.py) are streamed to the data directory while hashed, refused above the size
limit, checked before they are kept, and idempotent. Jobs are queued here and run by the worker
process (worker.py). Read routes are async and answer finished reports from memory; their audit rows
go through a group-commit writer (store.AuditWriter). The browser UI is mounted at / (ui.py).
"""


import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from permed import __version__
from permed.engine import Engine, VcfInput
from permed.errors import ServiceError, UserError
from permed.phenotype.outside_calls import OutsideCallsText
from permed.report.i18n import available_languages
from permed.report.model import PatientReport
from permed.report.naming import ReportFiles
from permed.service import DEFAULT_MAX_UPLOAD_MB
from permed.service.access_log import AccessLog
from permed.service.job_limits import JobLimits
from permed.service.limits import Limits
from permed.service.results import DamagedResult, verify_all
from permed.service.results import digests as result_digests
from permed.service.results import rerun as rerun_job
from permed.service.results import verify as verify_result
from permed.service.security import SCOPE_CDS, SCOPE_TOKEN, SCOPE_UPLOAD, Guard, client_address
from permed.service.store import ApiToken, AuditWriter, Job, Organisation, PatientLink, Store, Upload
from permed.service.supervisor import DEFAULT_WORKERS
from permed.service.tokens import (
    DEFAULT_ORGANISATION,
    DEFAULT_TOKEN_DAYS,
    MAX_ORGANISATION_NAME,
    ROLES,
    TokenCache,
    create_token,
)
from permed.service.ui import mount_ui
from permed.service.uploads import OUTSIDE_CALL_FORMATS, OUTSIDE_CALLS_NAME, UploadRejected, receive
from permed.service.worker import PHENOTYPES_FILE, results_dir, upload_path

UPLOAD_OPENAPI = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["vcf"],
        "properties": {
            "vcf": {"type": "string", "format": "binary", "description": "VCF, VCF.gz or BCF (GRCh38)"},
            "outside_calls": {"type": "string", "format": "binary",
                              "description": "outside calls: PharmCAT's TSV (gene, diplotype, phenotype, activity "
                                             "score) or CYP2D6 from Cyrius, Aldy, StellarPGx or PyPGx (data.tsv)"},
            "outside_calls_format": {"type": "string", "enum": list(OUTSIDE_CALL_FORMATS),
                                     "description": "the outside calls' format (default: detected)"},
            "medications": {"type": "string", "description": "drug names, RxNorm or ATC codes, comma-separated"},
        }}},
}}}


REPORT_LANGUAGES = tuple(available_languages())
DONE_CACHE_SIZE = 100_000  # finished uploads whose report paths are kept in memory
MAX_ROW_ID = 2**31 - 1  # INTEGER keys in SQLite and PostgreSQL; larger numbers can name no row
# the API names an upload a "sample" (its routes and fields predate the distinction): /samples/{sample_id};
# `?sample=NAME` names a VCF sample (a patient) inside the uploaded file
UploadId = Annotated[int, FastApiPath(ge=1, le=MAX_ROW_ID, alias="sample_id")]
RowId = Annotated[int, FastApiPath(ge=1, le=MAX_ROW_ID)]
PatientName = Annotated[str | None, Query(alias="sample", max_length=1000,
                                          description="the VCF sample (patient) when the file holds several")]
LINK_TTL = 5.0  # seconds a CDS call's patient-link lookup is remembered (links changed here: at once)
STORED_CACHE = 10_000  # linked patients (loaded reports) kept for CDS calls


class PatientLinkRequest(BaseModel):
    patient_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="the EHR's FHIR Patient id")
    sample: str | None = Field(None, min_length=1, max_length=1000,
                               description="the VCF sample; optional when the upload holds one sample")


class TokenRequest(BaseModel):
    role: str
    name: str = Field("", max_length=200)
    # non-admin tokens belong to one organisation ("default" unless named); admins work across all
    organisation: str | None = Field(None, min_length=1, max_length=MAX_ORGANISATION_NAME)
    expires_days: int | None = Field(None, ge=0, le=36500, description="0: never; default: the server's")


@dataclass
class Settings:
    data_dir: Path
    database: str | None = None
    max_upload: int = DEFAULT_MAX_UPLOAD_MB * 1024**2  # bytes
    limits: Limits | None = None  # request and connection limits (max_upload above wins for uploads)
    token_days: int = DEFAULT_TOKEN_DAYS  # validity of tokens created through the API unless asked (0: never)
    api_docs: bool = False  # /docs and /redoc (they load scripts from a CDN: off unless asked)
    run_worker: bool = False  # `permed serve`: start and supervise the job workers with the app
    job_workers: int = DEFAULT_WORKERS  # more than one: a slow job never holds every other job back
    job_lease: float | None = None  # seconds without a worker's heartbeat before its job is queued again
    job_limits: JobLimits = field(default_factory=JobLimits)  # per job: inflated size, records, samples, ...
    engine: Engine | None = None  # built at start-up when not given
    # CDS Hooks services (docs/cds-hooks.md): the issuer allow-list file; None: $PERMED_CDS_CONFIG, else off
    cds_config: Path | None = None


class _Done(NamedTuple):
    """A finished upload's reports, as the read routes keep them."""

    organisation_id: int
    job_id: int
    paths: list[Path]
    digests: dict[str, str] | None  # result file name -> SHA-256, as the job wrote them


def _upload_json(upload: Upload, job: Job | None) -> dict:
    """An upload as the API shows it (a "sample" in the API's words)."""
    return {"id": upload.id, "sha256": upload.sha256, "filename": upload.filename, "size": upload.size,
            "medications": upload.medications, "outside_calls": upload.outside_calls is not None,
            "outside_calls_format": upload.outside_calls_format,
            "created_at": upload.created_at.isoformat() + "Z",
            "job": None if job is None else {"id": job.id, "state": job.state, "attempts": job.attempts,
                                             "error": job.error}}


def _job_of(s, upload_id: int) -> Job | None:
    return s.scalars(select(Job).where(Job.upload_id == upload_id)).first()


def _get_or_404(s, model, row_id: int, what: str):
    row = s.get(model, row_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")
    return row


def _sees(t: ApiToken, organisation_id: int) -> bool:
    """Admins see every organisation; anyone else their own."""
    return t.role == "admin" or t.organisation_id == organisation_id


def _upload_or_404(s, t: ApiToken, upload_id: int, request: Request) -> Upload:
    """The upload if the token may see it. Another organisation's is "no such sample", like a missing
    one (a 403 would tell that the id exists); its audit row names it."""
    row = s.get(Upload, upload_id)
    if row is not None and not _sees(t, row.organisation_id):
        request.scope[SCOPE_UPLOAD] = row.id
        row = None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such sample")
    return row


def _link_json(row: PatientLink) -> dict:
    return {"id": row.id, "sample_id": row.upload_id, "patient_id": row.patient_id, "sample": row.sample,
            "created_at": row.created_at.isoformat() + "Z"}


def _private_dir(path: Path) -> None:
    """A directory only the service's user can enter, whatever the umask or how it was made before."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise ServiceError(f"{path}: cannot use as the data directory ({exc.strerror})") from None


def create_app(settings: Settings) -> FastAPI:
    data_dir = Path(settings.data_dir)
    for d in (data_dir, data_dir / "uploads"):  # genomes: no other local user may list or read them
        _private_dir(d)
    limits = settings.limits or Limits()
    if limits.max_upload != settings.max_upload:
        limits = replace(limits, max_upload=settings.max_upload)
    store = Store(settings.database) if settings.database else Store.in_data_dir(data_dir)
    engine = settings.engine or Engine()  # the knowledge base is loaded now, not in the first request
    cds = _cds_auth(settings, store)

    @asynccontextmanager
    async def lifespan(_app):
        # inside the app's lifespan so the worker stops before uvicorn re-raises a SIGTERM it caught
        if settings.run_worker:
            from permed.service.supervisor import WorkerSupervisor

            with WorkerSupervisor(data_dir, settings.database, workers=settings.job_workers,
                                  lease=settings.job_lease, limits=settings.job_limits):
                yield
        else:
            yield

    # /docs and /redoc load Swagger UI and ReDoc from a CDN into the UI's origin (where the UI keeps its
    # token): off unless asked for; the spec itself (/openapi.json) is always served
    docs = {} if settings.api_docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(title="permed", version=__version__, openapi_url="/openapi.json", lifespan=lifespan,
                  description="Pharmacogenomic calls and prescribing advice from GRCh38 VCFs.", **docs)
    app.state.store = store
    app.state.engine = engine
    api = APIRouter(prefix="/api/v1")
    # declared as an OpenAPI security scheme; our own 401 (auto_error=False) says what is missing
    bearer = HTTPBearer(auto_error=False, description="An API token from `permed token create`")

    tokens = TokenCache(store)

    audit_writer = AuditWriter(store)

    async def audit_row(t: ApiToken | None, action: str, upload_id: int | None, client: str | None) -> None:
        await audit_writer.submit_async(t, action, upload_id, client)

    async def audit(t: ApiToken, action: str, upload_id: int | None, request: Request) -> None:
        await audit_row(t, action, upload_id, client_address(request.scope))

    async def authenticate(value: str) -> ApiToken | None:
        # a cached token costs no thread hop; a new one is looked up in the thread pool
        return tokens.cached(value) or await run_in_threadpool(tokens.find, value)

    # the guard has authenticated the request (security.py); routes take the token from the scope
    async def token(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None) -> ApiToken:
        row = request.scope.get(SCOPE_TOKEN)
        if row is None:  # only if the app runs without its guard
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return row

    def role(*allowed: str):
        async def check(t: Annotated[ApiToken, Depends(token)]) -> ApiToken:
            if t.role not in allowed:
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {' or '.join(allowed)}")
            return t
        return check

    def _already_have(s, t: ApiToken, upload: Upload, client: str | None) -> JSONResponse:
        """Idempotent upload: the same bytes again answer with the stored upload (200, not 201)."""
        store.audit(s, t, "upload-duplicate", upload.id, client)
        return JSONResponse(_upload_json(upload, _job_of(s, upload.id)), status_code=status.HTTP_200_OK)

    reader = role("lab", "clinician", "admin")  # lists, job state: what a lab follows
    clinical = role("clinician", "admin")  # reports and advice: clinical data, not the lab's to read
    uploader = role("lab", "admin")

    @api.get("/health", summary="Liveness (no token needed)")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    organisation_names: dict[int, str] = {}

    def _organisation_name(organisation_id: int | None) -> str | None:
        if organisation_id is None:
            return None
        if organisation_id not in organisation_names:  # names never change: looked up once
            with store.session() as s:
                organisation_names[organisation_id] = s.get(Organisation, organisation_id).name
        return organisation_names[organisation_id]

    @api.get("/me", summary="The calling token's role, name and organisation")
    async def me(t: Annotated[ApiToken, Depends(reader)], request: Request) -> dict:
        await audit(t, "me", None, request)
        organisation = organisation_names.get(t.organisation_id) or await run_in_threadpool(
            _organisation_name, t.organisation_id)
        return {"id": t.id, "role": t.role, "name": t.name, "organisation": organisation,
                "expires_at": None if t.expires_at is None else t.expires_at.isoformat() + "Z"}

    @api.get("/kb", summary="The loaded knowledge base")
    async def kb_info(t: Annotated[ApiToken, Depends(reader)], request: Request) -> dict:
        await audit(t, "kb", None, request)
        kb = engine.kb
        return {"kb_version": kb.kb_version, "sha256": kb.sha256, "built": kb.built, "licence": kb.licence,
                "genes": sorted(kb.genes), "sources": [s.model_dump() for s in kb.sources],
                "report_languages": list(REPORT_LANGUAGES)}

    @api.post("/samples", status_code=status.HTTP_201_CREATED, summary="Upload a VCF; queues a job",
              openapi_extra=UPLOAD_OPENAPI)
    async def upload(request: Request, t: Annotated[ApiToken, Depends(uploader)],
                     x_filename: Annotated[str | None, Header()] = None,
                     x_medications: Annotated[str | None, Header()] = None):
        # identifiers travel in headers or the body, not in the URL, so access logs never carry them
        try:
            up = await receive(request, data_dir / "uploads", settings.max_upload, x_filename, x_medications)
        except UploadRejected as exc:
            raise HTTPException(exc.status, str(exc)) from None
        try:  # database and VCF checks: off the event loop
            return await run_in_threadpool(_register, up, t, client_address(request.scope))
        finally:
            up.path.unlink(missing_ok=True)

    def _register(up, t: ApiToken, client: str | None) -> JSONResponse:
        """Keep a received upload: a new upload row and its queued job, or the one this request made before."""
        try:
            if up.outside_calls is not None:
                # refuse what `permed call --outside-calls` would refuse (lines it merely reports are kept)
                engine.check_outside_calls([OutsideCallsText(up.outside_calls_name or OUTSIDE_CALLS_NAME,
                                                             up.outside_calls, up.outside_calls_format)])
            with store.session() as s:
                # an admin's uploads go to "default"; the key is per organisation, so the same request from
                # two organisations makes two uploads and neither learns of the other's
                org = t.organisation_id or store.organisation(s, DEFAULT_ORGANISATION).id
            key = _request_key(up, org)
            with store.session() as s:
                existing = s.scalars(select(Upload).where(Upload.request_key == key)).first()
                if existing is not None:
                    return _already_have(s, t, existing, client)
            final = data_dir / "uploads" / f"{up.sha256}{_suffix(up.filename)}"
            if not final.exists():  # else the same VCF is stored already, for another request
                os.replace(up.path, final)
                try:
                    engine.sample_names(VcfInput(final, label=up.filename))  # the header checks of a run
                except UserError as exc:
                    final.unlink(missing_ok=True)
                    raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
            try:
                with store.session() as s:
                    row = Upload(sha256=up.sha256, request_key=key, filename=up.filename, size=up.size,
                                 medications=up.medications, outside_calls=up.outside_calls,
                                 outside_calls_format=up.outside_calls_format,
                                 outside_calls_name=up.outside_calls_name if up.outside_calls is not None else None,
                                 created_by=t.id,
                                 organisation_id=org)
                    s.add(row)
                    s.flush()
                    job = Job(upload_id=row.id)
                    s.add(job)
                    s.flush()
                    store.audit(s, t, "upload", row.id, client)
                    return JSONResponse(_upload_json(row, job), status_code=status.HTTP_201_CREATED)
            except IntegrityError:  # the same request made concurrently: the other one won
                with store.session() as s:
                    return _already_have(s, t, s.scalars(select(Upload).where(Upload.request_key == key)).one(),
                                         client)
        except UserError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None

    admin = role("admin")

    @api.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create a token (shown once)")
    def token_create(body: TokenRequest, t: Annotated[ApiToken, Depends(admin)], request: Request) -> dict:
        if body.role not in ROLES:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"role must be one of {', '.join(ROLES)}")
        days = settings.token_days if body.expires_days is None else body.expires_days
        try:
            row, secret = create_token(store, body.role, body.name, by=t, organisation=body.organisation,
                                       expires_days=days, client=client_address(request.scope))
        except UserError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc).replace("--", "")) from None
        return {"id": row.id, "role": row.role, "name": row.name, "token": secret,
                "organisation": _organisation_name(row.organisation_id),
                "expires_at": None if row.expires_at is None else row.expires_at.isoformat() + "Z"}

    @api.get("/tokens", summary="List tokens (never their values)")
    def token_list(t: Annotated[ApiToken, Depends(admin)], request: Request) -> list[dict]:
        with store.session() as s:
            store.audit(s, t, "token-list", client=client_address(request.scope))
            return [token_json(r, org) for r, org in s.execute(
                select(ApiToken, Organisation.name).outerjoin(Organisation).order_by(ApiToken.id))]

    @api.delete("/tokens/{token_id}", summary="Revoke a token")
    def token_revoke(token_id: RowId, t: Annotated[ApiToken, Depends(admin)], request: Request) -> dict:
        with store.session() as s:
            _get_or_404(s, ApiToken, token_id, "token").revoked = True
            store.audit(s, t, f"token-revoke:{token_id}", client=client_address(request.scope))
        tokens.clear()
        return {"id": token_id, "revoked": True}

    @api.get("/samples", summary="List samples with their job state, newest first")
    def samples(t: Annotated[ApiToken, Depends(reader)], response: Response, request: Request,
                q: Annotated[str | None, Query(max_length=200, description="file name, ID or SHA-256 prefix")] = None,
                state: Annotated[str | None, Query(pattern="^(queued|running|done|failed)$")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0) -> list[dict]:
        query = select(Upload, Job).outerjoin(Job, Job.upload_id == Upload.id)
        if t.role != "admin":
            query = query.where(Upload.organisation_id == t.organisation_id)
        if q and q.strip():
            text = q.strip()
            like = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            match = [func.lower(Upload.filename).contains(like, autoescape=False, escape="\\"),
                     Upload.sha256.startswith(text.lower(), autoescape=True)]
            if text.isdigit() and len(text) < 12:
                match.append(Upload.id == int(text))
            query = query.where(or_(*match))
        if state:
            query = query.where(Job.state == state)
        with store.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            rows = s.execute(query.order_by(Upload.id.desc()).limit(limit).offset(offset)).all()
            # file names and medications of every listed upload: a read like any other
            store.audit(s, t, f"list:{len(rows)}", client=client_address(request.scope))
            response.headers["X-Total-Count"] = str(total)
            return [_upload_json(x, job) for x, job in rows]

    @api.get("/samples/{sample_id}", summary="One sample (uploaded file) and its job")
    def sample(upload_id: UploadId, t: Annotated[ApiToken, Depends(reader)], request: Request) -> dict:
        with store.session() as s:
            x = _upload_or_404(s, t, upload_id, request)
            store.audit(s, t, "read", x.id, client_address(request.scope))
            return _upload_json(x, _job_of(s, x.id))

    def _job_or_404(s, t: ApiToken, job_id: int, request: Request) -> Job:
        """The job, if the token's organisation owns its upload; another organisation's job is a 404 like a
        missing one (ids do not leak), its upload named in the refusal's audit row."""
        j = _get_or_404(s, Job, job_id, "job")
        upload = s.get(Upload, j.upload_id)
        if not _sees(t, upload.organisation_id):
            request.scope[SCOPE_UPLOAD] = upload.id
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
        return j

    @api.get("/jobs/{job_id}", summary="One job's state (the id an upload returns in job.id)")
    def job(job_id: RowId, t: Annotated[ApiToken, Depends(reader)], request: Request) -> dict:
        with store.session() as s:
            j = _job_or_404(s, t, job_id, request)
            store.audit(s, t, f"job:{j.id}", j.upload_id, client_address(request.scope))
            return {"id": j.id, "sample_id": j.upload_id, "state": j.state, "attempts": j.attempts,
                    "error": j.error, "created_at": j.created_at.isoformat() + "Z",
                    "updated_at": j.updated_at.isoformat() + "Z"}

    @api.post("/jobs/{job_id}/rerun", summary="Run a finished or failed job again (e.g. its stored result is damaged)")
    def job_rerun(job_id: RowId, t: Annotated[ApiToken, Depends(reader)], request: Request) -> dict:
        with store.session() as s:
            j = _job_or_404(s, t, job_id, request)
            store.audit(s, t, f"job-rerun:{j.id}", j.upload_id, client_address(request.scope))
        done_reports.pop(j.upload_id, None)
        if not rerun_job(store, data_dir, job_id):
            raise HTTPException(status.HTTP_409_CONFLICT, "the job is queued or running already")
        return {"id": job_id, "sample_id": j.upload_id, "state": "queued"}

    def _done_upload(s, t: ApiToken, upload_id: int, request: Request) -> tuple[Upload, Job]:
        x = _upload_or_404(s, t, upload_id, request)
        job = _job_of(s, x.id)
        if job is None or job.state != "done":
            state = job.state if job else "none"
            raise HTTPException(status.HTTP_409_CONFLICT, f"no report yet: the job is {state}"
                                + (f" ({job.error})" if job is not None and job.error else ""))
        return x, job

    # a finished job's reports never change: after the first request, answer without the database. Kept with
    # them: the upload's organisation (every answer is checked against the token's) and the digests the
    # job recorded (every file is verified before it is served: results.verify, one stat once checked)
    done_reports: OrderedDict[int, _Done] = OrderedDict()

    def _done_reports(t: ApiToken, upload_id: int, request: Request) -> _Done:
        done = _cached_reports(t, upload_id, request)
        if done is None:
            with store.session() as s:
                x, job = _done_upload(s, t, upload_id, request)  # 404 or 409 unless the job is done
            done = _remember_done(x, job)
        return done

    def _remember_done(x: Upload, job: Job) -> _Done:
        found = sorted(results_dir(data_dir, x.id).glob("*.report.json"))
        done = done_reports[x.id] = _Done(x.organisation_id, job.id, found, result_digests(job))
        if len(done_reports) > DONE_CACHE_SIZE:
            done_reports.popitem(last=False)
        return done

    def _cached_reports(t: ApiToken, upload_id: int, request: Request) -> _Done | None:
        hit = done_reports.get(upload_id)
        if hit is None:
            return None
        if not _sees(t, hit.organisation_id):
            request.scope[SCOPE_UPLOAD] = upload_id
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such sample")
        return hit

    def _verified(upload_id: int, done: _Done, path: Path, every: bool = False) -> Path:
        """The stored result as its job wrote it, or a 409 saying it is damaged and how to re-run the job
        (not a 500, and never a truncated or altered report)."""
        try:
            if every:
                verify_all(path, done.digests)
                return path
            return verify_result(path, done.digests)
        except DamagedResult as exc:
            done_reports.pop(upload_id, None)  # looked up again after a re-run
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"{exc}: POST /api/v1/jobs/{done.job_id}/rerun") from None

    async def _report_json(t: ApiToken, upload_id: int, patient: str | None, request: Request) -> tuple[Path, _Done]:
        done = _cached_reports(t, upload_id, request)
        if done is None:
            done = await run_in_threadpool(_done_reports, t, upload_id, request)
        found = done.paths
        if patient is not None:
            found = [p for p in found if p.name == ReportFiles.for_sample(patient).json]
        if len(found) != 1:
            raise HTTPException(status.HTTP_404_NOT_FOUND if not found else status.HTTP_409_CONFLICT,
                                "no report for that sample name" if not found else
                                "this file holds several samples: add ?sample=NAME")
        return _verified(upload_id, done, found[0]), done

    def _report_names(t: ApiToken, upload_id: int, request: Request) -> list[str]:
        with store.session() as s:
            vcf = upload_path(data_dir, _done_upload(s, t, upload_id, request)[0].sha256)
        done = _done_reports(t, upload_id, request)
        _verified(upload_id, done, results_dir(data_dir, upload_id), every=True)
        ready = {p.name for p in done.paths}
        return [n for n in engine.sample_names(vcf) if ReportFiles.for_sample(n).json in ready]

    @api.get("/samples/{sample_id}/reports", summary="The VCF's sample names that have a report, in file order")
    async def reports(upload_id: UploadId, t: Annotated[ApiToken, Depends(clinical)], request: Request) -> dict:
        names = await run_in_threadpool(_report_names, t, upload_id, request)
        await audit(t, "reports", upload_id, request)
        return {"sample_id": upload_id, "samples": names}

    @api.get("/samples/{sample_id}/report", summary="The report as JSON, HTML or PDF")
    async def report(upload_id: UploadId, t: Annotated[ApiToken, Depends(clinical)], request: Request,
                     patient: PatientName = None, format: str = "json",
                     lang: Annotated[str, Query(description="HTML/PDF language: en, zh")] = "en"):
        if format not in ("json", "html", "pdf"):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "format must be json, html or pdf")
        if lang not in REPORT_LANGUAGES:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"lang must be one of {', '.join(REPORT_LANGUAGES)}")
        path, done = await _report_json(t, upload_id, patient, request)
        await audit(t, f"report-{format}", upload_id, request)
        if format == "json":
            return Response(_report_bytes(path), media_type="application/json")
        files = ReportFiles.from_json_name(path.name)
        html = path.with_name(files.html(lang))
        if format == "html":
            return FileResponse(_verified(upload_id, done, html), media_type="text/html; charset=utf-8")
        pdf = path.with_name(files.pdf(lang))
        if not pdf.exists():  # rendered on first request (seconds: off the event loop), then kept
            await run_in_threadpool(_render_pdf, _verified(upload_id, done, html), pdf)
        return FileResponse(pdf, media_type="application/pdf")

    @api.get("/samples/{sample_id}/fhir", summary="The report as a FHIR R4 bundle (Genomics Reporting)")
    async def report_fhir(upload_id: UploadId, t: Annotated[ApiToken, Depends(clinical)], request: Request,
                          patient: PatientName = None,
                          lang: Annotated[str, Query(description="text language: en, zh")] = "en",
                          bundle: Annotated[str, Query(description="transaction or collection")] = "transaction"):
        if lang not in REPORT_LANGUAGES:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"lang must be one of {', '.join(REPORT_LANGUAGES)}")
        if bundle not in ("transaction", "collection"):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "bundle must be transaction or collection")
        path, _ = await _report_json(t, upload_id, patient, request)
        text = await run_in_threadpool(_fhir_for, upload_id, path, lang, bundle)
        await audit(t, "report-fhir", upload_id, request)
        return Response(text, media_type="application/fhir+json")

    def _fhir_for(upload_id: int, path: Path, lang: str, bundle: str) -> str:
        """The bundle (built once per report version, language and type). A patient linked for CDS Hooks is
        referred to by its EHR Patient id, so the bundle's results attach to the EHR's own patient."""
        report = _load_report(path)
        with store.session() as s:
            linked = s.scalars(select(PatientLink.patient_id).where(
                PatientLink.upload_id == upload_id, PatientLink.sample == report.sample)).all()
        patient_ref = f"Patient/{linked[0]}" if len(linked) == 1 else None
        same_kb = report.knowledge_base.kb_sha256 == engine.kb.sha256  # variants need the KB that made the report
        return _fhir_cached(str(path), path.stat().st_mtime, lang, bundle, patient_ref, same_kb)

    @lru_cache(maxsize=64)
    def _fhir_cached(path: str, mtime: float, lang: str, bundle: str, patient_ref: str | None, same_kb: bool) -> str:
        from permed.report.fhir import fhir_bundle_json

        return fhir_bundle_json(_load_report_cached(path, mtime), bundle_type=bundle, patient_ref=patient_ref,
                                lang=lang, kb=engine.kb if same_kb else None)

    @api.get("/samples/{sample_id}/advice", summary="Structured advice for one drug (name, RxNorm or ATC)")
    async def advice(upload_id: UploadId, drug: Annotated[str, Query(max_length=200)],
                     t: Annotated[ApiToken, Depends(clinical)], request: Request, patient: PatientName = None):
        path, _ = await _report_json(t, upload_id, patient, request)
        report = _load_report(path)
        await audit(t, "advice", upload_id, request)
        key = drug.strip().lower()
        for name, entry in (report.drugs or {}).items():
            if key == name.lower() or key == (entry.rxnorm or "") or drug.strip().upper() in entry.atc:
                return JSONResponse(_advice_json(path, name))
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no guideline for drug {drug!r}")

    # ---- patient links: the EHR's Patient id of a stored patient, for CDS Hooks calls ----------------------
    def _sample_of(x: Upload, wanted: str | None) -> str:
        names = engine.sample_names(upload_path(data_dir, x.sha256))
        if wanted is None:
            if len(names) != 1:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"this file holds {len(names)} samples: name one in \"sample\"")
            return names[0]
        if wanted not in names:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no sample of that name in this upload")
        return wanted

    @api.post("/samples/{sample_id}/patient-link", status_code=status.HTTP_201_CREATED,
              summary="Link an EHR's FHIR Patient id to a patient (VCF sample) of this upload, for CDS Hooks")
    def patient_link(upload_id: UploadId, body: PatientLinkRequest, t: Annotated[ApiToken, Depends(uploader)],
                     request: Request) -> JSONResponse:
        client = client_address(request.scope)
        with store.session() as s:
            x = _upload_or_404(s, t, upload_id, request)
        sample = _sample_of(x, body.sample)
        # links belong to the upload's organisation (an admin links within it too)
        query = select(PatientLink).where(PatientLink.organisation_id == x.organisation_id,
                                          PatientLink.patient_id == body.patient_id)
        try:
            with store.session() as s:
                old = s.scalars(query).first()
                if old is None:
                    row = PatientLink(organisation_id=x.organisation_id, patient_id=body.patient_id, upload_id=x.id,
                                      sample=sample, created_by=t.id)
                    s.add(row)
                    s.flush()
                    store.audit(s, t, f"patient-link:{row.id}", x.id, client)
                    code = status.HTTP_201_CREATED
                elif (old.upload_id, old.sample) == (x.id, sample):  # the same link again: as it is
                    row, code = old, status.HTTP_200_OK
                    store.audit(s, t, f"patient-link-again:{row.id}", x.id, client)
                else:
                    row = None
        except IntegrityError:  # the same patient linked concurrently: the other request won
            row, old = None, None
        if row is None:
            where = f" (link {old.id}, sample id {old.upload_id})" if old is not None else ""
            raise HTTPException(status.HTTP_409_CONFLICT, f"this patient id is linked already{where}: delete that "
                                "link first (DELETE /api/v1/samples/{sample_id}/patient-link/{link_id})")
        patient_links.pop((x.organisation_id, body.patient_id), None)
        return JSONResponse(_link_json(row), status_code=code)

    @api.get("/samples/{sample_id}/patient-link", summary="The EHR Patient ids linked to this upload's patients")
    def patient_links_list(upload_id: UploadId, t: Annotated[ApiToken, Depends(reader)],
                           request: Request) -> list[dict]:
        with store.session() as s:
            x = _upload_or_404(s, t, upload_id, request)
            store.audit(s, t, "patient-link-list", x.id, client_address(request.scope))
            rows = s.scalars(select(PatientLink).where(PatientLink.upload_id == x.id).order_by(PatientLink.id))
            return [_link_json(r) for r in rows]

    @api.delete("/samples/{sample_id}/patient-link/{link_id}", summary="Remove a patient link")
    def patient_unlink(upload_id: UploadId, link_id: RowId, t: Annotated[ApiToken, Depends(uploader)],
                       request: Request) -> dict:
        with store.session() as s:
            x = _upload_or_404(s, t, upload_id, request)
            row = s.get(PatientLink, link_id)
            if row is None or row.upload_id != x.id:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such patient link")
            key = (row.organisation_id, row.patient_id)
            s.delete(row)
            store.audit(s, t, f"patient-unlink:{link_id}", x.id, client_address(request.scope))
        patient_links.pop(key, None)
        return {"id": link_id, "deleted": True}

    # ---- CDS Hooks (docs/cds-hooks.md): the guard has verified the EHR's JWT (SCOPE_CDS) -----------------
    patient_links: dict[tuple[int, str], tuple[float, tuple[int, str] | None]] = {}
    stored_patients: OrderedDict[tuple, object] = OrderedDict()

    def _find_link(organisation_id: int, patient: str) -> tuple[int, str] | None:
        with store.session() as s:  # one query on the unique (organisation, patient) index
            row = s.execute(select(PatientLink.upload_id, PatientLink.sample).where(
                PatientLink.organisation_id == organisation_id, PatientLink.patient_id == patient)).first()
        return None if row is None else (row[0], row[1])

    async def _linked(organisation_id: int, patient: str) -> tuple[int, str] | None:
        key = (organisation_id, patient)
        hit = patient_links.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = await run_in_threadpool(_find_link, organisation_id, patient)
        if len(patient_links) >= 100_000:  # patient ids cannot grow memory
            patient_links.clear()
        patient_links[key] = (time.monotonic() + LINK_TTL, found)
        return found

    def _stored_key(upload_id: int, sample: str, done: _Done) -> tuple:
        from permed.service.cds import report_name

        return upload_id, sample, (done.digests or {}).get(report_name(sample)) or f"job:{done.job_id}"

    def _load_stored(upload_id: int, sample: str):
        """The linked patient's stored report and phenotype file, verified (None: no finished result)."""
        from permed.service.cds import Stored, report_name

        done = done_reports.get(upload_id)
        if done is None:
            with store.session() as s:
                x, job = s.get(Upload, upload_id), _job_of(s, upload_id)
                if x is None or job is None or job.state != "done":
                    return None
            done = _remember_done(x, job)
        path = next((p for p in done.paths if p.name == report_name(sample)), None)
        if path is None:
            return None
        verify_result(path, done.digests)
        report = PatientReport.loads(path.read_bytes())
        phenotypes = None
        if done.digests and PHENOTYPES_FILE in done.digests:
            phenotypes = verify_result(results_dir(data_dir, upload_id) / PHENOTYPES_FILE, done.digests)
        key = _stored_key(upload_id, sample, done)
        stored = Stored(upload_id, done.job_id, sample, report, phenotypes, key[2])
        stored_patients[key] = stored
        while len(stored_patients) > STORED_CACHE:
            stored_patients.popitem(last=False)
        return done, stored

    async def _stored(upload_id: int, sample: str):
        done = done_reports.get(upload_id)
        if done is not None:
            hit = stored_patients.get(_stored_key(upload_id, sample, done))
            if hit is not None:
                return done, hit
        return await run_in_threadpool(_load_stored, upload_id, sample)

    cds_app = _cds_app(cds, engine, _linked, _stored, audit_row) if cds is not None else None

    app.include_router(api)
    mount_ui(app)
    app.add_middleware(Guard, limits=limits, authenticate=authenticate, audit=audit_row, cds=cds, cds_app=cds_app,
                       cds_max_body=cds.config.max_request_kb * 1024 if cds else None)
    app.add_middleware(AccessLog)  # outermost: refusals of the guard are logged too
    return app


def _cds_auth(settings: Settings, store: Store):
    """The CDS Hooks verifier of the configured issuers, or None when CDS Hooks is not configured."""
    path = settings.cds_config or os.environ.get("PERMED_CDS_CONFIG") or None
    if path is None:
        return None
    from permed.service.cds_auth import CdsAuth, load_config

    config = load_config(path)
    with store.session() as s:  # each issuer's organisation, created on first use like a token's
        ids = {i.organisation: store.organisation(s, i.organisation).id for i in config.issuers}
    return CdsAuth(config, ids)


def _cds_app(cds, engine: Engine, linked, stored_patient, audit_row):
    """GET /cds-services and POST /cds-services/{id}: an ASGI app of its own behind the request guard, which
    has verified the caller's JWT (SCOPE_CDS). Not FastAPI routes (CDS Hooks is its own API, not in our
    OpenAPI spec), and a CDS call blocks the prescriber: FastAPI's routing, dependencies and exception
    middleware add to every call's time."""
    from permed.service.cds import PREFIX, SERVICES, BadRequest, CdsHooks, MedicationNames, discovery, report_link

    hooks = CdsHooks(engine, MedicationNames(engine.kb))
    listing = discovery()

    def _error(code: int, detail: str, **headers) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=code, headers=headers or None)

    async def app(scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if path == PREFIX:
            answer = JSONResponse(listing) if method == "GET" else _error(405, "Method Not Allowed", allow="GET")
        elif method != "POST":
            answer = _error(405, "Method Not Allowed", allow="POST")
        else:
            answer = await cds_call(Request(scope, receive), path[len(PREFIX) + 1:])
        await answer(scope, receive, send)

    async def cds_call(request: Request, service_id: str) -> JSONResponse:
        service = SERVICES.get(service_id)
        if service is None:
            return _error(404, "no such CDS service")
        caller = request.scope[SCOPE_CDS]
        client = client_address(request.scope)
        action = f"cds-{service.hook}:{caller.organisation}"
        try:
            data = hooks.parse(service, await request.body())
        except BadRequest as exc:
            return _error(400, str(exc))
        context = data["context"]
        found = await linked(caller.organisation_id, context["patientId"])
        if found is None:  # no link in the caller's organisation: no guidance, not an error
            await audit_row(None, action, None, client)
            return JSONResponse({"cards": []})
        upload_id, sample = found
        try:
            loaded = await stored_patient(upload_id, sample)
        except DamagedResult:
            await audit_row(None, action + " (stored result damaged)", upload_id, client)
            return JSONResponse({"cards": [{
                "uuid": str(uuid.uuid4()), "summary": "Pharmacogenomic result unavailable: the stored result is "
                "damaged", "indicator": "warning", "source": {"label": "permed"},
                "detail": "The lab can run the patient's job again to restore it."}]})
        if loaded is None or loaded[0].organisation_id != caller.organisation_id:  # not finished (yet)
            await audit_row(None, action, upload_id, client)
            return JSONResponse({"cards": []})
        _, stored = loaded
        drafts, draft_names = hooks.drafts(service, context)
        if service.hook != "patient-view" and not drafts:  # no drug with a guideline among the orders
            await audit_row(None, action, upload_id, client)
            return JSONResponse({"cards": []})
        names = hooks.prefetched(data.get("prefetch")) + draft_names
        key = hooks.advice_key(stored, names)
        if key is None:
            advice = hooks.stored_advice(stored)
        else:
            advice = hooks.cached_advice(key) or await run_in_threadpool(hooks.compute_advice, stored, key, names)
        link = report_link(cds.config.audience or str(request.base_url), upload_id, sample)
        if service.hook == "patient-view":
            on_list = {n for n in names + hooks.stored_names(stored) if n in hooks.names.kb_drugs}
            cards = hooks.summary_card(advice, on_list, link)
        else:
            cards = hooks.order_cards(drafts, advice, link)
        await audit_row(None, action, upload_id, client)
        return JSONResponse({"cards": cards})

    return app


def token_json(row: ApiToken, organisation: str | None) -> dict:
    """A token as the API and `permed token list` show it (never its value or hash)."""
    return {"id": row.id, "role": row.role, "name": row.name, "organisation": organisation,
            "revoked": row.revoked, "created_at": row.created_at.isoformat() + "Z",
            "expires_at": None if row.expires_at is None else row.expires_at.isoformat() + "Z"}


@lru_cache(maxsize=256)
def _report_bytes_cached(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


@lru_cache(maxsize=256)
def _load_report_cached(path: str, mtime: float) -> PatientReport:
    return PatientReport.loads(_report_bytes_cached(path, mtime))


def _report_bytes(path: Path) -> bytes:
    """The report JSON as stored, cached per file version: repeated fetches answer from memory."""
    return _report_bytes_cached(str(path), path.stat().st_mtime)


def _load_report(path: Path) -> PatientReport:
    """The report, loaded and cached per file version: advice lookups answer from memory."""
    return _load_report_cached(str(path), path.stat().st_mtime)


@lru_cache(maxsize=4096)
def _advice_json_cached(path: str, mtime: float, drug: str) -> dict:
    from permed.kb.wording import action_label

    report = _load_report_cached(path, mtime)
    entry = report.drugs[drug].model_dump(mode="json")
    for src in entry["sources"].values():  # each action also in words, as the report prints it
        for r in src["recommendations"]:
            r["action_label"] = action_label(r["action"])
    return {"drug": drug, "sample": report.sample, "knowledge_base": report.knowledge_base.model_dump(mode="json"),
            **entry}


def _advice_json(path: Path, drug: str) -> dict:
    """One drug's advice from a report, as the API answers it (cached per file version and drug)."""
    return _advice_json_cached(str(path), path.stat().st_mtime, drug)


def _render_pdf(html: Path, pdf: Path) -> None:
    from permed.report.html_report import write_pdf

    tmp = pdf.with_name(f".{pdf.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write_pdf(html.read_text(encoding="utf-8"), tmp)
    os.replace(tmp, pdf)


def _suffix(name: str) -> str:
    for ext in (".vcf.gz", ".vcf.bgz", ".bcf", ".vcf"):
        if name.lower().endswith(ext):
            return ext
    return ".vcf"


def _request_key(up, organisation_id: int) -> str:
    # migration 0002 computes the same key for the uploads it moves to "default": keep them in step
    parts = (up.sha256, up.outside_calls or "", up.medications or "", str(organisation_id))
    if up.outside_calls is not None and (up.outside_calls_format or up.outside_calls_name):
        # the same text read as another format, or named another sample (StellarPGx), is another request;
        # without them the key is as before (migration 0002's keys stay valid)
        parts += (up.outside_calls_format or "", up.outside_calls_name or "")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
