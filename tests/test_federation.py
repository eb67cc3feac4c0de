"""Federated cohort queries (issue 15): Beacon v2 nodes over `permed cohort` directories, disclosure control,
differential privacy, and `permed federate` combining nodes.

The 1KGP panel is split by superpopulation (AFR / EUR / EAS+SAS+AMR) into three VCF sets, each called with
`permed cohort`; the pooled panel is called once too (all 19 gene files; built once per test session).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from helpers import ROOT, cli

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "1kgp-grch38"
POPS = SHARED / "data" / "1kgp_populations.tsv"
BEACON = SHARED / "reference" / "standards" / "beacon-v2"
SPLIT = {"afr": {"AFR"}, "eur": {"EUR"}, "other": {"EAS", "SAS", "AMR"}}
SAMPLE_ID = re.compile(r"\b(HG|NA)\d{5}\b")
GENOTYPE = re.compile(r"\b[0-9.][|/][0-9.]\b")

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")


@pytest.fixture(scope="session")
def cohorts(tmp_path_factory):
    """{afr, eur, other, pooled} -> cohort directory."""
    import pysam

    import permed

    base = tmp_path_factory.mktemp("federation")
    superpop = {}
    for line in POPS.read_text().splitlines()[1:]:
        f = line.split("\t")
        superpop[f[0]] = f[2]
    for f in sorted(DATA.glob("*.vcf.gz")):
        samples = list(pysam.VariantFile(str(f)).header.samples)
        for name, keep in SPLIT.items():
            vin = pysam.VariantFile(str(f))
            vin.subset_samples([s for s in samples if superpop.get(s) in keep])
            dst = base / "vcf" / name / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with pysam.VariantFile(str(dst), "wz", header=vin.header) as w:
                for rec in vin:
                    w.write(rec)
            pysam.tabix_index(str(dst), preset="vcf", force=True)
    out = {}
    for name in SPLIT:
        out[name] = base / name
        permed.cohort(sorted((base / "vcf" / name).glob("*.vcf.gz")), populations=POPS).write(out[name])
    out["pooled"] = base / "pooled"
    permed.cohort(sorted(DATA.glob("*.vcf.gz")), populations=POPS).write(out["pooled"])
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc, seconds: float = 60) -> None:
    import httpx

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/api", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


@pytest.fixture(scope="module")
def nodes(cohorts, tmp_path_factory):
    """Three `permed node serve` processes on loopback in exact mode (k=1), each with an aggregate token."""
    base = tmp_path_factory.mktemp("nodes")
    config = base / "node.toml"
    config.write_text("[disclosure]\nk = 1\n")
    procs, urls, tokens = [], [], {}
    for name in SPLIT:
        d = base / name
        d.mkdir()
        for f in ("calls.parquet", "samples.parquet"):
            (d / f).write_bytes((cohorts[name] / f).read_bytes())
        r = cli("node", "token", "create", d, "--scope", "aggregate", "--institution", "test suite")
        assert r.returncode == 0, r.stderr
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen([sys.executable, "-m", "permed", "node", "serve", str(d), "--port", str(port),
                                       "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        urls.append(url)
        tokens[url] = r.stdout.strip()
    try:
        for url, p in zip(urls, procs):
            _wait(url, p)
        yield urls, tokens, base
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


# --- the three-node equality ------------------------------------------------------------------------------

def test_exact_federation_equals_pooled_cohort_cell_for_cell(nodes, cohorts):
    import pyarrow.parquet as pq

    from permed.federation.client import federate

    urls, tokens, _ = nodes
    down = f"http://127.0.0.1:{_free_port()}"  # nobody listens: marked down, the rest answers
    result = federate([*urls, down], kinds=("diplotype", "phenotype", "allele"), by=["superpopulation", "population"],
                      tokens=tokens, timeout=120)
    status = {n.url: n.status for n in result.nodes}
    assert status == {**dict.fromkeys(urls, "ok"), down: "down"}
    got = {(r["gene"], r["kind"], r["value"], r["level"], r["group"]): r for r in result.rows}
    pooled = pq.read_table(cohorts["pooled"] / "frequencies.parquet").to_pylist()
    want = {(r["gene"], r["kind"], r["value"], r["level"], r["group"]): r for r in pooled}
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["count"], g["n_samples"], g["n_determined"]) == (w["count"], w["n_samples"], w["n_determined"]), key
        assert g["frequency"] == w["frequency"], key  # same division of the same integers: bit for bit
        if w["share"] is not None:
            assert g["share"] == w["share"], key
    assert len({r[0] for r in want}) >= 18  # every gene of the panel


def test_federate_command_outputs_and_node_failures(nodes, tmp_path):
    urls, tokens, _ = nodes
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("".join(f"{u} {t}\n" for u, t in tokens.items()))
    slow, garbage, not_beacon = _fake_node(delay=5), _fake_node(body=b"<html>oops"), _fake_node(body=b'{"a": 1}')
    try:
        r = cli("federate", "CYP2C19 phenotype", *[x for u in urls for x in ("--node", u)], "--node", slow,
                "--node", garbage, "--node", not_beacon, "--tokens-file", tokens_file, "--by", "population",
                "--format", "json", "--html", tmp_path / "chart.html", "--timeout", "2")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        status = {n["url"]: n["status"] for n in doc["nodes"]}
        assert status[slow] == "timeout" and status[garbage] == "invalid" and status[not_beacon] == "invalid"
        assert all(status[u] == "ok" for u in urls)
        assert "timeout" in r.stderr and "invalid" in r.stderr
        pm = [x for x in doc["rows"] if x["value"] == "Poor Metabolizer" and x["level"] == "all"]
        assert pm and pm[0]["count"] > 100
        html = (tmp_path / "chart.html").read_text()
        assert "<svg" in html and "CYP2C19" in html and "<script" not in html
        r = cli("federate", "CYP2C19 allele", *[x for u in urls for x in ("--node", u)], "--tokens-file", tokens_file,
                "--format", "parquet", "-o", tmp_path / "out.parquet")
        assert r.returncode == 0, r.stderr
        import pyarrow.parquet as pq

        t = pq.read_table(tmp_path / "out.parquet")
        assert t.num_rows > 10 and b"permed.nodes" in t.schema.metadata
        # a wrong token: refused, reported; no node answering: exit 5
        r = cli("federate", "CYP2C19 phenotype", "--node", urls[0], "--token", "pmdn_wrong")
        assert r.returncode == 5 and "refused" in r.stderr
    finally:
        for s in _fakes:
            s.shutdown()


def test_federate_usage_errors():
    assert cli("federate", "CYP2C19 phenotype", "--node", "http://x", "--by", "country").returncode == 64
    assert cli("federate", "CYP2C19 phenotype", "--node", "http://x", "--format", "xml").returncode == 64
    r = cli("federate", "CYP2C19", "--node", "http://x")
    assert r.returncode == 2 and "GENE KIND" in r.stderr
    r = cli("federate", "CYP2C19 phenotype", "--node", "http://x", "--filter", "CYP2C19:phenotype~PM")
    assert r.returncode == 2 and "--filter" in r.stderr


_fakes: list = []


def _fake_node(delay: float = 0.0, body: bytes = b"{}") -> str:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length") or 0))
            time.sleep(delay)
            try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _fakes.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}"


# --- one node in process: disclosure control ----------------------------------------------------------------

def _node(cohorts, tmp_path, name="other", **config):
    from starlette.testclient import TestClient

    from permed.federation import tokens
    from permed.federation.app import create_app
    from permed.federation.config import config_from_dict
    from permed.federation.node import Node

    d = tmp_path / name
    d.mkdir()
    for f in ("calls.parquet", "samples.parquet"):
        (d / f).write_bytes((cohorts[name] / f).read_bytes())
    toks = {s: tokens.create(d, s, f"inst-{s}")[1] for s in ("boolean", "count", "aggregate")}
    node = Node(d, config_from_dict(config))
    return node, TestClient(create_app(node)), toks, d


def _aggregate(client, token, genes=None, kinds=("phenotype",), by=(), filters=()):
    body = {"meta": {"apiVersion": "v2.0.1"}, "query": {"filters": list(filters), "requestParameters": {
        "aggregate": {"kinds": list(kinds), "by": list(by), **({"genes": genes} if genes else {})}}}}
    return client.post("/api/aggregate", json=body, headers={"Authorization": f"Bearer {token}"})


def _ints(agg: dict):
    for g in agg["groups"]:
        yield g["n"]
    for c in agg["cells"]:
        yield c["count"]
    for t in agg["totals"]:
        yield t["nDetermined"]


def _attack(agg: dict) -> list[tuple]:
    """An attacker's own bound propagation over what was published (independent of disclosure.py): the
    suppressed cells whose value it pins down. Equalities: group size = sum of a kind's cells
    (diplotype, phenotype); determined count = its determined cells; parent = sum of children."""
    k = agg["k"]
    cells: dict[tuple, object] = {}
    for g in agg["groups"]:
        cells[("n", g["level"], g["group"])] = g["n"]
    for c in agg["cells"]:
        cells[(c["gene"], c["kind"], c["value"], c["level"], c["group"])] = c["count"]
    for t in agg["totals"]:
        cells[(t["gene"], "det:" + t["kind"], t["level"], t["group"])] = t["nDetermined"]
    eqs = []  # (total key, [part keys])
    rows: dict[tuple, list] = {}
    for c in agg["cells"]:
        rows.setdefault((c["gene"], c["kind"], c["level"], c["group"]), []).append(c)
    for (gene, kind, level, group), row in rows.items():
        keys = [(gene, kind, c["value"], level, group) for c in row]
        if kind != "allele":
            eqs.append((("n", level, group), keys))
        det = [x for x, c in zip(keys, row) if not (c["value"].startswith("(") or c["value"] in
                                                     ("Indeterminate", "n/a", "No Result"))]
        dk = (gene, "det:" + kind, level, group)
        if dk in cells:
            eqs.append((dk, det if kind != "allele" else keys))
    by_value: dict[tuple, dict] = {}
    for key in cells:
        if key[0] == "n":
            by_value.setdefault(("n",), {})[key[1:]] = key
        elif key[1].startswith("det:"):
            by_value.setdefault(key[:2], {})[key[2:]] = key
        else:
            by_value.setdefault(key[:3], {})[key[3:]] = key
    for members in by_value.values():
        top = members.get(("all", "ALL"))
        if top is not None and "superpopulation" in agg["levels"]:
            eqs.append((top, [v for (lv, _), v in members.items() if lv == "superpopulation"]))
        elif top is not None and agg["levels"] == ["all", "population"]:
            eqs.append((top, [v for (lv, _), v in members.items() if lv == "population"]))
    lo = {x: (1 if v == {"suppressed": "<k"} else k) for x, v in cells.items() if isinstance(v, dict)}
    hi = {x: (k - 1 if v == {"suppressed": "<k"} else float("inf")) for x, v in cells.items() if isinstance(v, dict)}

    def rng(x):
        v = cells[x]
        return (v, v) if isinstance(v, int) else (lo[x], hi[x])

    for _ in range(30):
        moved = False
        for total, parts in eqs:
            if total not in cells:
                continue
            everything = [total, *parts]
            for x in everything:
                if x not in lo:
                    continue
                if x == total:
                    a = sum(rng(p)[0] for p in parts)
                    b = sum(rng(p)[1] for p in parts)
                else:
                    t_lo, t_hi = rng(total)
                    a = t_lo - sum(rng(p)[1] for p in parts if p != x)
                    b = t_hi - sum(rng(p)[0] for p in parts if p != x)
                if a > lo[x]:
                    lo[x], moved = a, True
                if b < hi[x]:
                    hi[x], moved = b, True
        if not moved:
            break
    return [x for x in lo if cells[x] == {"suppressed": "<k"} and lo[x] >= hi[x]]


QUERIES = [
    dict(kinds=("phenotype",), by=("superpopulation",)),
    dict(kinds=("phenotype",), by=("population",)),
    dict(kinds=("diplotype", "phenotype", "allele"), by=("superpopulation",), genes=["CYP2C19", "CYP2C9", "TPMT"]),
    dict(kinds=("allele",), by=("superpopulation", "population"), genes=["CYP2C19", "NUDT15"]),
    dict(kinds=("phenotype",), by=("population",), filters=[{"id": "superpopulation", "operator": "=",
                                                             "value": "EAS"}]),
    dict(kinds=("diplotype", "phenotype"), by=("superpopulation",), genes=["CYP2C19"],
         filters=[{"id": "CYP2C9:phenotype", "operator": "=", "value": "Normal Metabolizer"}]),
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_k5_no_small_count_and_no_suppressed_cell_derivable(cohorts, tmp_path, query):
    node, client, toks, _ = _node(cohorts, tmp_path, disclosure={"differencing": False})
    r = _aggregate(client, toks["aggregate"], **query)
    assert r.status_code == 200, r.text
    agg = r.json()["info"]["pgxAggregate"]
    assert agg["k"] == 5
    values = [x for x in _ints(agg) if isinstance(x, int)]
    assert values and all(x == 0 or x >= 5 for x in values)
    assert any(isinstance(x, dict) for x in _ints(agg)), "the panel has rare values: some cells are suppressed"
    assert _attack(agg) == []
    assert not SAMPLE_ID.search(r.text) and not GENOTYPE.search(r.text)


def test_query_set_size_restriction_and_differencing(cohorts, tmp_path):
    node, client, toks, _ = _node(cohorts, tmp_path)
    auth = {"Authorization": f"Bearer {toks['count']}"}
    eas = node.cohort.groupings["superpopulation"]
    in_eas = eas.codes == eas.labels.index("EAS")
    gene, rare = next((gene, g.phenotype_labels[i]) for gene, g in sorted(node.cohort.genes.items())
                      for i, c in enumerate(np.bincount(g.phenotype[in_eas], minlength=len(g.phenotype_labels)))
                      if 1 <= c <= 4)

    def ask(filters):
        return client.post("/api/individuals", headers=auth, json={"meta": {"apiVersion": "v2.0.1"}, "query": {
            "requestedGranularity": "count", "filters": filters}})

    eas_f = {"id": "superpopulation", "operator": "=", "value": "EAS"}
    rare_f = {"id": f"{gene}:phenotype", "operator": "=", "value": rare}
    r = ask([eas_f, rare_f])
    assert r.status_code == 403 and "query-set-size" in r.json()["error"]["errorMessage"]
    r = ask([eas_f])
    assert r.status_code == 200 and r.json()["responseSummary"]["numTotalResults"] == int(in_eas.sum())
    r = ask([eas_f, {**rare_f, "operator": "!"}])  # EAS less 1..4 people: the difference would name them
    assert r.status_code == 403 and "differencing" in r.json()["error"]["errorMessage"]
    r = ask([eas_f])  # the same set again tells nothing new
    assert r.status_code == 200
    rows = node.store.audit_rows()
    refused = [x for x in rows if x["outcome"].startswith("refused-403")]
    assert len(refused) == 2 and all(x["institution"] == "inst-count" for x in refused)
    assert json.loads(refused[0]["filters"]) == ["superpopulation=EAS", f"{gene}:phenotype={rare}"]


def test_granularity_scopes_and_record_never(cohorts, tmp_path):
    node, client, toks, d = _node(cohorts, tmp_path)
    for scope, want in (("boolean", "boolean"), ("count", "count"), ("aggregate", "count")):
        r = client.get("/api/individuals", params={"requestedGranularity": "record"},
                       headers={"Authorization": f"Bearer {toks[scope]}"})
        doc = r.json()
        assert r.status_code == 200 and doc["meta"]["returnedGranularity"] == want
        assert problems(want, doc) == [] and "resultSets" not in doc and not SAMPLE_ID.search(r.text)
    r = _aggregate(client, toks["count"])
    assert r.status_code == 403 and problems("error", r.json()) == []
    r = client.get("/api/individuals")
    assert r.status_code == 401
    rows = node.store.audit_rows()
    assert {x["returned"] for x in rows if x["endpoint"] == "individuals"} == {"boolean", "count"}
    assert rows[-1]["outcome"].startswith("refused-401")
    assert (d / "node.sqlite").stat().st_mode & 0o077 == 0
    for path in ("/api", "/api/service-info", "/api/configuration", "/api/map", "/api/entry_types",
                 "/api/filtering_terms"):
        r = client.get(path)
        assert r.status_code == 200, path
        name = {"/api": "info", "/api/service-info": "service-info"}.get(path, path.rsplit("/", 1)[1])
        assert problems(name, r.json()) == [], path
        assert r.headers["cache-control"] == "no-store"
    terms = {t["id"]: t for t in client.get("/api/filtering_terms").json()["response"]["filteringTerms"]}
    assert {"CYP2C19:phenotype", "CYP2C19:diplotype", "CYP2C19:allele", "CYP2C9:activity_score", "population",
            "superpopulation"} <= set(terms)
    assert "Poor Metabolizer" in terms["CYP2C19:phenotype"]["values"]


def test_differential_privacy_budget(cohorts, tmp_path):
    from permed.federation.app import create_app
    from permed.federation.config import config_from_dict
    from permed.federation.node import Node

    config = {"privacy": {"mechanism": "laplace", "epsilon": 1.0, "budget": 3.0}}
    node, client, toks, d = _node(cohorts, tmp_path, "eur", **config)
    answers = []
    for i in range(3):
        r = _aggregate(client, toks["aggregate"], genes=["CYP2C19"], by=("population",))
        assert r.status_code == 200, r.text
        agg = r.json()["info"]["pgxAggregate"]
        assert agg["privacy"]["mechanism"] == "laplace" and agg["privacy"]["epsilonSpent"] == pytest.approx(1.0)
        assert agg["privacy"]["budgetRemaining"] == pytest.approx(2.0 - i)
        assert all(x == 0 or x >= 5 for x in _ints(agg) if isinstance(x, int))
        answers.append([c["count"] for c in agg["cells"]])
    assert len({json.dumps(a) for a in answers}) > 1, "noisy answers differ"
    r = _aggregate(client, toks["aggregate"], genes=["CYP2C19"])
    assert r.status_code == 403 and "budget" in r.json()["error"]["errorMessage"]
    # the ledger is persisted: a restarted node still refuses; another token has its own budget
    from starlette.testclient import TestClient

    again = TestClient(create_app(Node(d, config_from_dict(config))))
    assert _aggregate(again, toks["aggregate"], genes=["CYP2C19"]).status_code == 403
    r = again.get("/api/individuals", params={"requestedGranularity": "count"},
                  headers={"Authorization": f"Bearer {toks['count']}"})
    assert r.status_code == 200 and r.json()["info"]["permed"]["privacy"]["epsilonSpent"] > 0
    spent = {x["institution"]: x["epsilon"] for x in node.store.audit_rows() if x["epsilon"]}
    assert spent["inst-aggregate"] == pytest.approx(1.0)


def test_gaussian_states_epsilon_and_delta(cohorts, tmp_path):
    node, client, toks, _ = _node(cohorts, tmp_path, "afr", privacy={"mechanism": "gaussian", "epsilon": 2.0})
    agg = _aggregate(client, toks["aggregate"], genes=["CYP2C9"]).json()["info"]["pgxAggregate"]
    assert agg["privacy"]["mechanism"] == "gaussian" and agg["privacy"]["delta"] == pytest.approx(1e-7)
    assert 1.9 < agg["privacy"]["epsilon"] <= 2.0


def test_node_config_errors(tmp_path):
    from permed.errors import ConfigurationError
    from permed.federation.config import read_config

    bad = tmp_path / "node.toml"
    for text, says in (("[disclosure]\nkk = 3\n", "kk: unknown key"), ("[disclosure]\nk = 0\n", "k: 0"),
                       ("[privacy]\nmechanism = 'magic'\n", "mechanism"), ("[x]\n", "unknown section"),
                       ("k = [", "TOML")):
        bad.write_text(text)
        with pytest.raises(ConfigurationError, match=says):
            read_config(bad)


def test_node_token_command(cohorts, tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "calls.parquet").write_bytes((cohorts["eur"] / "calls.parquet").read_bytes())
    r = cli("node", "token", "create", d, "--scope", "everything")
    assert r.returncode == 64 and "--scope" in r.stderr
    r = cli("node", "token", "create", tmp_path / "missing", "--scope", "count")
    assert r.returncode == 2 and "calls.parquet" in r.stderr
    r = cli("node", "token", "create", d, "--scope", "count", "--institution", "Hospital A")
    assert r.returncode == 0 and r.stdout.startswith("pmdn_")
    listing = cli("node", "token", "list", d).stdout
    assert "Hospital A" in listing and r.stdout.strip() not in (d / "node.sqlite").read_bytes().decode("latin-1")
    assert cli("node", "token", "revoke", d, "1").returncode == 0
    assert cli("node", "token", "revoke", d, "99").returncode == 2


def problems(name: str, document) -> list[str]:
    """What our run-time schema and the Beacon v2 framework's own schema (from ../shared) find wrong."""
    from permed.federation.schemas import official_problems
    from permed.federation.schemas import problems as ours

    return ours(name, document) + (official_problems(name, document, BEACON / "framework" / "json")
                                   if name != "aggregate" else [])


