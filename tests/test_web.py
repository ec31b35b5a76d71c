"""The REST API (``flowyml-sched serve``): the page's endpoints with flowyml's request shapes,
ours, status codes, tokens, and schemathesis over every operation. Real stores (SQLite and
PostgreSQL, from conftest.py) behind FastAPI's TestClient."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from typer.testing import CliRunner

from flowyml_sched import web
from flowyml_sched.application import Scheduler
from flowyml_sched.cli import app as cli_app
from flowyml_sched.store import ScheduleStore, open_store

ADMIN, READ = "admin-token-1", "read-token-2"
TOKENS = web.Tokens(admin=(ADMIN,), read=(READ,))
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_READER = {"Authorization": f"Bearer {READ}"}
FLOWYML_DAILY: dict[str, Any] = web.NewSchedule.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
"""flowyml's create body, the OpenAPI document's first example (so the example is tested too)."""


@pytest.fixture
def client(store: ScheduleStore, store_url: str) -> Iterator[TestClient]:
    app = web.create_app(lambda: Scheduler(open_store(store_url), source="api"), TOKENS)
    with TestClient(app) as opened:
        yield opened


def test_the_pages_six_endpoints_work_with_flowymls_request_shapes(client: TestClient) -> None:
    created = client.post("/api/schedules", json=FLOWYML_DAILY, headers=AS_ADMIN)
    assert created.status_code == 201, created.text
    assert (created.json()["kind"], created.json()["expression"], created.json()["timezone"]) == (
        "daily",
        "02:30",
        "Europe/Berlin",
    )
    for kind, extra, expression in (
        ("hourly", {"minute": 15}, "15"),
        ("interval", {"interval_seconds": 5400}, "1h30m"),
        ("cron", {"cron_expression": "0 9 * * 1-5"}, "0 9 * * 1-5"),
    ):
        body = {"name": f"by-{kind}", "pipeline_name": "etl.jobs:run", "schedule_type": kind, **extra}
        made = client.post("/api/schedules", json=body, headers=AS_ADMIN)
        assert (made.status_code, made.json()["expression"]) == (201, expression)

    listed = client.get("/api/schedules", headers=AS_READER).json()
    assert [s["name"] for s in listed] == ["by-cron", "by-hourly", "by-interval", "daily_etl_job"]
    assert client.post("/api/schedules/daily_etl_job/disable", headers=AS_ADMIN).json()["status"] == "paused"
    assert client.post("/api/schedules/daily_etl_job/enable", headers=AS_ADMIN).json()["status"] == "enabled"
    health = client.get("/api/scheduler/health", headers=AS_READER)
    assert health.status_code == 200 and health.json()["status"] == "down"  # schedules, no worker
    assert client.get("/api/schedules/health", headers=AS_READER).json()["status"] == "down"
    assert client.delete("/api/schedules/daily_etl_job", headers=AS_ADMIN).status_code == 204
    assert client.delete("/api/schedules/daily_etl_job", headers=AS_ADMIN).status_code == 404


def test_our_endpoints_show_edit_pause_with_a_note_preview_run_and_list_history(client: TestClient) -> None:
    body = {"name": "report", "pipeline": "etl.jobs:run", "cron": "0 9 * * 1-5", "exclude": {"dates": ["2030-01-02"]}}
    assert client.post("/api/schedules", json=body, headers=AS_ADMIN).status_code == 201

    shown = client.get("/api/schedules/report", headers=AS_READER).json()
    assert (
        shown["exclusions"] == {"dates": ["2030-01-02"], "on_excluded": "skip"} and len(shown["next_fire_times"]) == 10
    )
    edited = client.patch("/api/schedules/report", json={"timeout": "30m", "params": {"day": 1}}, headers=AS_ADMIN)
    assert (edited.json()["timeout_seconds"], edited.json()["params"]) == (1800.0, {"day": 1})
    paused = client.post("/api/schedules/report/pause", json={"note": "upstream down"}, headers=AS_ADMIN).json()
    assert (paused["status"], paused["pause_note"], paused["changed"]) == ("paused", "upstream down", True)
    assert client.post("/api/schedules/report/resume", headers=AS_ADMIN).json()["changed"] is True
    fires = client.get("/api/schedules/report/next", params={"count": 3}, headers=AS_READER).json()
    assert len(fires) == 3 and all(f["fire_time"].endswith("+00:00") for f in fires)
    asked = client.post("/api/schedules/report/run", json={"params": {"day": 2}}, headers=AS_ADMIN)
    assert asked.status_code == 202 and (asked.json()["status"], asked.json()["origin"]) == ("pending", "manual")
    history = client.get("/api/schedules/report/history", params={"limit": 5}, headers=AS_READER).json()
    assert [(r["status"], r["params"]) for r in history] == [("pending", {"day": 2})]
    assert client.get("/api/schedules/report/history", params={"status": "failed"}, headers=AS_READER).json() == []
    assert client.get("/api/workers", headers=AS_READER).json() == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "said"),
    [
        ("post", "/api/schedules", FLOWYML_DAILY, 409, "already exists"),
        (
            "post",
            "/api/schedules",
            FLOWYML_DAILY | {"name": "b", "timezone": "Europe/Berln"},
            422,
            "did you mean Europe/Berlin",
        ),
        ("post", "/api/schedules", {"name": "c", "pipeline": "etl.jobs:run", "cron": "61 * * * *"}, 422, "minute"),
        (
            "post",
            "/api/schedules",
            {"name": "d", "pipeline_name": "etl.jobs:run", "schedule_type": "daily", "hour": 25},
            422,
            "hour",
        ),
        (
            "post",
            "/api/schedules",
            {"name": "e", "pipeline_name": "etl.jobs:run"},
            422,
            "exactly one of cron, daily, hourly or every",
        ),
        (
            "post",
            "/api/schedules",
            {"name": "bad name!", "pipeline": "p", "daily": "02:00"},
            422,
            "invalid schedule name",
        ),
        ("post", "/api/schedules", {"pipeline": "p"}, 422, "name"),
        (
            "post",
            "/api/schedules",
            {"name": "f", "pipeline": "p", "daily": "02:00", "exclude": {"holidays": "XX"}},
            422,
            "holidays country 'XX'",
        ),
        ("patch", "/api/schedules/daily_etl_job", {"name": "other"}, 422, "name: Extra inputs are not permitted"),
        ("patch", "/api/schedules/daily_etl_job", {"overlap": "sometimes"}, 422, "invalid overlap 'sometimes'"),
        ("get", "/api/schedules/nope", None, 404, "no schedule named 'nope'"),
        ("post", "/api/schedules/nope/enable", None, 404, "nope"),
        ("post", "/api/schedules/nope/disable", None, 404, "nope"),
        ("post", "/api/schedules/nope/run", None, 404, "nope"),
        ("get", "/api/schedules/nope/next", None, 404, "nope"),
        ("get", "/api/schedules/daily_etl_job/history?limit=0", None, 422, "limit"),
        ("get", "/api/schedules/daily_etl_job/history?status=lost", None, 422, "status"),
        (
            "post",
            "/api/schedules",
            {"name": "g", "pipeline": "p", "daily": "02:00", "description": "a\u0000b"},
            422,
            "without NUL",
        ),
        ("post", "/api/schedules", FLOWYML_DAILY | {"name": "g", "hour": True}, 422, "hour"),
        (
            "post",
            "/api/schedules",
            FLOWYML_DAILY | {"name": "g", "daily": "07:00"},
            422,
            "give schedule_type or daily, not both",
        ),
        ("post", "/api/schedules/daily_etl_job/run", {"parms": {}}, 422, "parms"),
        ("post", "/api/schedules/daily_etl_job/pause", {"note": "a\u0000b"}, 422, "without NUL"),
    ],
)
def test_errors_get_the_clis_message_and_their_status_never_a_500(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, status: int, said: str
) -> None:
    assert client.post("/api/schedules", json=FLOWYML_DAILY, headers=AS_ADMIN).status_code == 201
    answer = client.request(method, path, json=body, headers=AS_ADMIN)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/api/schedules", '{"name": "g", "pipeline": "p", "daily": "02:00", "params": {"k": "\\ud800"}}'),
        ("/api/schedules", '{"name": "g", "pipeline": "p", "daily": "02:00", "description": "\\udc80"}'),
        ("/api/schedules/daily_etl_job/run", '{"params": {"k": "\\ud800x"}}'),
    ],
)
def test_a_lone_surrogate_in_a_body_is_refused_and_stored_nowhere(client: TestClient, path: str, text: str) -> None:
    assert client.post("/api/schedules", json=FLOWYML_DAILY, headers=AS_ADMIN).status_code == 201
    answer = client.post(path, content=text, headers=AS_ADMIN | {"Content-Type": "application/json"})
    assert answer.status_code == 422 and "surrogate" in answer.json()["detail"]
    assert [s["name"] for s in client.get("/api/schedules", headers=AS_READER).json()] == ["daily_etl_job"]
    assert client.get("/api/schedules/daily_etl_job/history", headers=AS_READER).json() == []


def test_tokens_admin_may_write_read_may_only_read_and_none_gets_401(client: TestClient) -> None:
    assert client.get("/api/schedules").status_code == 401
    wrong = client.get("/api/schedules", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401 and "not one of this server's" in wrong.json()["detail"]
    assert client.get("/api/scheduler/health").status_code == 401
    assert client.get("/api/schedules", headers=AS_READER).status_code == 200
    refused = client.post("/api/schedules", json=FLOWYML_DAILY, headers=AS_READER)
    assert refused.status_code == 403 and "admin token" in refused.json()["detail"]
    assert client.get("/api/schedules", headers=AS_READER).json() == []
    assert client.post("/api/schedules", json=FLOWYML_DAILY, headers=AS_ADMIN).status_code == 201


def test_public_health_answers_without_a_token_and_nothing_else_does(store: ScheduleStore, store_url: str) -> None:
    app = web.create_app(lambda: Scheduler(open_store(store_url)), TOKENS, public_health=True)
    with TestClient(app) as client:
        assert client.get("/api/scheduler/health").json()["status"] == "ok"  # nothing scheduled
        assert client.get("/api/schedules").status_code == 401


def test_a_store_that_cannot_be_used_answers_503() -> None:
    from flowyml_sched.application.scheduler import connect
    from flowyml_sched.config import resolve_settings

    settings = resolve_settings({}, db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(web.create_app(lambda: connect(settings), web.Tokens())) as client:
        answer = client.get("/api/schedules")
    assert answer.status_code == 503 and "127.0.0.1:1" in answer.json()["detail"]


def test_a_store_that_cannot_be_used_tells_an_anonymous_health_caller_nothing_of_where_it_is() -> None:
    from flowyml_sched.application.scheduler import connect
    from flowyml_sched.config import resolve_settings

    settings = resolve_settings({}, db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(web.create_app(lambda: connect(settings), TOKENS, public_health=True)) as client:
        anonymous = client.get("/api/scheduler/health")
        reader = client.get("/api/scheduler/health", headers=AS_READER)
    assert (anonymous.status_code, anonymous.json()["detail"]) == (503, "the store cannot be used")
    assert reader.status_code == 503 and "127.0.0.1:1" in reader.json()["detail"]


def test_a_token_file_gives_roles_and_is_refused_when_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# role token\nadmin admin-one\nread reader-one\n  # the dashboard's\nread reader#two\n")
    path.chmod(0o600)
    tokens = web.Tokens.from_file(path)
    assert (tokens.role_of("admin-one"), tokens.role_of("reader#two"), tokens.role_of("x")) == ("admin", "read", None)
    assert tokens.role_of("reader") is None  # a '#' in a token is part of it
    assert "admin-one" not in repr(tokens)
    path.chmod(0o644)
    with pytest.raises(web.TokenFileError, match="mode is 0644; make it 0600"):
        web.Tokens.from_file(path)
    path.chmod(0o600)
    for text, said in (
        ("writer writer-one\n", "line 1: expected 'admin TOKEN' or 'read TOKEN'"),
        ("admin admin-one  # a comment after a token\n", "line 1: expected 'admin TOKEN' or 'read TOKEN'"),
        ("# nothing\n", "it holds no token"),
        ("admin tök-tök-tök\n", "printable ASCII"),
        ("admin short\n", "at least 8"),
    ):
        path.write_text(text)
        with pytest.raises(web.TokenFileError, match=said):
            web.Tokens.from_file(path)


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWYML_SCHEDULER_")}
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "s.db")],
        env=environ | {"FLOWYML_SCHEDULER_API_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without a token" in result.stderr
    assert not (tmp_path / "s.db").exists()


# -- schemathesis: every operation, with and without a token ----------------------------------

SCHEMA = schemathesis.openapi.from_asgi(
    "/openapi.json", web.create_app(lambda: Scheduler(open_store("sqlite://"), source="api"), TOKENS)
)


@pytest.mark.parametrize("headers", [AS_ADMIN, AS_READER, {}], ids=["admin", "read", "none"])
@SCHEMA.parametrize()
@settings(
    max_examples=int(os.environ.get("FLOWYML_TEST_API_EXAMPLES", "15")),
    derandomize="FLOWYML_TEST_API_EXAMPLES" not in os.environ,  # the same examples each run; set it to search
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_5xx_or_breaks_its_schema(case: schemathesis.Case, headers: dict[str, str]) -> None:
    # every check but "schema-valid data is accepted": the schema says a zone is text, the
    # API refuses text that names no zone (422, as the CLI refuses it)
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])


def test_without_tokens_a_page_of_another_site_cannot_change_a_schedule(store: ScheduleStore, store_url: str) -> None:
    """A server with no token takes changes from clients that are not browsers and from its own
    pages; a form or fetch from a page elsewhere (its Origin, or Sec-Fetch-Site) is refused."""
    app = web.create_app(lambda: Scheduler(open_store(store_url), source="api"), web.Tokens())
    with TestClient(app) as client:
        assert client.post("/api/schedules", json=FLOWYML_DAILY).status_code == 201
        name = FLOWYML_DAILY["name"]
        for foreign in (
            {"Origin": "http://evil.example"},
            {"Origin": "http://testserver:81"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            refused = client.post(f"/api/schedules/{name}/pause", headers=foreign)
            assert refused.status_code == 403 and "another site" in refused.json()["detail"]
            assert client.delete(f"/api/schedules/{name}", headers=foreign).status_code == 403
        assert client.get(f"/api/schedules/{name}", headers={"Origin": "http://evil.example"}).status_code == 200
        assert client.post(f"/api/schedules/{name}/pause", headers={"Origin": "http://testserver"}).json()["changed"]
        assert client.post(f"/api/schedules/{name}/resume").json()["changed"]  # curl sends no Origin
