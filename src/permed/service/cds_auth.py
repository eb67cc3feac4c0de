"""Who may call the CDS Hooks services: the issuer allow-list (`permed serve --cds-config FILE`), the
EHR's signed JWT checked against it, and the EHR origins allowed by CORS.

Each allowed issuer names its JWK Set (a URL fetched by PyJWKClient, or a local file), the organisation
whose patient links its calls may resolve, and the browser origins of its EHR. A JWT passes when it is
signed with an asymmetric algorithm (RS256/RS384/ES256/ES384; never "none" or HMAC, which would need a
shared secret) by a key of its issuer's set, names this service's endpoint as `aud`, has not expired, was
not issued in the future or for longer than allowed, and its `jti` has not been seen before within its
lifetime (replay). The format of the file is documented in docs/cds-hooks.md.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from permed.errors import ConfigurationError

ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
_KEY_TYPES = {"RS256": ("RSA", None), "RS384": ("RSA", None), "ES256": ("EC", "secp256r1"),
              "ES384": ("EC", "secp384r1")}
MAX_LIVE_JTIS = 1_000_000  # remembered token ids; beyond it new tokens are refused (never an unseen replay)
CONFIG_ENV = "PERMED_CDS_CONFIG"  # the same as `permed serve --cds-config`
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerConfig(_Config):
    iss: str = Field(min_length=1, max_length=500, description="the JWT's `iss`, exactly")
    organisation: str = Field(min_length=1, max_length=200, description="whose patient links its calls may use")
    jwks_url: str | None = None
    jwks_file: str | None = None
    origins: list[str] = Field(default_factory=list, description="the EHR's browser origins (CORS)")

    @model_validator(mode="after")
    def _one_key_source(self):
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"issuer {self.iss!r}: give exactly one of jwks_url and jwks_file")
        if self.jwks_url is not None:
            url = urlsplit(self.jwks_url)
            loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                raise ValueError(f"issuer {self.iss!r}: jwks_url must be https (http only on loopback)")
        return self

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:  # an exact scheme://host[:port]; a wildcard would let any page read cards
            if not _ORIGIN.match(origin):
                raise ValueError(f"origin {origin!r} is not scheme://host[:port] (no path, no wildcard)")
        return value


class CdsConfig(_Config):
    issuers: list[IssuerConfig] = Field(min_length=1)
    audience: str | None = Field(None, description="this service's base URL as EHRs call it (the JWT's aud "
                                                   "is <audience>/cds-services/<id>); default: from the request")
    leeway_seconds: int = Field(60, ge=0, le=300, description="clock difference allowed for exp and iat")
    max_token_lifetime_seconds: int = Field(3600, ge=60, le=86400, description="exp - iat at most")
    max_request_kb: int = Field(1024, ge=16, le=65536, description="largest CDS request body (prefetch included)")

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | None) -> str | None:
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
                raise ValueError(f"audience {value!r} is not a base URL such as https://permed.example.org")
            value = value.rstrip("/")
        return value

    @model_validator(mode="after")
    def _distinct(self):
        seen = [i.iss for i in self.issuers]
        if len(set(seen)) != len(seen):
            raise ValueError("an issuer is listed twice")
        return self

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o for i in self.issuers for o in i.origins)


def load_config(path: Path | str) -> CdsConfig:
    """The CDS configuration file, or a one-line ConfigurationError naming what is wrong."""
    path = Path(path)
    where = f"--cds-config {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{where}: not valid JSON ({exc})") from None
    try:
        config = CdsConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(map(str, first["loc"]))
        raise ConfigurationError(f"{where}: {at + ': ' if at else ''}{first['msg']}") from None
    # a relative JWKS file is found beside the configuration file
    issuers = [i if i.jwks_file is None else i.model_copy(update={"jwks_file": str(path.parent / i.jwks_file)})
               for i in config.issuers]
    return config.model_copy(update={"issuers": issuers})


_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def _segment(text: str) -> dict:
    if not _SEGMENT.match(text):
        raise ValueError("not base64url")
    value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _peek(token: str) -> tuple[dict, dict]:
    """The header and claims of a JWT before it is verified, to choose the issuer's key. PyJWT then verifies
    the token in one decode; its own unverified reads check every character in Python, which cost twice
    the rest of a CDS call."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16384:
        raise JwtRefused("malformed JWT")
    try:
        return _segment(parts[0]), _segment(parts[1])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwtRefused("malformed JWT") from None


