"""CDS Hooks 2.0 services of `permed serve` (issue 13): discovery, order-select / order-sign / patient-view cards
checked against the specification's card structure, phenoconversion from the EHR's medication list, the JWT
checks (signature, issuer, audience, expiry, replay, algorithm), tenancy through patient links, CORS, audit,
and the patient-link routes' roles."""

from __future__ import annotations

import copy
import json
import logging
import time
import uuid
from typing import Literal

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from helpers import example_text
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from permed.service.app import Settings, create_app
from permed.service.limits import Limits
from permed.service.store import AuditEvent
from permed.service.tokens import create_token
from permed.service.worker import run_worker

AUDIENCE = "https://permed.example.org"
ISS_A, ISS_B = "https://ehr-a.example.org", "https://ehr-b.example.org"
ORIGIN_A = "https://ehr-a.example.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SECRET_FHIR_TOKEN = "fhir-access-token-that-must-never-be-kept-7f3a"
SERVICE_IDS = {"order-select": "permed-pgx-order-select", "order-sign": "permed-pgx-order-sign",
               "patient-view": "permed-pgx-patient-view"}


# ---- the card structure of the specification (our own model of its tables) -----------------------------------

class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Coding(_Spec):
    code: str
    system: str
    display: str | None = None


class Source(_Spec):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Spec):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _conditional(self):
        assert self.type != "create" or self.resource is not None, "create needs a resource"
        assert self.type != "delete" or self.resourceId is not None, "delete should name resourceId"
        return self


class Suggestion(_Spec):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Spec):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Spec):
    uuid: str | None = None
    summary: str = Field(max_length=139)  # "<140-character"
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection(self):
        assert not self.suggestions or self.selectionBehavior, "suggestions need selectionBehavior"
        return self


class CdsResponse(_Spec):
    cards: list[Card]
    systemActions: list[Action] | None = None


def _no_empty_values(value, where="response"):
    """The specification: no element is null or empty (an empty cards list excepted)."""
    assert value is not None and value != "" and value != {}, where
    if isinstance(value, dict):
        for k, v in value.items():
            _no_empty_values(v, f"{where}.{k}")
    elif isinstance(value, list):
        assert value, where
        for i, v in enumerate(value):
            _no_empty_values(v, f"{where}[{i}]")


def check_response(body: dict) -> CdsResponse:
    parsed = CdsResponse.model_validate(body)
    for i, card in enumerate(body["cards"]):
        _no_empty_values(card, f"cards[{i}]")
        for s in card.get("suggestions", ()):
            for a in s.get("actions", ()):
                if a["type"] == "create":  # a FHIR R4 resource the EHR can create
                    from fhir.resources.R4B.medicationrequest import MedicationRequest

                    MedicationRequest.model_validate(a["resource"])
    return parsed


