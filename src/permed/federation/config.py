"""A node's configuration (`node.toml`), chosen by its data owner; every setting has a safe default.

    [node]        id, name, organisation, environment, description, contact
    [disclosure]  k (5), differencing (true), history (10000), kinds (all three), query_set_restriction (true)
    [privacy]     mechanism ("none" | "laplace" | "gaussian"), epsilon (1.0 per query), delta (1e-7, gaussian),
                  budget (10.0 per token)
    [limits]      max_body_kb (64), max_filters (20), auth_failures (10 a minute)

Unknown sections or keys are refused (a misspelt `k` must not silently leave the default in force).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from permed.errors import ConfigurationError

KINDS = ("phenotype", "diplotype", "allele")
MECHANISMS = ("none", "laplace", "gaussian")
ENVIRONMENTS = ("prod", "test", "dev", "staging")


@dataclass(frozen=True)
class NodeInfo:
    id: str = "org.permed.node"
    name: str = "permed PGx beacon"
    organisation: str = "permed node"
    environment: str = "prod"
    description: str = "Pharmacogenomic phenotype, diplotype and allele counts (GA4GH Beacon v2, aggregates only)"
    contact: str = ""


@dataclass(frozen=True)
class Disclosure:
    k: int = 5  # smallest count ever published; 1..k-1 are suppressed
    differencing: bool = True  # refuse a query whose set differs from an earlier one by 1..k-1 individuals
    history: int = 10_000  # earlier query sets remembered for that check
    kinds: tuple[str, ...] = KINDS  # what /api/aggregate may release
    query_set_restriction: bool = True  # refuse filters matching 1..k-1 individuals (or leaving 1..k-1 out)


@dataclass(frozen=True)
class Privacy:
    mechanism: str = "none"
    epsilon: float = 1.0  # per query (the whole answer)
    delta: float = 1e-7  # gaussian only: the (epsilon, delta) stated for its zero-concentrated guarantee
    budget: float = 10.0  # per token, over the node's lifetime (persisted)

    @property
    def on(self) -> bool:
        return self.mechanism != "none"


@dataclass(frozen=True)
class NodeLimits:
    max_body_kb: int = 64
    max_filters: int = 20
    auth_failures: int = 10  # failed authentications per client address a minute before 429


@dataclass(frozen=True)
class NodeConfig:
    node: NodeInfo = field(default_factory=NodeInfo)
    disclosure: Disclosure = field(default_factory=Disclosure)
    privacy: Privacy = field(default_factory=Privacy)
    limits: NodeLimits = field(default_factory=NodeLimits)


_SECTIONS = {"node": NodeInfo, "disclosure": Disclosure, "privacy": Privacy, "limits": NodeLimits}


def read_config(path: Path | None) -> NodeConfig:
    """The configuration in `path` (None: the defaults), checked field by field."""
    if path is None:
        return NodeConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: node configuration not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: not a readable TOML file ({exc})") from None
    return config_from_dict(data, str(path))


def config_from_dict(data: dict, where: str = "node.toml") -> NodeConfig:
    parts = {}
    for section, value in data.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigurationError(f"{where}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigurationError(f"{where}: [{section}] must be a table")
        parts[section] = _section(cls, value, f"{where}: [{section}]")
    return _checked(replace(NodeConfig(), **parts), where)


def _section(cls, values: dict, where: str):
    defaults = cls()
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigurationError(f"{where} {key}: unknown key (known: {', '.join(known)})")
        default = getattr(defaults, key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigurationError(f"{where} {key}: {value!r} is not a {type(default).__name__}")
        out[key] = value
    return replace(defaults, **out)


def _checked(c: NodeConfig, where: str) -> NodeConfig:
    d, p = c.disclosure, c.privacy
    if d.k < 1:
        raise ConfigurationError(f"{where}: [disclosure] k: {d.k} must be at least 1")
    if d.history < 0:
        raise ConfigurationError(f"{where}: [disclosure] history: {d.history} is negative")
    bad = [x for x in d.kinds if x not in KINDS]
    if bad or not d.kinds:
        raise ConfigurationError(f"{where}: [disclosure] kinds: must be some of {', '.join(KINDS)} (got {bad or []})")
    if p.mechanism not in MECHANISMS:
        raise ConfigurationError(f"{where}: [privacy] mechanism: {p.mechanism!r} is not one of {', '.join(MECHANISMS)}")
    if p.on and not (0 < p.epsilon <= p.budget):
        raise ConfigurationError(f"{where}: [privacy] epsilon: {p.epsilon} must be above 0 and at most the budget "
                                 f"({p.budget})")
    if p.mechanism == "gaussian" and not 0 < p.delta < 1:
        raise ConfigurationError(f"{where}: [privacy] delta: {p.delta} must be between 0 and 1")
    if c.node.environment not in ENVIRONMENTS:
        raise ConfigurationError(f"{where}: [node] environment: {c.node.environment!r} is not one of "
                                 f"{', '.join(ENVIRONMENTS)}")
    if c.limits.max_body_kb < 1 or c.limits.max_filters < 1 or c.limits.auth_failures < 0:
        raise ConfigurationError(f"{where}: [limits]: max_body_kb and max_filters must be at least 1, "
                                 "auth_failures at least 0")
    return c
