"""The published OpenAPI document tells the truth: schemathesis over every operation of the app, in process.

Bounded (``max_examples`` per operation, derandomized: the same cases on every run) on the small
simulated world of ``test_api``, with a full-access API key so the writes are exercised too. Every
answer must be: no 5xx, a documented status code, a documented content type, a body that matches
the response schema of that status. ``test_api_fuzz.py`` throws hostile bodies at a few routes;
this file walks the whole published surface from the schema itself.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

import test_api as api
from liveshelf.serving.app import create_app
from liveshelf.serving.settings import ServeSettings
from test_api import AUTH

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the 'dev' extra")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

world_template = api.world_template

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(METHOD, path, mode) of every published operation (the spec only: no services are started);
    negative cases (input that breaks the schema) only where the operation takes input."""
    spec = create_app(ServeSettings(home=tempfile.gettempdir())).openapi()
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            out.append((method.upper(), path, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((method.upper(), path, GenerationMode.NEGATIVE))
    return out


def _awaiting_docs() -> dict[tuple[str, str, GenerationMode], str]:
    """Operations of routes/health.py and routes/events.py still without their ``responses=`` (those
    files are another change's): expected to fail until they are documented, then run like the rest."""
    spec = create_app(ServeSettings(home=tempfile.gettempdir())).openapi()["paths"]
    out = {}
    if "text/plain" not in spec["/metrics"]["get"]["responses"]["200"].get("content", {}):
        out[("GET", "/metrics", GenerationMode.POSITIVE)] = "text/plain body documented as JSON"
    if "401" not in spec["/v1/events"]["post"]["responses"]:
        out[("POST", "/v1/events", GenerationMode.NEGATIVE)] = "its error answers are not documented"
    return out


AWAITING_DOCS = _awaiting_docs()
OPERATIONS = [
    pytest.param(
        m,
        p,
        g,
        id=f"{m} {p} {g}",
        marks=[pytest.mark.xfail(reason=AWAITING_DOCS[(m, p, g)], strict=True)]
        if (m, p, g) in AWAITING_DOCS
        else [],
    )
    for m, p, g in _operations()
]


@pytest.fixture(scope="module")
def api_schema(world_template, tmp_path_factory):
    template, _ = world_template
    home = tmp_path_factory.mktemp("schema") / "home"
    shutil.copytree(template, home)
    app = create_app(api.make_settings(home, "memory", "schema:", log_exposures=False))
    with TestClient(app):  # runs the lifespan: the services stay up while schemathesis calls the app
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("method,path,mode", OPERATIONS)
def test_every_operation_answers_as_documented(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    check()