# ---- keys, JWTs and the configuration ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys():
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    es = ec.generate_private_key(ec.SECP384R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # a key no issuer has
    return {"A": (rs, "ehr-a-1", "RS384"), "B": (es, "ehr-b-1", "ES384"), "other": (other, "ehr-a-1", "RS384")}


def _jwks(private, kid: str, alg: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()) if alg.startswith("RS")
                     else jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": alg}]}


def sign(keys, who: str = "A", service: str = "permed-pgx-order-select", iss: str | None = None, **claims) -> str:
    private, kid, alg = keys[who]
    now = int(time.time())
    payload = {"iss": iss or (ISS_B if who == "B" else ISS_A), "aud": f"{AUDIENCE}/cds-services/{service}",
               "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def cds(tmp_path, database_url, keys):
    """A service with CDS Hooks for two EHRs (issuer A -> organisation A, B -> B); in A a patient with
    CYP2C19 *2/*2 (poor metabolizer) and CYP2D6 *1/*1 (normal) from outside calls, linked as `pgx-1`."""
    (tmp_path / "a.jwks.json").write_text(json.dumps(_jwks(*keys["A"])))
    (tmp_path / "b.jwks.json").write_text(json.dumps(_jwks(*keys["B"])))
    config = {"audience": AUDIENCE, "issuers": [
        {"iss": ISS_A, "organisation": "A", "jwks_file": "a.jwks.json", "origins": [ORIGIN_A]},
        {"iss": ISS_B, "organisation": "B", "jwks_file": "b.jwks.json", "origins": ["https://ehr-b.example.org"]}]}
    (tmp_path / "cds.json").write_text(json.dumps(config))
    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data, database=database_url, cds_config=tmp_path / "cds.json",
                              limits=Limits(auth_failures=0)))
    store = app.state.store
    tokens = {(role, org): create_token(store, role, organisation=org)[1]
              for role in ("lab", "clinician") for org in ("A", "B")}
    tokens[("admin", None)] = create_token(store, "admin")[1]
    client = TestClient(app)
    r = client.post("/api/v1/samples", headers=bearer(tokens[("lab", "A")]),
                    files={"vcf": ("patient.vcf", example_text().encode()),
                           "outside_calls": ("calls.tsv", b"CYP2C19\t*2/*2\nCYP2D6\t*1/*1\n")})
    assert r.status_code == 201, r.text
    upload = r.json()
    assert run_worker(store, data, once=True) == 1
    r = client.post(f"/api/v1/samples/{upload['id']}/patient-link", json={"patient_id": "pgx-1"},
                    headers=bearer(tokens[("lab", "A")]))
    assert r.status_code == 201, r.text
    return client, store, tokens, upload, data