def test_our_schemas_refuse_what_the_framework_refuses():
    """Our run-time schemas hold the framework's required structure: documents the framework's schemas
    refuse (a member taken out, a wrong type) are refused by ours too."""
    from permed.federation.schemas import official_problems
    from permed.federation.schemas import problems as ours

    framework = BEACON / "framework" / "json"
    meta = {"beaconId": "org.example", "apiVersion": "v2.0.1", "returnedSchemas": [],
            "returnedGranularity": "count", "receivedRequestSummary": {
                "apiVersion": "v2.0.1", "requestedSchemas": [], "pagination": {"skip": 0, "limit": 10},
                "requestedGranularity": "count"}}
    good = {"meta": meta, "responseSummary": {"exists": True, "numTotalResults": 12}}
    assert ours("count", good) == [] and official_problems("count", good, framework) == []
    broken = [
        {"meta": meta},
        {"meta": {**meta, "beaconId": 3}, "responseSummary": good["responseSummary"]},
        {"meta": {k: v for k, v in meta.items() if k != "receivedRequestSummary"},
         "responseSummary": good["responseSummary"]},
        {"meta": meta, "responseSummary": {"exists": "yes", "numTotalResults": 12}},
        {"meta": meta, "responseSummary": {"exists": True}},
    ]
    for doc in broken:
        assert official_problems("count", doc, framework), doc
        assert ours("count", doc), doc


