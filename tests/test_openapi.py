"""docs/openapi.yaml describes every JSON endpoint, is served, and the live gateway keeps to it
(schemathesis, bounded examples, with a staff token and an admin token)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from tests.stack import LiveGateway

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
# a tus PATCH body is raw bytes, like application/octet-stream
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
schema = schemathesis.openapi.from_path(DOCUMENT)


def _template(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_route_is_described(app) -> None:
    import yaml

    described = yaml.safe_load(DOCUMENT.read_text())["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        path = _template(rule.rule)
        if not (path.startswith("/api/") or path in ("/healthz", "/readyz")):
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"options"}
        if path not in described:
            missing.append(f"{sorted(methods)} {path}")
            continue
        missing += [f"{m} {path}" for m in methods - {"head"} if m not in described[path]]
    assert missing == []


def test_the_document_is_served(live: LiveGateway) -> None:
    resp = requests.get(f"{live.url}/api/v1/openapi.yaml", timeout=10)
    assert resp.status_code == 200
    assert resp.text == DOCUMENT.read_text(encoding="utf-8")


#: Checks left out, and why: an object path's rules (categories, segments, look-alike names)
#: are richer than a schema can say, so a schema-valid path may rightly be refused with 400
#: (positive data); tus answers a missing or wrong Tus-Resumable with 412, by its own protocol
#: (negative data, missing header); and ``PUT /api/v1/files/x/move`` is a PUT of the object
#: ``x/move``, so the move endpoint's URL also allows the object's methods (unsupported
#: method, Allow header).
EXCLUDED = [positive_data_acceptance, negative_data_rejection, missing_required_header,
            unsupported_method, allow_header_conformance]


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_gateway_keeps_to_its_description(case, live: LiveGateway) -> None:
    for who in ("staff1", "admin1"):
        case.call_and_validate(base_url=live.url, excluded_checks=EXCLUDED,
                               headers={"Authorization": f"Bearer {live.stack.users[who].token}"})