def medication_request(rid: str, rxnorm: str, display: str, patient: str = "pgx-1") -> dict:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}],
                                          "text": display},
            "subject": {"reference": f"Patient/{patient}"},
            "dosageInstruction": [{"text": "1 tablet daily", "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                                  "periodUnit": "d"}}}]}


CLOPIDOGREL = ("309362", "clopidogrel 75 MG Oral Tablet")
CODEINE = ("993781", "acetaminophen 300 MG / codeine phosphate 30 MG Oral Tablet")
AMOXICILLIN = ("617993", "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension")
PAROXETINE = ("1738503", "paroxetine 20 MG Oral Tablet")


def order_request(hook: str, orders: list[dict], patient: str = "pgx-1", selections: list[str] | None = None,
                  active: list[dict] | None = None) -> dict:
    """A request like the specification's R4 examples (with PGx drugs), fhirAuthorization included."""
    context = {"userId": "PractitionerRole/123", "patientId": patient, "encounterId": "89284",
               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                               "entry": [{"resource": o} for o in orders]}}
    if hook == "order-select":
        context["selections"] = selections or [f"MedicationRequest/{orders[0]['id']}"]
    body = {"hookInstance": str(uuid.uuid4()), "fhirServer": "https://ehr-a.example.org/fhir", "hook": hook,
            "fhirAuthorization": {"access_token": SECRET_FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                  "scope": "user/MedicationRequest.read", "subject": "permed"},
            "context": context}
    if active is not None:
        body["prefetch"] = {"medicationRequests": {"resourceType": "Bundle", "type": "searchset",
                                                   "entry": [{"resource": m} for m in active]}}
    return body


def call(client, keys, hook: str, body: dict, who: str = "A", **headers):
    service = SERVICE_IDS[hook]
    return client.post(f"/cds-services/{service}", json=body,
                       headers={**bearer(sign(keys, who, service)), **headers})


# ---- the tests ----------------------------------------------------------------------------------------------------

def test_discovery_lists_the_three_services(cds):
    client, *_ = cds
    r = client.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert set(services) == set(SERVICE_IDS.values())
    assert {s["hook"] for s in services.values()} == set(SERVICE_IDS)
    for s in services.values():
        assert s["title"] and s["description"] and "{{context.patientId}}" in s["prefetch"]["medicationRequests"]
        _no_empty_values(s)


def test_clopidogrel_for_a_poor_metabolizer_is_critical_with_alternatives(cds, keys):
    client, store, tokens, upload, _ = cds
    order = medication_request("smart-MedicationRequest-103", *CLOPIDOGREL)
    for hook in ("order-select", "order-sign"):
        r = call(client, keys, hook, order_request(hook, [order]))
        assert r.status_code == 200, r.text
        check_response(r.json())
        (card,) = r.json()["cards"]
        assert card["indicator"] == "critical"
        assert card["summary"].startswith("Clopidogrel: avoid (CYP2C19 Poor Metabolizer)")
        assert "`*2/*2`" in card["detail"] and "Poor Metabolizer" in card["detail"]
        assert card["source"]["label"] == "CPIC guideline" and card["source"]["url"].startswith("https://")
        assert card["selectionBehavior"] == "at-most-one"
        labels = [s["label"] for s in card["suggestions"]]
        assert labels == ["Order ticagrelor instead of clopidogrel", "Order prasugrel instead of clopidogrel"]
        delete, create = card["suggestions"][0]["actions"]
        assert delete == {"type": "delete", "description": "Remove the draft order for clopidogrel",
                          "resourceId": "MedicationRequest/smart-MedicationRequest-103"}
        assert create["resource"]["medicationCodeableConcept"] == {"text": "ticagrelor"}  # no RxNorm in the KB
        assert create["resource"]["subject"] == {"reference": "Patient/pgx-1"}
        (link,) = card["links"]
        assert link == {"label": "Pharmacogenomic report (permed)", "type": "absolute",
                        "url": f"{AUDIENCE}/api/v1/samples/{upload['id']}/report?format=html&sample=EXAMPLE-PATIENT"}
    with store.session() as s:
        rows = s.execute(select(AuditEvent.action, AuditEvent.upload_id, AuditEvent.token_id)
                         .where(AuditEvent.action.like("cds-%"))).all()
    assert ("cds-order-select:A", upload["id"], None) in rows and ("cds-order-sign:A", upload["id"], None) in rows


def test_the_ingredient_code_alone_matches(cds, keys):
    client, *_ = cds
    order = medication_request("o1", "32968", "Plavix")  # RxNorm ingredient code of clopidogrel, a brand name
    r = call(client, keys, "order-sign", order_request("order-sign", [order]))
    assert [c["indicator"] for c in r.json()["cards"]] == ["critical"]


def test_codeine_with_paroxetine_on_the_medication_list_is_phenoconverted(cds, keys):
    client, *_ = cds
    codeine = medication_request("codeine-1", *CODEINE)
    plain = call(client, keys, "order-select", order_request("order-select", [codeine]))
    assert plain.status_code == 200 and plain.json() == {"cards": []}  # a normal metabolizer: nothing to say
    active = [dict(medication_request("paroxetine-7", *PAROXETINE), status="active")]
    r = call(client, keys, "order-select", order_request("order-select", [codeine], active=active))
    check_response(r.json())
    (card,) = r.json()["cards"]
    assert card["indicator"] == "critical", card
    assert "CYP2D6 Poor Metabolizer with paroxetine" in card["summary"]
    assert "Phenoconversion: paroxetine is a strong CYP2D6 inhibitor" in card["detail"]
    assert "phenotype from the genotype: Normal Metabolizer" in card["detail"] and "`*1/*1`" in card["detail"]
    # the inhibitor as another draft order of the same session does the same
    drafts = [codeine, medication_request("paroxetine-8", *PAROXETINE)]
    r = call(client, keys, "order-sign", order_request("order-sign", drafts))
    codeine_cards = [c for c in r.json()["cards"] if c["summary"].startswith("Codeine")]
    assert len(codeine_cards) == 1 and codeine_cards[0]["indicator"] == "critical"
    # an inhibitor that has stopped does not count
    stopped = [dict(medication_request("paroxetine-7", *PAROXETINE), status="stopped")]
    r = call(client, keys, "order-select", order_request("order-select", [codeine], active=stopped))
    assert r.json() == {"cards": []}


def test_a_job_stored_without_phenotypes_says_why_phenoconversion_was_not_applied(cds, keys):
    client, store, tokens, upload, data = cds
    from permed.service.store import Job

    with store.session() as s:  # as a job finished before phenotypes were kept
        job = s.scalars(select(Job)).one()
        digests = json.loads(job.results_sha256)
        digests.pop("phenotypes.json")
        job.results_sha256 = json.dumps(digests)
    client.post(f"/api/v1/jobs/{upload['job']['id']}/rerun", headers=bearer(tokens[("lab", "A")]))
    with store.session() as s:  # put the old state back without the new file (the rerun emptied the folder)
        job = s.scalars(select(Job)).one()
        assert job.state == "queued"
    assert run_worker(store, data, once=True) == 1
    with store.session() as s:
        job = s.scalars(select(Job)).one()
        digests = json.loads(job.results_sha256)
        digests.pop("phenotypes.json")
        job.results_sha256 = json.dumps(digests)
    (data / "results" / str(upload["id"]) / "phenotypes.json").unlink()
    app2 = create_app(Settings(data_dir=data, database=None if store.url.startswith("sqlite") else store.url,
                               cds_config=data.parent / "cds.json", limits=Limits(auth_failures=0)))
    client2 = TestClient(app2)
    codeine = medication_request("codeine-1", *CODEINE)
    active = [dict(medication_request("paroxetine-7", *PAROXETINE), status="active")]
    r = call(client2, keys, "order-select", order_request("order-select", [codeine], active=active))
    assert r.json() == {"cards": []}  # the stored advice: standard dosing for a normal metabolizer
    clop = medication_request("c1", *CLOPIDOGREL)
    r = call(client2, keys, "order-select", order_request("order-select", [clop], active=active))
    (card,) = r.json()["cards"]
    assert "Not adjusted for paroxetine" in card["detail"] and "Run" not in card["summary"]


def test_a_drug_without_pgx_relevance_gets_no_card(cds, keys):
    client, *_ = cds
    r = call(client, keys, "order-select",
             order_request("order-select", [medication_request("amox", *AMOXICILLIN)]))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_order_select_advises_on_the_selected_orders_only(cds, keys):
    client, *_ = cds
    orders = [medication_request("amox", *AMOXICILLIN), medication_request("clop", *CLOPIDOGREL)]
    r = call(client, keys, "order-select", order_request("order-select", orders, selections=["MedicationRequest/amox"]))
    assert r.json() == {"cards": []}
    r = call(client, keys, "order-select", order_request("order-select", orders, selections=["MedicationRequest/clop"]))
    assert len(r.json()["cards"]) == 1


def test_patient_view_summary_card(cds, keys):
    client, *_ = cds
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/abc", "patientId": "pgx-1"}}
    r = call(client, keys, "patient-view", body)
    check_response(r.json())
    (card,) = r.json()["cards"]
    assert card["indicator"] == "info" and "need attention" in card["summary"]
    assert "**CYP2C19**: `*2/*2`, Poor Metabolizer" in card["detail"] and "clopidogrel" in card["detail"]
    unknown = call(client, keys, "patient-view", {**body, "context": {"userId": "Practitioner/abc", "patientId": "x"}})
    assert unknown.json() == {"cards": []}


def test_an_unknown_patient_gets_an_empty_card_list(cds, keys):
    client, store, *_ = cds
    r = call(client, keys, "order-select",
             order_request("order-select", [medication_request("c", *CLOPIDOGREL, patient="nobody")], patient="nobody"))
    assert r.status_code == 200 and r.json() == {"cards": []}
    with store.session() as s:
        assert ("cds-order-select:A", None) in s.execute(select(AuditEvent.action, AuditEvent.upload_id)).all()


def test_another_organisations_issuer_cannot_see_the_patient(cds, keys):
    client, store, tokens, upload, _ = cds
    body = order_request("order-select", [medication_request("c", *CLOPIDOGREL)])
    r = call(client, keys, "order-select", body, who="B")  # a valid JWT of EHR B, patient linked in A only
    assert r.status_code == 200 and r.json() == {"cards": []}
    # B links the same patient id to its own upload: B's calls see B's patient, A's still A's
    r = client.post("/api/v1/samples", content=example_text().encode(), headers=bearer(tokens[("lab", "B")]))
    b_upload = r.json()["id"]
    assert client.post(f"/api/v1/samples/{b_upload}/patient-link", json={"patient_id": "pgx-1"},
                       headers=bearer(tokens[("lab", "B")])).status_code == 201
    assert client.post(f"/api/v1/samples/{upload['id']}/patient-link", json={"patient_id": "pgx-2"},
                       headers=bearer(tokens[("lab", "B")])).status_code == 404  # A's upload: not B's to link


@pytest.mark.parametrize("case", ["wrong key", "expired", "wrong aud", "wrong iss", "alg none", "alg HS256",
                                  "missing", "no jti", "garbage", "future iat", "too long"])
def test_a_bad_jwt_is_a_401_without_card_data(cds, keys, case):
    client, store, *_ = cds
    service = SERVICE_IDS["order-select"]
    now = int(time.time())
    token = {
        "wrong key": lambda: sign(keys, "other"),
        "expired": lambda: sign(keys, exp=now - 120, iat=now - 400),
        "wrong aud": lambda: sign(keys, service="permed-pgx-order-sign"),
        "wrong iss": lambda: sign(keys, iss="https://evil.example.org"),
        "alg none": lambda: jwt.encode({"iss": ISS_A, "aud": f"{AUDIENCE}/cds-services/{service}", "exp": now + 60,
                                        "iat": now, "jti": "x"}, None, algorithm="none", headers={"kid": "ehr-a-1"}),
        # the public key as an HMAC secret: the classic confusion attack
        "alg HS256": lambda: jwt.encode({"iss": ISS_A, "aud": f"{AUDIENCE}/cds-services/{service}", "exp": now + 60,
                                         "iat": now, "jti": "y"}, "a-shared-secret-of-at-least-32-bytes!",
                                        algorithm="HS256", headers={"kid": "ehr-a-1"}),
        "missing": lambda: None,
        "no jti": lambda: sign(keys, jti=None),
        "garbage": lambda: "not.a.jwt",
        "future iat": lambda: sign(keys, iat=now + 3600, exp=now + 3900),
        "too long": lambda: sign(keys, exp=now + 7 * 86400),
    }[case]()
    headers = bearer(token) if token else {}
    r = client.post(f"/cds-services/{service}", headers=headers,
                    json=order_request("order-select", [medication_request("c", *CLOPIDOGREL)]))
    assert r.status_code == 401, (case, r.text)
    assert "cards" not in r.json() and r.json()["detail"]
    with store.session() as s:
        refused = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("refused-401 POST /cds-%"))).all()
    assert len(refused) == 1 and (token is None or token not in refused[0])