class JwtRefused(Exception):
    """A JWT that does not pass; `reason` is short and safe to show and audit (never the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """A verified CDS call: its issuer and the organisation that issuer is configured for."""

    iss: str
    organisation: str
    organisation_id: int


class _FileKeys:
    def __init__(self, issuer: IssuerConfig):
        path = Path(issuer.jwks_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = jwt.PyJWKSet.from_dict(data).keys
        except OSError as exc:
            raise ConfigurationError(f"--cds-config: {path}: cannot be read ({exc.strerror})") from None
        except (ValueError, jwt.PyJWTError) as exc:
            raise ConfigurationError(f"--cds-config: {path}: not a usable JWK Set ({exc})") from None
        self.keys = {k.key_id: k for k in keys if k.key_id and k.key_type in ("RSA", "EC")}
        if not self.keys:
            raise ConfigurationError(f"--cds-config: {path}: no RSA or EC key with a kid")

    def cached(self, kid: str) -> jwt.PyJWK | None:
        return self.keys.get(kid)

    def fetch(self, kid: str) -> jwt.PyJWK | None:
        return self.keys.get(kid)


class _UrlKeys:
    """Keys of a remote JWK Set: kept once fetched (PyJWKClient refetches the set for an unknown kid, at
    most once per cooldown), so a verified call costs no network round trip."""

    def __init__(self, issuer: IssuerConfig):
        self.client = jwt.PyJWKClient(issuer.jwks_url, cache_jwk_set=True, lifespan=300, timeout=5,
                                      cooldown_duration=30)
        self.keys: dict[str, tuple[jwt.PyJWK, float]] = {}
        self.lifespan = 3600.0

    def cached(self, kid: str) -> jwt.PyJWK | None:
        hit = self.keys.get(kid)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def fetch(self, kid: str) -> jwt.PyJWK | None:
        try:
            key = self.client.get_signing_key(kid)
        except jwt.PyJWKClientError:
            return None
        if key.key_type not in ("RSA", "EC"):
            return None
        self.keys[kid] = (key, time.monotonic() + self.lifespan)
        return key


class ReplayCache:
    """Token ids seen, each kept until its token expires."""

    def __init__(self, limit: int = MAX_LIVE_JTIS):
        self.limit = limit
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, until: float, now: float) -> bool:
        """True the first time (iss, jti) is presented before `until` (epoch seconds)."""
        key = (iss, jti)
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, old = heapq.heappop(self._expiry)
                if self._seen.get(old, now + 1) < now:
                    del self._seen[old]
            if key in self._seen:
                return False
            if len(self._seen) >= self.limit:
                raise JwtRefused("too many live tokens to remember; try again later")
            self._seen[key] = until
            heapq.heappush(self._expiry, (until, key))
            return True


class CdsAuth:
    """Verifies the JWTs of CDS calls against the configured issuers."""

    def __init__(self, config: CdsConfig, organisation_ids: dict[str, int]):
        self.config = config
        self.origins = config.origins
        self.issuers = {i.iss: i for i in config.issuers}
        self.organisation_ids = organisation_ids
        self.keys = {i.iss: _FileKeys(i) if i.jwks_file else _UrlKeys(i) for i in config.issuers}
        self.replays = ReplayCache()

    def audience(self, scope, service_id: str) -> str:
        """The `aud` a call of `service_id` must name: the configured base URL, else the request's (ASGI
        scope; built only then)."""
        if self.config.audience:
            return f"{self.config.audience}/cds-services/{service_id}"
        from starlette.requests import Request

        return f"{str(Request(scope).base_url).rstrip('/')}/cds-services/{service_id}"

    async def verify(self, token: str, audience: str) -> Caller:
        """The verified caller, or JwtRefused with the reason."""
        header, unverified = _peek(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:  # "none" and HS* included: never accepted
            raise JwtRefused(f"algorithm {str(alg)[:20]!r} is not accepted (use one of {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JwtRefused("the JWT header names no kid")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise JwtRefused("issuer not allowed")
        jku = header.get("jku")
        if jku is not None and issuer.jwks_url is not None and jku != issuer.jwks_url:
            raise JwtRefused("jku is not the issuer's configured JWK Set")  # we never fetch a key a token names
        source = self.keys[iss]
        key = source.cached(kid)
        if key is None:  # a remote set not fetched yet (or a new key): off the event loop
            key = await asyncio.to_thread(source.fetch, kid)
        if key is None:
            raise JwtRefused("no key of the issuer has that kid")
        kty, crv = _KEY_TYPES[alg]
        if key.key_type != kty or (crv and getattr(getattr(key.key, "curve", None), "name", None) != crv):
            raise JwtRefused(f"the key {kid[:40]!r} cannot sign {alg}")
        leeway = self.config.leeway_seconds
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=iss, leeway=leeway,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise JwtRefused("the JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise JwtRefused(f"the JWT's aud is not {audience}") from None
        except jwt.ImmatureSignatureError:
            raise JwtRefused("the JWT is issued in the future") from None
        except jwt.MissingRequiredClaimError as exc:
            raise JwtRefused(f"the JWT has no {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise JwtRefused("bad signature") from None
        except jwt.PyJWTError as exc:
            raise JwtRefused(f"invalid JWT ({type(exc).__name__})") from None
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise JwtRefused("the JWT's jti must be a string of 1 to 256 characters")
        if exp - iat > self.config.max_token_lifetime_seconds:
            raise JwtRefused(f"the JWT is valid for longer than {self.config.max_token_lifetime_seconds} s")
        now = time.time()
        if not self.replays.first_use(iss, jti, exp + leeway, now):
            raise JwtRefused("the JWT's jti was used before (replay)")
        return Caller(iss, issuer.organisation, self.organisation_ids[issuer.organisation])

    def cors_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """CORS answer headers for a configured EHR origin; none for any other."""
        if origin is None:
            return []
        text = origin.decode("latin-1")
        if text not in self.origins:
            return []
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
