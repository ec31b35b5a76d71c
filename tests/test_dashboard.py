"""The dashboard of ``flowyml-sched serve``: its pages behind FastAPI's TestClient on real stores
(SQLite and PostgreSQL, from conftest.py), login and CSRF, errors as pages; then the real
server driven by a real browser (Debian's chromium and chromedriver, through Selenium).

The browser test is skipped where chromium, chromedriver or Selenium is missing, and fails
then when the environment variable ``CI`` is set (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from flowyml_sched import web
from flowyml_sched.application import Scheduler
from flowyml_sched.dashboard import CSRF_COOKIE, TOKEN_COOKIE
from flowyml_sched.model import Run, RunOrigin, RunStatus, WorkerInfo
from flowyml_sched.store import ScheduleStore, open_store

ADMIN, READ = "admin-token-1", "read-token-2"
TOKENS = web.Tokens(admin=(ADMIN,), read=(READ,))
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
"""The day before Europe/Berlin springs forward: 02:30 on 2026-03-29 does not exist there."""
DST_GAP_NOTE = "02:30 does not exist: moved to the end of the DST gap"


def scheduler_on(url: str) -> Scheduler:
    return Scheduler(open_store(url), source="api", clock=lambda: NOW)


@pytest.fixture
def stocked(store: ScheduleStore) -> ScheduleStore:
    """Two schedules (``report`` fires next in the DST gap; ``paused-one`` is paused with a
    note), three runs of ``report`` and one live worker."""
    scheduler = Scheduler(store, clock=lambda: NOW)
    for fields in (
        {"name": "report", "pipeline": "etl.jobs:run", "daily": "02:30", "timezone": "Europe/Berlin"},
        {"name": "paused-one", "pipeline": "etl.jobs:run", "cron": "0 9 * * 1-5"},
    ):
        scheduler.add(fields, check_pipeline=False)
    scheduler.pause("paused-one", "upstream <b>down</b>")
    yesterday = datetime(2026, 3, 27, 1, 30, tzinfo=UTC)
    for day, status, duration, error in (
        (2, RunStatus.succeeded, 12.5, None),
        (1, RunStatus.failed, 5400.0, "<script>alert(1)</script>\nTraceback: ValueError: bad row 17"),
    ):
        fire = yesterday - timedelta(days=day - 1)
        store.record_run(
            Run(
                "report",
                fire,
                status,
                started_at=fire + timedelta(seconds=2),
                finished_at=fire + timedelta(seconds=2 + duration),
                duration_seconds=duration,
                error=error,
                worker="w-1",
                log_path=f"/var/log/flowyml-sched/runs/report/{fire:%Y%m%dT%H%M%S}.log",
            )
        )
    store.record_run(Run("report", NOW - timedelta(minutes=5), RunStatus.pending, origin=RunOrigin.manual))
    store.heartbeat(
        WorkerInfo(
            "w-1",
            "node-a",
            4242,
            NOW - timedelta(hours=1),
            NOW - timedelta(seconds=5),
            NOW + timedelta(minutes=1),
            "alive",
        )
    )
    return store


@pytest.fixture
def client(stocked: ScheduleStore, store_url: str) -> Iterator[TestClient]:
    with TestClient(web.create_app(lambda: scheduler_on(store_url), TOKENS)) as opened:
        yield opened


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def log_in(client: TestClient, token: str) -> None:
    form = client.get("/login")
    answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text)}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text


def post(client: TestClient, path: str, **fields: str) -> Any:
    """Post the form of ``path``'s page (its CSRF field filled), without following the redirect."""
    page = client.get(path.rsplit("/", 1)[0])
    return client.post(path, data={"csrf": csrf_of(page.text), **fields}, follow_redirects=False)


def stored(store_url: str, name: str) -> tuple[str, str | None]:
    entry, _ = scheduler_on(store_url).show(name, 1)
    return ("enabled" if entry.enabled else "paused"), entry.pause_note  # type: ignore[union-attr]