def test_a_replayed_jwt_is_refused(cds, keys):
    client, *_ = cds
    token = sign(keys)
    body = order_request("order-select", [medication_request("c", *CLOPIDOGREL)])
    first = client.post("/cds-services/permed-pgx-order-select", json=body, headers=bearer(token))
    again = client.post("/cds-services/permed-pgx-order-select", json=body, headers=bearer(token))
    assert first.status_code == 200 and again.status_code == 401 and "replay" in again.json()["detail"]


def test_jwt_failures_count_towards_the_rate_limit(tmp_path, keys):
    (tmp_path / "a.jwks.json").write_text(json.dumps(_jwks(*keys["A"])))
    (tmp_path / "cds.json").write_text(json.dumps({"audience": AUDIENCE, "issuers": [
        {"iss": ISS_A, "organisation": "A", "jwks_file": "a.jwks.json"}]}))
    app = create_app(Settings(data_dir=tmp_path / "data", cds_config=tmp_path / "cds.json",
                              limits=Limits(auth_failures=3)))
    client = TestClient(app)
    body = order_request("order-select", [medication_request("c", *CLOPIDOGREL)])
    codes = [client.post("/cds-services/permed-pgx-order-select", json=body,
                         headers=bearer(sign(keys, "other"))).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    good = client.post("/cds-services/permed-pgx-order-select", json=body, headers=bearer(sign(keys)))
    assert good.status_code == 429  # while blocked, not even a good JWT is looked at


def test_bodies_are_limited_and_read_only_after_the_jwt(cds, keys):
    client, *_ = cds
    big = {"hook": "order-select", "padding": "x" * (1024 * 1024 + 10)}
    r = client.post("/cds-services/permed-pgx-order-select", json=big, headers=bearer(sign(keys)))
    assert r.status_code == 413
    r = client.post("/cds-services/permed-pgx-order-select", json=big)
    assert r.status_code == 401  # no JWT: refused before the body


def test_cors_preflight_and_answers_only_for_configured_origins(cds, keys):
    client, *_ = cds
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    ok = client.options("/cds-services/permed-pgx-order-select", headers={"Origin": ORIGIN_A, **pre})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ORIGIN_A
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "authorization" in ok.headers["access-control-allow-headers"]
    other = client.options("/cds-services/permed-pgx-order-select", headers={"Origin": "https://evil.example", **pre})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    disc = client.get("/cds-services", headers={"Origin": ORIGIN_A})
    assert disc.headers["access-control-allow-origin"] == ORIGIN_A and disc.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in client.get("/cds-services", headers={"Origin": "https://evil.example"}
                                                           ).headers
    r = call(client, keys, "order-select", order_request("order-select", [medication_request("c", *CLOPIDOGREL)]),
             Origin=ORIGIN_A)
    assert r.headers["access-control-allow-origin"] == ORIGIN_A and r.headers["cache-control"] == "no-store"


def test_the_fhir_access_token_is_neither_logged_nor_stored(cds, keys, caplog):
    client, store, tokens, upload, data = cds
    with caplog.at_level(logging.DEBUG):
        body = order_request("order-sign", [medication_request("c", *CLOPIDOGREL)])
        assert call(client, keys, "order-sign", body).status_code == 200
        broken = copy.deepcopy(body)
        broken["context"]["patientId"] = "not a fhir id!"
        assert call(client, keys, "order-sign", broken).status_code == 400
    assert SECRET_FHIR_TOKEN not in caplog.text
    with store.session() as s:
        stored = " ".join(f"{a} {c}" for a, c in s.execute(select(AuditEvent.action, AuditEvent.client)))
    assert SECRET_FHIR_TOKEN not in stored and "eyJ" not in stored  # nor any JWT
    for path in data.rglob("*"):
        if path.is_file():
            assert SECRET_FHIR_TOKEN.encode() not in path.read_bytes(), path


def test_without_a_configuration_the_cds_routes_are_404(tmp_path, keys):
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data")))
    for method, path in (("GET", "/cds-services"), ("POST", "/cds-services/permed-pgx-order-select"),
                         ("OPTIONS", "/cds-services")):
        r = client.request(method, path, headers=bearer(sign(keys)))
        assert r.status_code == 404 and "not configured" in r.json()["detail"], (method, path)


def test_a_bad_configuration_is_one_line(tmp_path):
    from permed.errors import ConfigurationError

    (tmp_path / "cds.json").write_text(json.dumps({"issuers": [{"iss": "x", "organisation": "A",
                                                                "jwks_url": "http://ehr.example.org/jwks"}]}))
    with pytest.raises(ConfigurationError, match="jwks_url must be https"):
        create_app(Settings(data_dir=tmp_path / "data", cds_config=tmp_path / "cds.json"))
    (tmp_path / "cds.json").write_text(json.dumps({"issuers": [{"iss": "x", "organisation": "A",
                                                                "jwks_file": "x.json", "origins": ["*"]}]}))
    with pytest.raises(ConfigurationError, match="no wildcard"):
        create_app(Settings(data_dir=tmp_path / "data", cds_config=tmp_path / "cds.json"))


def test_patient_link_roles_and_rules(cds):
    client, store, tokens, upload, _ = cds
    url = f"/api/v1/samples/{upload['id']}/patient-link"
    r = client.post(url, json={"patient_id": "p-9"}, headers=bearer(tokens[("clinician", "A")]))
    assert r.status_code == 403
    r = client.post(url, json={"patient_id": "p-9", "sample": "EXAMPLE-PATIENT"}, headers=bearer(tokens[("lab", "A")]))
    assert r.status_code == 201 and r.json()["sample"] == "EXAMPLE-PATIENT"
    link_id = r.json()["id"]
    again = client.post(url, json={"patient_id": "p-9"}, headers=bearer(tokens[("lab", "A")]))
    assert again.status_code == 200 and again.json()["id"] == link_id  # the same link: kept
    bad = client.post(url, json={"patient_id": "p 9"}, headers=bearer(tokens[("lab", "A")]))
    assert bad.status_code == 422
    wrong = client.post(url, json={"patient_id": "p-10", "sample": "NOBODY"}, headers=bearer(tokens[("lab", "A")]))
    assert wrong.status_code == 422 and "no sample of that name" in wrong.json()["detail"]
    admin = client.post(url, json={"patient_id": "p-11"}, headers=bearer(tokens[("admin", None)]))
    assert admin.status_code == 201
    # a patient id linked in the organisation already: refused (the lab deletes the old link first)
    r = client.post("/api/v1/samples", content=example_text().encode(),
                    headers={**bearer(tokens[("lab", "A")]), "X-Medications": "codeine"})
    second = r.json()["id"]
    clash = client.post(f"/api/v1/samples/{second}/patient-link", json={"patient_id": "p-9"},
                        headers=bearer(tokens[("lab", "A")]))
    assert clash.status_code == 409 and f"link {link_id}" in clash.json()["detail"]
    listed = client.get(url, headers=bearer(tokens[("clinician", "A")]))
    assert listed.status_code == 200 and {x["patient_id"] for x in listed.json()} == {"pgx-1", "p-9", "p-11"}
    assert client.get(url, headers=bearer(tokens[("clinician", "B")])).status_code == 404
    assert client.delete(f"{url}/{link_id}", headers=bearer(tokens[("clinician", "A")])).status_code == 403
    assert client.delete(f"{url}/{link_id}", headers=bearer(tokens[("lab", "B")])).status_code == 404
    assert client.delete(f"{url}/{link_id}", headers=bearer(tokens[("lab", "A")])).json() == {"id": link_id,
                                                                                             "deleted": True}
    moved = client.post(f"/api/v1/samples/{second}/patient-link", json={"patient_id": "p-9"},
                        headers=bearer(tokens[("lab", "A")]))
    assert moved.status_code == 201
    with store.session() as s:
        actions = set(s.scalars(select(AuditEvent.action)))
    assert {f"patient-link:{link_id}", f"patient-unlink:{link_id}", "patient-link-list"} <= actions
    assert not any("p-9" in a for a in actions)  # patient ids are not written to the audit log


def test_serve_refuses_an_unusable_cds_config_in_one_line(tmp_path):
    from helpers import cli

    bad = tmp_path / "cds.json"
    bad.write_text('{"issuers": 3}', encoding="utf-8")
    for path, words in ((bad, "issuers"), (tmp_path / "absent.json", "cannot be read")):
        run = cli("serve", "--data-dir", tmp_path / "data", "--cds-config", path, "--port", "1")
        assert run.returncode == 64 and f"--cds-config {path}" in run.stderr and words in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
