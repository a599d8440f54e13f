"""The file app's API over HTTP against the real gateway: pages, search, sort, folders, move,
the trash and earlier versions."""
from __future__ import annotations

import json

import requests
from sqlalchemy import select

from gateway.db.models import AuditEvent, StoredObject
from tests.stack import LiveGateway

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


def auth(live: LiveGateway, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}"}


def put(live: LiveGateway, who: str, path: str, data: bytes, **params: str) -> requests.Response:
    return requests.put(f"{live.url}/api/v1/files/{path}", data=data, headers=auth(live, who),
                        params=params, timeout=30)


def api(live: LiveGateway, method: str, who: str, url: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{live.url}/api/v1/{url}", headers=auth(live, who),
                            timeout=30, **kwargs)


def listing(live: LiveGateway, who: str = "staff1", **params: str) -> dict:
    resp = api(live, "GET", who, "files", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def last_event(live: LiveGateway, action: str) -> AuditEvent:
    with live.stack.services.sessions() as s:
        return s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                         .order_by(AuditEvent.id.desc())).first()


def test_search_sort_and_pages(live: LiveGateway) -> None:
    for i in range(25):
        name = f"Wound_{i:02d}.pdf" if i % 2 else f"scan-{i:02d}.pdf"
        assert put(live, "staff1", f"documents/ward7/bed{i % 3}/{name}",
                   PDF + b"x" * (100 * i)).status_code == 201
    found = listing(live, prefix="documents/ward7/", q="wound_")["objects"]
    assert len(found) == 12 and all("Wound_" in o["path"] for o in found)
    assert listing(live, prefix="documents/ward7/", q="%")["objects"] == []  # escaped
    assert listing(live, q="WOUND_03")["objects"][0]["path"].endswith("Wound_03.pdf")
    by_size = listing(live, prefix="documents/ward7/", sort="size", order="desc")["objects"]
    sizes = [o["size"] for o in by_size]
    assert sizes == sorted(sizes, reverse=True)
    seen, cursor = [], None
    while True:
        params = {"prefix": "documents/ward7/", "sort": "name", "limit": "10"}
        if cursor:
            params["cursor"] = cursor
        page = listing(live, **params)
        seen += [o["path"] for o in page["objects"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == 25 == len(set(seen))
    names = [p.rsplit("/", 1)[-1].casefold() for p in seen]
    assert names == sorted(names)
    direct = listing(live, prefix="documents/ward7/bed1/", delimiter="/")["objects"]
    assert direct and all(o["path"].count("/") == 3 for o in direct)
    bad = api(live, "GET", "staff1", "files", params={"cursor": "!!"})
    assert bad.status_code == 400
    assert api(live, "GET", "staff1", "files", params={"sort": "colour"}).status_code == 400


def test_prefix_is_case_sensitive(live: LiveGateway) -> None:
    assert put(live, "staff1", "uploads/forms/cs/a.pdf", PDF).status_code == 201
    assert listing(live, prefix="uploads/FORMS/")["objects"] == []
    assert listing(live, prefix="uploads/forms/cs/")["objects"]


def test_folders_with_counts(live: LiveGateway) -> None:
    for path in ("templates/f/a/1.pdf", "templates/f/a/2.pdf", "templates/f/b/3.pdf"):
        assert put(live, "staff1", path, PDF).status_code == 201
    top = api(live, "GET", "staff1", "folders").json()["folders"]
    assert {f["name"] for f in top} >= {"uploads", "documents", "signatures", "templates"}
    sub = api(live, "GET", "staff1", "folders", params={"prefix": "templates/f/"}).json()
    assert sub["folders"] == [{"name": "a", "prefix": "templates/f/a/", "count": 2},
                              {"name": "b", "prefix": "templates/f/b/", "count": 1}]
    other = api(live, "GET", "staff2", "folders", params={"prefix": "templates/f/"}).json()
    assert other["folders"] == []  # another organisation sees none of it


def test_move_is_metadata_only_and_audited(live: LiveGateway) -> None:
    data = PDF + b"move me" * 1000
    created = put(live, "staff1", "uploads/mv/old-name.pdf", data).json()
    with live.stack.services.sessions() as s:
        key_before = s.get(StoredObject, created["id"]).s3_key
    assert api(live, "POST", "staff1b", "files/uploads/mv/old-name.pdf/move",
               json={"to": "uploads/mv/x.pdf"}).status_code == 403
    resp = api(live, "POST", "staff1", "files/uploads/mv/old-name.pdf/move",
               json={"to": "uploads/mv2/new-name.pdf"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == created["id"] and resp.json()["path"] == "uploads/mv2/new-name.pdf"
    with live.stack.services.sessions() as s:
        assert s.get(StoredObject, created["id"]).s3_key == key_before  # the bytes stayed
    got = requests.get(f"{live.url}/api/v1/files/uploads/mv2/new-name.pdf",
                       headers=auth(live, "staff1"), timeout=30)
    assert got.content == data
    assert requests.get(f"{live.url}/api/v1/files/uploads/mv/old-name.pdf",
                        headers=auth(live, "staff1"), timeout=30).status_code == 404
    event = last_event(live, "move")
    assert json.loads(event.detail) == {"from": "uploads/mv/old-name.pdf",
                                        "to": "uploads/mv2/new-name.pdf"}
    assert put(live, "staff1", "uploads/mv2/taken.pdf", PDF).status_code == 201
    taken = api(live, "POST", "staff1", "files/uploads/mv2/new-name.pdf/move",
                json={"to": "uploads/mv2/taken.pdf"})
    assert taken.status_code == 409
    assert api(live, "POST", "staff1", "files/uploads/mv2/new-name.pdf/move",
               json={"to": "../escape.pdf"}).status_code == 400
    assert api(live, "POST", "staff2", "files/uploads/mv2/new-name.pdf/move",
               json={"to": "uploads/theirs.pdf"}).status_code == 404


def test_trash_and_restore(live: LiveGateway) -> None:
    created = put(live, "staff1", "uploads/tr/report.pdf", PDF + b"1").json()
    assert api(live, "DELETE", "staff1", "files/uploads/tr/report.pdf").status_code == 204
    mine = [o["id"] for o in api(live, "GET", "staff1", "trash").json()["objects"]]
    assert created["id"] in mine
    assert created["id"] not in [o["id"] for o in api(live, "GET", "staff1b", "trash").json()["objects"]]
    assert created["id"] in [o["id"] for o in api(live, "GET", "admin1", "trash").json()["objects"]]
    assert created["id"] not in [o["id"] for o in api(live, "GET", "admin2", "trash").json()["objects"]]
    assert api(live, "POST", "staff2", f"trash/{created['id']}/restore").status_code == 404
    back = api(live, "POST", "staff1", f"trash/{created['id']}/restore")
    assert back.status_code == 200 and back.json()["path"] == "uploads/tr/report.pdf"
    assert last_event(live, "restore").object_id == created["id"]
    assert api(live, "DELETE", "staff1", "files/uploads/tr/report.pdf").status_code == 204
    assert put(live, "staff1", "uploads/tr/report.pdf", PDF + b"2").status_code == 201
    assert api(live, "POST", "staff1", f"trash/{created['id']}/restore").status_code == 409


def test_versions_kept_on_overwrite_and_restored(live: LiveGateway) -> None:
    first = put(live, "staff1", "uploads/ver/letter.pdf", PDF + b"first").json()
    second = put(live, "staff1", "uploads/ver/letter.pdf", PDF + b"second", overwrite="true").json()
    versions = api(live, "GET", "staff1", "files/uploads/ver/letter.pdf/versions").json()["objects"]
    assert [v["id"] for v in versions] == [first["id"]]
    assert first["id"] not in [o["id"] for o in api(live, "GET", "staff1", "trash").json()["objects"]]
    resp = api(live, "POST", "staff1", f"files/uploads/ver/letter.pdf/versions/{first['id']}/restore")
    assert resp.status_code == 200 and resp.json()["id"] == first["id"]
    got = requests.get(f"{live.url}/api/v1/files/uploads/ver/letter.pdf",
                       headers=auth(live, "staff1"), timeout=30)
    assert got.content == PDF + b"first"
    versions = api(live, "GET", "staff1", "files/uploads/ver/letter.pdf/versions").json()["objects"]
    assert [v["id"] for v in versions] == [second["id"]]
    assert api(live, "POST", "staff1",
               "files/uploads/ver/letter.pdf/versions/nope/restore").status_code == 404
