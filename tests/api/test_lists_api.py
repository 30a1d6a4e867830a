"""/api/lists mirrors `taskledger lists`: load, status, start, pause, resume, stop, skip,
requeue, against real workers. Lists name files on the server, so only admins may."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from tests.support import list_tasks  # noqa: F401 - registers tl.item in this process
from tests.support.services import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.md"
    path.write_text(
        textwrap.dedent(
            """\
            # Plan
            - [ ] [P1] L-1: first
            - [ ] [P2] L-2: second (depends: L-1)
            - [ ] [P3] L-3: third
            """
        )
    )
    return path


def test_lists_endpoints_mirror_the_cli(
    cluster: Cluster, admin: httpx.Client, alice: httpx.Client, tmp_path: Path, counter
) -> None:
    path = _file(tmp_path)
    assert alice.get("/api/lists").status_code == 403  # files on the server: admins only

    counter.set("sleep:L-1", 1.0)
    loaded = admin.post("/api/lists", json={"path": str(path), "handler": "tl.item"})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["created"] and loaded.json()["total"] == 3

    # any spelling of the path names the same list
    odd = f"{tmp_path}/../{tmp_path.name}/plan.md"
    assert admin.post("/api/lists/start", params={"path": odd}).status_code == 200
    paused = admin.post("/api/lists/pause", params={"path": str(path)})
    assert paused.status_code == 200 and "pause" in paused.json()["message"]
    assert admin.get("/api/lists/status", params={"path": str(path)}).json()["status"] == "paused"
    assert admin.post("/api/lists/skip", params={"path": str(path), "item_id": "L-3"}).is_success
    assert admin.post("/api/lists/resume", params={"path": str(path)}).is_success

    def done() -> dict | None:
        body = admin.get("/api/lists/status", params={"path": str(path)}).json()
        return body if body["counts"]["running"] + body["counts"]["waiting"] == 0 else None

    final = wait_for(done, 60, "the list to finish")
    states = {i["item_id"]: (i["state"], i["priority"]) for i in final["items"]}
    assert states == {
        "L-1": ("completed", "P1"),
        "L-2": ("completed", "P2"),
        "L-3": ("skipped", "P3"),
    }
    assert final["counts"]["completed"] == 2 and final["counts"]["skipped"] == 1
    assert [row["path"] for row in admin.get("/api/lists").json()] == [str(path.resolve())]

    requeued = admin.post("/api/lists/requeue", params={"path": str(path), "item_id": "L-3"})
    assert requeued.status_code == 200, requeued.text
    # the list had finished: a requeued item runs once the list is started again
    assert admin.post("/api/lists/start", params={"path": str(path)}).is_success
    wait_for(
        lambda: (
            {i["item_id"]: i["state"] for i in done()["items"]}.get("L-3") == "completed"
            if done()
            else False
        ),
        60,
        "the requeued item to run",
    )


def test_bad_list_requests_are_4xx_and_write_nothing(admin: httpx.Client, tmp_path: Path) -> None:
    missing = admin.post(
        "/api/lists", json={"path": str(tmp_path / "nope.md"), "handler": "tl.item"}
    )
    assert missing.status_code == 422 and "no such file" in missing.json()["detail"]
    path = _file(tmp_path)
    unknown = admin.post("/api/lists", json={"path": str(path), "handler": "no.such.task"})
    assert unknown.status_code in (400, 404, 422) and unknown.json()["error"]
    not_loaded = admin.get("/api/lists/status", params={"path": str(path)})
    assert not_loaded.status_code == 404
    assert (
        admin.post("/api/lists/skip", params={"path": str(path), "item_id": "L-1"}).status_code
        == 404
    )
    # '~user' of no such user, as schemathesis once sent it: a 422, never a 500
    for route in ("/api/lists/start", "/api/lists/status"):
        method = admin.post if route.endswith("start") else admin.get
        odd = method(route, params={"path": "~no-such-user-\u00df/plan.md"})
        assert odd.status_code == 422 and "not a usable task list path" in odd.text, odd.text
    loaded = admin.post("/api/lists", json={"path": "~no-such-user-x/p.md", "handler": "tl.item"})
    assert loaded.status_code == 422, loaded.text
    assert admin.get("/api/lists").json() == []
