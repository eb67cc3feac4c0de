"""Schemathesis against the service's own OpenAPI spec: generated requests to every operation (valid and
invalid parameters, random upload bodies) never get a 5xx, and without a valid token every protected
route answers 401. The store holds one finished sample so report and advice routes reach real data."""

from __future__ import annotations

import pytest
import schemathesis
from helpers import example_text
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from permed.service.app import Settings, create_app
from permed.service.tokens import create_token
from permed.service.worker import run_worker

OPEN = {"/api/v1/health"}


@pytest.fixture(scope="module")
def service_app(tmp_path_factory):
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    app = create_app(Settings(data_dir=data, max_upload=500_000))
    lab = create_token(app.state.store, "lab")[1]
    r = TestClient(app).post("/api/v1/samples", content=example_text().encode(),
                             headers={"Authorization": f"Bearer {lab}", "X-Filename": "example.vcf",
                                      "X-Medications": "clopidogrel"})
    assert r.status_code == 201 and r.json()["id"] == 1
    assert run_worker(app.state.store, data, once=True) == 1
    return app


def test_no_server_errors_and_tokens_required(service_app):
    # schemathesis' pytest plugin (from_fixture) does not run under pytest 9: drive its strategies directly
    schema = schemathesis.openapi.from_asgi("/openapi.json", service_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # a fresh admin token per example: a generated DELETE /tokens/{id} may revoke the previous one
            admin = create_token(service_app.state.store, "admin")[1]
            response = case.call(headers={"Authorization": f"Bearer {admin}"})
            case.validate_response(response, checks=[not_a_server_error])
            anonymous = case.call(headers={"Authorization": ""})
            expected = 200 if case.path in OPEN else 401
            assert anonymous.status_code == expected, (case.method, case.path, anonymous.status_code)

        check()
