"""No existence oracle across organisations: another clinic's path or object id answers, and is
audited in the requester's trail, exactly like one that does not exist.

The requester's trail is read as their own auditor reads it, through the audit API; the rows
of a probe of another organisation's object and of a missing one must be the same apart from
the time, the request id, the chain position and the path or id probed.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
import requests

from gateway.audit import query
from gateway.files import NotFound
from gateway.principal import Actor
from tests.stack import LiveGateway, Stack

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(4000)
HELD = "uploads/JohnDoe_1970/hiv_result.pdf"  # held by Clinic One
MISSING = "uploads/JaneRoe_1971/hiv_result.pdf"  # held by nobody (same length)
#: what may differ between the two probes' rows (besides the probed path or id)
VARYING = {"occurred_at", "request_id", "seq", "prev_hash", "row_hash"}


def _auth(live: LiveGateway, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}"}


def _probes(live: LiveGateway) -> dict[str, Callable[[str, str], requests.Response]]:
    url = live.url + "/api/v1"

    def files(method: str, **kw: Any) -> Callable[[str, str], requests.Response]:
        def probe(who: str, path: str) -> requests.Response:
            headers = {**_auth(live, who), **kw.get("headers", {})}
            return requests.request(method, f"{url}/files/{path}", headers=headers,
                                    params=kw.get("params"), timeout=30)
        return probe

    def link(who: str, path: str) -> requests.Response:
        return requests.post(f"{url}/links", json={"path": path, "method": "GET"},
                             headers=_auth(live, who), timeout=30)

    return {
        "GET": files("GET"),
        "GET download": files("GET", params={"download": "1"}),
        "HEAD": files("HEAD"),
        "GET range": files("GET", headers={"Range": "bytes=0-99"}),
        "HEAD range": files("HEAD", headers={"Range": "bytes=10-"}),
        "DELETE": files("DELETE"),
        "link": link,
    }


def _trail(live: LiveGateway, auditor: str, resp: requests.Response) -> list[dict[str, Any]]:
    """The rows one request left in the organisation's trail, as its auditor reads them."""
    rid = resp.headers["X-Request-Id"]
    events, after = [], None
    while True:
        params = {"order": "asc", "limit": "1000", **({"after": str(after)} if after else {})}
        page = requests.get(f"{live.url}/api/v1/audit", params=params,
                            headers=_auth(live, auditor), timeout=30)
        assert page.status_code == 200, page.text
        events += [e for e in page.json()["events"] if e["request_id"] == rid]
        after = page.json()["next"]
        if after is None:
            return events


def _blind(value: Any, probed: str) -> Any:
    if isinstance(value, dict):
        return {k: _blind(v, probed) for k, v in value.items()}
    return "<probed>" if value == probed else value


def _normalised(events: list[dict[str, Any]], probed: str) -> list[dict[str, Any]]:
    return [_blind({k: v for k, v in e.items() if k not in VARYING}, probed) for e in events]


def _answer(resp: requests.Response, probed: str) -> tuple[int, str, dict[str, str]]:
    headers = {k: v for k, v in resp.headers.items()
               if k.lower() not in ("date", "x-request-id", "content-length")}
    return resp.status_code, resp.text.replace(probed, "<probed>"), headers


@pytest.mark.parametrize("who,auditor", [("admin2", "auditor2"), ("staff2", "auditor2"),
                                         ("auditor2", "auditor2")])
def test_a_foreign_path_and_a_missing_one_leave_the_same_trail(live: LiveGateway, who: str,
                                                               auditor: str) -> None:
    put = requests.put(f"{live.url}/api/v1/files/{HELD}", data=PDF, headers=_auth(live, "staff1"),
                       timeout=30)
    assert put.status_code in (201, 409), put.text
    for name, probe in _probes(live).items():
        held = probe(who, HELD)
        missing = probe(who, MISSING)
        assert held.status_code in (403, 404), (name, held.status_code)
        assert _answer(held, HELD) == _answer(missing, MISSING), name
        held_rows, missing_rows = _trail(live, auditor, held), _trail(live, auditor, missing)
        assert len(held_rows) == 1, f"{name}: {held_rows}"
        assert _normalised(held_rows, HELD) == _normalised(missing_rows, MISSING), name
        assert held_rows[0]["outcome"] == "denied", name
        assert held_rows[0]["http_status"] == held.status_code, name
    # Clinic One's object is untouched by all of it
    got = requests.get(f"{live.url}/api/v1/files/{HELD}", headers=_auth(live, "staff1"),
                       timeout=30)
    assert got.status_code == 200 and got.content == PDF


def test_a_foreign_object_id_and_a_missing_one_leave_the_same_trail(live: LiveGateway) -> None:
    """The audit history of an object id (``/api/v1/audit/objects/ID``)."""
    held = requests.put(f"{live.url}/api/v1/files/uploads/ids/held.pdf", data=PDF,
                        headers=_auth(live, "staff1"), timeout=30).json()["id"]
    unknown = "f" * len(held)
    answers, trails = [], []
    for probed in (held, unknown):
        resp = requests.get(f"{live.url}/api/v1/audit/objects/{probed}",
                            headers=_auth(live, "auditor2"), timeout=30)
        assert resp.status_code == 200 and resp.json()["events"] == []
        answers.append(_answer(resp, probed))
        trails.append(_normalised(_trail(live, "auditor2", resp), probed))
    assert answers[0] == answers[1]
    assert trails[0] == trails[1] and [r["action"] for r in trails[0]] == ["audit_query"]


def _actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role,
                 request_id="probe")


def test_an_object_id_of_another_organisation_is_refused_like_a_missing_one(stack: Stack) -> None:
    """What a link resolves (:meth:`ObjectService.get_by_id`): the same row for an id held by
    another organisation, a deleted one and one that never existed."""
    objects = stack.services.objects
    held = objects.upload(_actor(stack, "staff1"), "uploads/by-id/a.pdf", [PDF]).id
    gone = objects.upload(_actor(stack, "staff2"), "uploads/by-id/b.pdf", [PDF]).id
    objects.delete(_actor(stack, "staff2"), "uploads/by-id/b.pdf")
    rows = []
    for probed in (held, gone, "0" * 32):
        with pytest.raises(NotFound):
            objects.get_by_id(_actor(stack, "staff2"), probed, "link_used")
        with stack.services.sessions() as s:
            last = query(s, org_id=stack.org2, descending=True, limit=1)[0]
        fields = {k: getattr(last, k) for k in ("action", "outcome", "http_status", "object_id",
                                                "object_path", "user_id", "role")}
        fields["detail"] = last.detail.replace(probed, "<probed>")
        rows.append(fields)
    assert rows[0] == rows[1] == rows[2]
    assert rows[0]["outcome"] == "denied" and rows[0]["http_status"] == 404
