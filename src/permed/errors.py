"""Errors permed reports to its users: one line each (file, record, problem), never a traceback.

Every error a user can cause or fix derives from `PermedError`; its `exit_code` is what the command
line exits with (docs/cli.md, "Exit codes"). Anything else escaping is a bug (exit code 1).

    PermedError
    ├── UserError              2   something the user gave cannot be used
    │   ├── InputFileError     2   a VCF/BCF, populations file, query ... is unreadable or malformed
    │   │   └── OutsideCallsError  2   an outside-calls file
    │   ├── OutputError        2   the output location cannot be written
    │   └── ConfigurationError 64  an option value or combination (as the parser's usage errors)
    │       └── MissingExtraError 64  the command needs an optional dependency group (pip install 'permed[x]')
    ├── KnowledgeBaseError     3   the knowledge base is missing, damaged or of another schema
    ├── ServiceError           4   the service's database or data directory cannot be used
    └── FederationError        5   `permed federate`: no node answered (each node's status is reported)
"""

from __future__ import annotations

import signal

INTERNAL_ERROR = 1
USAGE_ERROR = 64  # sysexits.h EX_USAGE: a bad flag or option value, told apart from a bad file (2)
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
TERMINATED = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: unwind like Ctrl-C, so staged output is removed, then exit 143."""


# the stop signal a batch command received (the command line's handlers note it): an exception raised in a
# signal handler can be lost when it lands inside a C library or a module's import, so output is committed
# only after checking this too
stop_signal: int | None = None


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for, if one arrived (KeyboardInterrupt for SIGINT, else Terminated)."""
    if stop_signal is not None:
        raise KeyboardInterrupt if stop_signal == signal.SIGINT else Terminated(stop_signal)


class PermedError(Exception):
    """Base of every error permed reports to a user. The message is shown as-is, on one line."""

    exit_code = INTERNAL_ERROR

    def __init__(self, message: str):
        super().__init__(message.replace("\r", " ").replace("\n", " "))


class UserError(PermedError):
    """Bad input: something the user gave cannot be used."""

    exit_code = 2


class InputFileError(UserError):
    """A data file (VCF/BCF, populations table, query text...) is unreadable or malformed."""


class OutsideCallsError(InputFileError):
    """An outside-calls file as a whole cannot be used (one bad line only affects its gene)."""


class OutputError(UserError):
    """The output location cannot be written."""


class ConfigurationError(UserError):
    """An option value or a combination of options is invalid (unknown gene, language, format...)."""

    exit_code = USAGE_ERROR


# modules of the optional dependency groups (pyproject's extras): a command that needs one names the extra
EXTRA_OF_MODULE = {
    "pyarrow": "cohort", "duckdb": "cohort", "dask": "cohort", "distributed": "cohort", "polars": "cohort",
    "fastapi": "service", "starlette": "service", "sqlalchemy": "service", "alembic": "service",
    "uvicorn": "service", "uvloop": "service", "httptools": "service", "multipart": "service",
    "python_multipart": "service", "psycopg": "service", "jwt": "service", "pysam": "service",
    "weasyprint": "pdf",
    "opendp": "federation", "httpx": "federation",
    "cbgen": "imputed", "pgenlib": "imputed",
}


class MissingExtraError(ConfigurationError):
    """What was asked needs an optional dependency group that is not installed."""

    def __init__(self, module: str, extra: str):
        self.module, self.extra = module, extra
        super().__init__(f"this needs permed's optional '{extra}' dependencies (module {module} is not installed): "
                         f"pip install 'permed[{extra}]'")

    @classmethod
    def from_import_error(cls, exc: ImportError) -> MissingExtraError | None:
        """The extra a failed import belongs to, or None for a module no extra provides (a real bug)."""
        top = (getattr(exc, "name", None) or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        return cls(top, extra) if extra else None


class KnowledgeBaseError(PermedError):
    """The knowledge base is missing, damaged, or of a schema this permed cannot read."""

    exit_code = 3


class ServiceError(PermedError):
    """The service's database or data directory cannot be used."""

    exit_code = 4


class FederationError(PermedError):
    """A federated query got no usable answer from any node (one node failing is reported, not an error)."""

    exit_code = 5