# --- property tests -------------------------------------------------------------------------------------------

def test_random_requests_never_disclose(cohorts, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    node, client, toks, _ = _node(cohorts, tmp_path, "other")
    genes = sorted(node.cohort.genes)
    ids = [f"{g}:{f}" for g in genes for f in ("phenotype", "diplotype", "allele", "activity_score")]
    ids += ["population", "superpopulation", "sex", "NCIT:C1234"]
    values = st.sampled_from(["Poor Metabolizer", "Normal Metabolizer", "*1/*2", "*2", "*17", "EAS", "CHB", "1.0",
                              "2", "%", "%Metabolizer", "HG00096", "0|1"]) | st.text(max_size=12)
    a_filter = st.one_of(
        st.fixed_dictionaries({"id": st.sampled_from(ids), "operator": st.sampled_from(["=", "!", "<", ">=", "~"]),
                               "value": values}),
        st.builds(lambda i, o, v: f"{i}{o}{v}", st.sampled_from(ids), st.sampled_from(["=", "!", "<="]), values),
        st.fixed_dictionaries({"id": st.sampled_from(ids)}))

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(filters=st.lists(a_filter, max_size=3), granularity=st.sampled_from(["boolean", "count", "record", "x"]),
           scope=st.sampled_from(["boolean", "count", "aggregate"]), aggregate=st.booleans(),
           kinds=st.lists(st.sampled_from(["phenotype", "diplotype", "allele"]), min_size=1, max_size=3,
                          unique=True),
           by=st.lists(st.sampled_from(["population", "superpopulation"]), max_size=2, unique=True),
           gene=st.sampled_from(genes))
    def check(filters, granularity, scope, aggregate, kinds, by, gene):
        auth = {"Authorization": f"Bearer {toks[scope]}"}
        if aggregate:
            body = {"meta": {"apiVersion": "v2.0.1"}, "query": {"filters": filters, "requestParameters": {
                "aggregate": {"genes": [gene], "kinds": kinds, "by": by}}}}
            r = client.post("/api/aggregate", json=body, headers=auth)
        else:
            body = {"meta": {"apiVersion": "v2.0.1"}, "query": {"filters": filters,
                                                                "requestedGranularity": granularity}}
            r = client.post("/api/individuals", json=body, headers=auth)
        doc = r.json()
        assert not SAMPLE_ID.search(json.dumps(doc.get("responseSummary", {})) + json.dumps(doc.get("info", {})))
        assert not GENOTYPE.search(json.dumps(doc.get("info", {})))
        if r.status_code != 200:
            assert problems("error", doc) == [], doc
            return
        granted = doc["meta"]["returnedGranularity"]
        assert granted in ("boolean", "count") and problems(granted, doc) == []
        assert "resultSets" not in doc and "response" not in doc
        n = doc["responseSummary"].get("numTotalResults")
        assert n is None or n == 0 or n >= 5
        if aggregate:
            agg = doc["info"]["pgxAggregate"]
            assert problems("aggregate", agg) == []
            assert all(x == 0 or x >= 5 for x in _ints(agg) if isinstance(x, int))

    check()


def test_privacy_files_are_private_under_umask_022(cohorts, tmp_path):
    old = os.umask(0o022)
    try:
        d = tmp_path / "c"
        d.mkdir()
        (d / "calls.parquet").write_bytes((cohorts["eur"] / "calls.parquet").read_bytes())
        assert cli("node", "token", "create", d, "--scope", "count").returncode == 0
    finally:
        os.umask(old)
    assert (d / "node.sqlite").stat().st_mode & 0o077 == 0