def test_without_a_valid_cookie_every_page_and_action_redirects_to_the_login_form(client: TestClient) -> None:
    for method, path in (("get", "/"), ("get", "/schedules/report"), ("post", "/schedules/report/pause")):
        answer = client.request(method, path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    client.cookies.set(TOKEN_COOKIE, "not-a-token")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    login = client.get("/login")
    assert login.status_code == 200 and 'type="password"' in login.text and "report" not in login.text


def test_a_valid_token_sets_an_httponly_samesite_strict_cookie_secure_over_https(
    stocked: ScheduleStore, store_url: str
) -> None:
    app = web.create_app(lambda: scheduler_on(store_url), TOKENS)
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(app, base_url=base) as client:
            form = client.get("/login")
            answer = client.post("/login", data={"token": ADMIN, "csrf": csrf_of(form.text)}, follow_redirects=False)
            assert answer.status_code == 303
            cookies = {c.split("=", 1)[0]: c.lower() for c in answer.headers.get_list("set-cookie")}
            for name in (TOKEN_COOKIE, CSRF_COOKIE):
                assert "httponly" in cookies[name] and "samesite=strict" in cookies[name] and "path=/" in cookies[name]
                assert ("secure" in cookies[name].split("; ")) is secure
            assert ADMIN not in answer.headers["location"] and ADMIN not in answer.text
            assert client.get("/").status_code == 200


def test_a_wrong_token_shows_the_form_again_with_a_401_and_never_the_token(client: TestClient) -> None:
    form = client.get("/login")
    answer = client.post("/login", data={"token": "wrong-token-9", "csrf": csrf_of(form.text)})
    assert answer.status_code == 401 and "not one of this server&#39;s" in answer.text
    assert "wrong-token-9" not in answer.text and TOKEN_COOKIE not in answer.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_overview_shows_health_workers_state_zones_next_fire_its_dst_note_and_last_run(
    client: TestClient,
) -> None:
    log_in(client, READ)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert '<span class="badge health-ok" id="health">ok</span>' in text
    assert "1 live worker; no run ended in the last 1d." in text and "node-a" in text and "4242" in text
    assert '<a href="/schedules/report">report</a>' in text
    assert "daily 02:30" in text and "Europe/Berlin" in text
    assert "Sun 2026-03-29 03:00 CEST" in text  # the next fire time in the schedule's zone
    assert '<time class="viewer" datetime="2026-03-29T01:00:00Z">2026-03-29 01:00 UTC</time>' in text
    assert DST_GAP_NOTE in text
    assert '<span class="badge status-pending">pending</span> <span class="origin">(manual)</span>' in text
    assert '<span class="badge state-paused">paused</span>' in text
    assert "upstream &lt;b&gt;down&lt;/b&gt;" in text and "<b>down</b>" not in text
    assert READ not in text and ADMIN not in text


def test_a_schedule_page_shows_its_next_ten_fire_times_and_history_with_durations_errors_and_logs(
    client: TestClient,
) -> None:
    log_in(client, READ)
    text = client.get("/schedules/report").text
    fires = re.findall(r'<tr><td class="number">(\d+)</td><td>([^<]+)</td>', text)
    assert [number for number, _ in fires] == [str(n) for n in range(1, 11)]
    assert fires[0][1] == "Sun 2026-03-29 03:00:00 +0200" and fires[1][1] == "Mon 2026-03-30 02:30:00 +0200"
    assert text.count(DST_GAP_NOTE) == 1
    for status in ("succeeded", "failed", "pending"):
        assert f'<span class="badge status-{status}">{status}</span>' in text
    assert "12.50s" in text and "1h30m" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text
    assert "Traceback: ValueError: bad row 17" in text
    assert "/var/log/flowyml-sched/runs/report/20260326T013000.log" in text
    assert "<th>pipeline</th><td>etl.jobs:run</td>" in text
    assert 'id="pause"' not in text and 'id="resume"' not in text and 'id="run-now"' not in text


def test_an_admin_sees_the_buttons_a_reader_does_not_and_a_readers_post_is_refused(
    client: TestClient, store_url: str
) -> None:
    log_in(client, READ)
    refused = post(client, "/schedules/report/pause", note="no")
    assert refused.status_code == 403 and "needs the admin token" in refused.text
    assert stored(store_url, "report") == ("enabled", None)
    log_in(client, ADMIN)
    text = client.get("/schedules/report").text
    assert 'id="pause"' in text and 'id="run-now"' in text and 'id="resume"' not in text
    assert 'id="resume"' in client.get("/schedules/paused-one").text
    assert ADMIN not in text


def test_an_admin_pauses_with_a_note_resumes_and_runs_now_each_answered_by_a_303_back(
    client: TestClient, store_url: str
) -> None:
    log_in(client, ADMIN)
    paused = post(client, "/schedules/report/pause", note="upstream down")
    assert (paused.status_code, paused.headers["location"]) == (303, "/schedules/report?done=paused")
    assert stored(store_url, "report") == ("paused", "upstream down")
    page = client.get(paused.headers["location"]).text
    assert 'id="state">paused</span>' in page and "upstream down" in page and "Paused: no fire time" in page
    again = post(client, "/schedules/report/pause")
    assert again.headers["location"] == "/schedules/report?done=unchanged"
    resumed = post(client, "/schedules/report/resume")
    assert (resumed.status_code, resumed.headers["location"]) == (303, "/schedules/report?done=resumed")
    assert stored(store_url, "report") == ("enabled", None)
    ran = post(client, "/schedules/report/run")
    assert (ran.status_code, ran.headers["location"]) == (303, "/schedules/report?done=run")
    runs = scheduler_on(store_url).history("report", 10)
    assert [(r.status, r.origin) for r in runs if r.scheduled_for >= NOW] == [(RunStatus.pending, RunOrigin.manual)]


@pytest.mark.parametrize(
    ("cookie", "field"),
    [("keep", None), ("keep", "x" * 43), (None, "from-page"), ("other", "from-page")],
    ids=["no field", "wrong field", "no cookie", "other cookie"],
)
def test_a_post_whose_csrf_field_does_not_match_the_cookie_is_refused_and_changes_nothing(
    client: TestClient, store_url: str, cookie: str | None, field: str | None
) -> None:
    log_in(client, ADMIN)
    from_page = csrf_of(client.get("/schedules/report").text)
    if cookie is None:
        client.cookies.delete(CSRF_COOKIE)
    elif cookie == "other":
        client.cookies.set(CSRF_COOKIE, "y" * 43)
    data = {"note": "forged"} | ({} if field is None else {"csrf": from_page if field == "from-page" else field})
    answer = client.post("/schedules/report/pause", data=data, follow_redirects=False)
    assert answer.status_code == 403 and "reload the page" in answer.text
    assert stored(store_url, "report") == ("enabled", None)


@pytest.mark.parametrize(
    ("path", "fields", "status", "said"),
    [
        ("/schedules/nope/pause", {}, 404, "no schedule named &#39;nope&#39;"),
        ("/schedules/report/pause", {"note": "a\x00b"}, 422, "without NUL"),
        ("/schedules/report/pause", {"note": "n" * 10_001}, 422, "at most 10000 characters"),
        ("/schedules/bad%20name!/run", {}, 422, "invalid schedule name"),
    ],
)
def test_bad_input_is_a_page_with_the_use_cases_message_and_its_status_never_a_500(
    client: TestClient, store_url: str, path: str, fields: dict[str, str], status: int, said: str
) -> None:
    log_in(client, ADMIN)
    csrf = csrf_of(client.get("/").text)
    answer = client.post(path, data={"csrf": csrf, **fields}, follow_redirects=False)
    assert answer.status_code == status and answer.headers["content-type"].startswith("text/html")
    assert said in answer.text
    assert stored(store_url, "report") == ("enabled", None)


def test_an_unknown_schedule_is_a_404_page_and_a_form_that_is_not_urlencoded_a_415(client: TestClient) -> None:
    log_in(client, ADMIN)
    missing = client.get("/schedules/nope")
    assert missing.status_code == 404 and "<h1>404 Not Found</h1>" in missing.text
    assert "no schedule named &#39;nope&#39;" in missing.text
    csrf = csrf_of(client.get("/").text)
    sent = client.post("/schedules/report/pause", json={"csrf": csrf}, follow_redirects=False)
    assert sent.status_code == 415 and "application/x-www-form-urlencoded" in sent.text
    unreadable = client.post(
        "/schedules/report/pause",
        content=f"csrf={csrf}&note=%FF".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unreadable.status_code == 400


def test_a_row_that_cannot_be_loaded_is_shown_broken_with_why_and_cannot_be_run(
    client: TestClient, store_url: str
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # as an operator's SQL by hand, or a zone a tzdata update dropped
        conn.execute(sa.text("UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name = 'report'"))
    engine.dispose()
    log_in(client, ADMIN)
    overview = client.get("/")
    assert overview.status_code == 200 and '<span class="badge state-broken">broken</span>' in overview.text
    assert "unknown timezone &#39;Mars/Olympus&#39;" in overview.text
    page = client.get("/schedules/report")
    assert page.status_code == 200 and "None: the stored row cannot be loaded" in page.text
    assert "<th>timezone</th><td>Mars/Olympus</td>" in page.text and "12.50s" in page.text
    assert 'id="run-now"' not in page.text  # no button for what would be refused
    ran = post(client, "/schedules/report/run")
    assert ran.status_code == 422 and "repair it with &#39;flowyml-sched edit&#39;" in ran.text


def test_a_store_that_cannot_be_used_is_a_503_page() -> None:
    from flowyml_sched.application.scheduler import connect
    from flowyml_sched.config import resolve_settings

    settings = resolve_settings({}, db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(web.create_app(lambda: connect(settings), web.Tokens())) as client:
        answer = client.get("/")
    assert answer.status_code == 503 and "<h1>503 Service Unavailable</h1>" in answer.text


def test_without_tokens_every_viewer_is_admin_and_login_leads_home(stocked: ScheduleStore, store_url: str) -> None:
    with TestClient(web.create_app(lambda: scheduler_on(store_url), web.Tokens())) as client:
        assert client.get("/login", follow_redirects=False).headers["location"] == "/"
        page = client.get("/schedules/report").text
        assert 'id="pause"' in page and 'id="logout"' not in page
        assert post(client, "/schedules/report/pause").status_code == 303
    assert stored(store_url, "report") == ("paused", None)


def test_logging_out_clears_both_cookies(client: TestClient) -> None:
    log_in(client, ADMIN)
    csrf = csrf_of(client.get("/").text)
    answer = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    cleared = {c.split("=", 1)[0] for c in answer.headers.get_list("set-cookie") if "max-age=0" in c.lower()}
    assert cleared == {TOKEN_COOKIE, CSRF_COOKIE}
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_pages_forbid_framing_and_foreign_scripts_and_stay_out_of_the_openapi_document(client: TestClient) -> None:
    log_in(client, READ)
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert "Intl.DateTimeFormat" in client.get("/static/dashboard.js").text
    assert client.get("/static/nope.js").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert all(path.startswith("/api/") or path == "/metrics" for path in paths)


# -- the real server in a real browser ---------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
VIEWER_ZONE = "America/New_York"
"""The browser's zone: the page shows fire times in it as well as in the schedule's."""
WAIT_SECONDS = 90
"""The longest wait for the server or the browser (beside two busy CPUs, in CI)."""


def _no_browser(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set (.ci/run installs them), so this is a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``flowyml-sched serve`` on a free port with an admin token from the environment, its store
    holding one schedule ``report``; its URL and environment."""
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWYML_SCHEDULER_")}
    env = environ | {
        "FLOWYML_SCHEDULER_API_TOKEN": ADMIN,
        "FLOWYML_SCHEDULER_DB_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "FLOWYML_SCHEDULER_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    added = cli(
        "add",
        "report",
        "--pipeline",
        "etl.jobs:run",
        "--daily",
        "02:30",
        "--tz",
        "Europe/Berlin",
        "--no-check-pipeline",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "flowyml_sched", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=WAIT_SECONDS)
        while not _answers(base + "/login"):
            assert datetime.now(UTC) < deadline, f"serve did not answer: {(tmp_path / 'serve.log').read_text()}"
            try:  # a bounded wait that also sees the server die
                server.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"serve exited with {server.returncode}: {(tmp_path / 'serve.log').read_text()}")
        yield base, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert ADMIN not in (tmp_path / "serve.log").read_text()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("flowyml-sched")), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=WAIT_SECONDS)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium through chromedriver, in :data:`VIEWER_ZONE`."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        _no_browser(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
    except ImportError:
        _no_browser("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT_SECONDS)
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": VIEWER_ZONE})
        yield driver
    finally:
        driver.quit()


def stored_status(env: dict[str, str]) -> tuple[str, str | None]:
    shown = cli("show", "report", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)
    return entry["status"], entry["pause_note"]


@pytest.mark.slow
def test_in_a_real_browser_an_admin_logs_in_pauses_a_schedule_sees_it_paused_and_resumes_it(
    browser: Any, served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    base, env = served
    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.get(base + "/")
    wait.until(shown.url_to_be(base + "/login"))
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    wait.until(shown.url_to_be(base + "/"))
    wait.until(shown.text_to_be_present_in_element((By.CSS_SELECTOR, "th .viewer-zone"), VIEWER_ZONE))
    assert ADMIN not in browser.page_source
    assert {c["name"]: c["httpOnly"] for c in browser.get_cookies()} == {TOKEN_COOKIE: True, CSRF_COOKIE: True}

    browser.find_element(By.LINK_TEXT, "report").click()
    wait.until(shown.url_to_be(base + "/schedules/report"))
    assert browser.find_element(By.ID, "state").text == "enabled"
    first = browser.find_element(By.CSS_SELECTOR, "table.fires time.viewer")
    wait.until(lambda _: "UTC" not in first.text)  # the script shows it in the viewer's zone
    at = datetime.fromisoformat(first.get_attribute("datetime").replace("Z", "+00:00"))
    assert first.text.startswith(f"{at.astimezone(ZoneInfo(VIEWER_ZONE)):%Y-%m-%d %H:%M} ")

    browser.find_element(By.ID, "note").send_keys("upstream down")
    browser.find_element(By.ID, "pause").click()
    wait.until(shown.text_to_be_present_in_element((By.ID, "state"), "paused"))
    assert browser.find_element(By.ID, "state-note").text == "upstream down"
    assert browser.current_url == base + "/schedules/report?done=paused"
    assert stored_status(env) == ("paused", "upstream down")
    screenshot = tmp_path / "dashboard-paused.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.read_bytes().startswith(b"\x89PNG")

    browser.find_element(By.ID, "resume").click()
    wait.until(shown.text_to_be_present_in_element((By.ID, "state"), "enabled"))
    assert stored_status(env) == ("enabled", None)


def test_a_wrong_method_on_a_page_is_a_405_naming_the_methods_it_takes(client: TestClient) -> None:
    for method, path, allowed in (("PUT", "/", "GET"), ("PUT", "/login", "GET, POST"), ("GET", "/logout", "POST")):
        answer = client.request(method, path)
        assert (answer.status_code, answer.headers["allow"]) == (405, allowed), path
