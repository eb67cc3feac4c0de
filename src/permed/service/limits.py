"""The service's limits against hostile or careless clients, with their defaults (docs/security.md lists
each with its `permed serve` flag). One place, so the server, the CLI and the docs agree."""

from __future__ import annotations

from dataclasses import dataclass

from permed.service import DEFAULT_MAX_UPLOAD_MB

KiB = 1024
DEFAULT_TOKEN_DAYS = 90  # a lost or forgotten token stops working within a quarter


@dataclass(frozen=True)
class Limits:
    # request size: checked before any body byte is read (declared Content-Length), then while reading
    max_json: int = 64 * KiB  # every request body but an upload (token creation is the only JSON body)
    max_upload: int = DEFAULT_MAX_UPLOAD_MB * 1024**2
    max_header_bytes: int = 16 * KiB  # request line and all headers together
    max_filename: int = 255  # X-Filename, bytes (a file name on common file systems)
    max_medications: int = 4 * KiB  # X-Medications, bytes (hundreds of drug names)
    # brute force: this many failed authentications from one client address within the window -> 429
    auth_failures: int = 10
    auth_window: float = 60.0  # seconds
    # connections (enforced by the HTTP protocol class, connections.py, and uvicorn)
    header_timeout: float = 10.0  # seconds from connecting (or from the end of the last response) to a whole header
    keep_alive: int = 5  # seconds an idle keep-alive connection is kept
    max_connections: int = 1000  # concurrent connections and requests (uvicorn limit_concurrency: 503 above)
    max_connections_per_client: int = 100  # concurrent connections from one address (0: no cap)
