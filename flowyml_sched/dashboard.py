"""The dashboard of ``flowyml-sched serve``: HTML pages a person reads at a glance, a front end
like the REST API beside it (parse, call :class:`~flowyml_sched.application.Scheduler`, render,
map errors; nothing here touches the store). Jinja2 templates in ``templates/``, autoescaped;
one stylesheet and one small script, no build step. Every page reads without the script: it
only shows each UTC instant (``<time class="viewer">``) in the viewer's own zone.

Pages: ``/`` (health, live workers, every schedule), ``/schedules/{name}`` (its fields, next
fire times, last runs; pause, resume and run-now buttons for an admin), ``/login``,
``/logout``. Errors are pages with the REST API's statuses: 404 for an unknown schedule, 422
with the use case's message for bad input, 503 when the store cannot be used.

Auth: with tokens configured, ``/login`` takes one and keeps it in an HttpOnly,
SameSite=Strict cookie (Secure over https); without a valid one every page redirects to
``/login``. A read token sees the pages, an admin token the buttons too. Every form carries
the value of a second cookie (random, renewed at each login) in its ``csrf`` field, compared
in constant time. With no token configured every viewer is admin (``serve`` then listens on
loopback only).
"""

import hmac
import http
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from flowyml_sched.application import Scheduler
from flowyml_sched.describe import (
    NO_WORKER_HINT,
    RUNS_IN_PYTHON,
    describe_next,
    last_error,
    relative,
    show_value,
    trigger_label,
)
from flowyml_sched.errors import SchedulerError
from flowyml_sched.model import BrokenSchedule, Run, RunOrigin, Schedule, entry_to_dict, schedule_to_dict
from flowyml_sched.references import is_local_pipeline
from flowyml_sched.timing import FireTime, next_fire_time
from flowyml_sched.triggers import format_duration
from flowyml_sched.web import NOTE_LIMIT, Role, Tokens, status_of
from flowyml_sched.zones import get_zone

TEMPLATES = Path(__file__).with_name("templates")
"""The pages' templates, the stylesheet and the script."""
STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
"""The files served under ``/static/``, with their media types."""
TOKEN_COOKIE = "flowyml_sched_token"
"""Keeps the token given at ``/login`` (percent-encoded), HttpOnly, SameSite=Strict, Secure over https."""
CSRF_COOKIE = "flowyml_sched_csrf"
"""A random value that every form posted must carry in its ``csrf`` field."""
FIRE_TIMES = 10
"""Next fire times on a schedule's page."""
HISTORY_LIMIT = 50
"""Runs on a schedule's page, newest first."""
FORM_LIMIT = 64 * 1024
"""Bytes of a form body."""
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Headers of every page and redirect: no framing, no script but ours, nothing cached."""
DONE = {
    "paused": "Paused: no fire time is claimed until it is resumed.",
    "resumed": "Resumed from its next fire time.",
    "unchanged": "Nothing changed: it was so already.",
    "run": "A run was asked for: the first live worker takes it.",
}
"""What an action did, shown on the page it redirects to (``?done=KEY``)."""


class _Refused(Exception):
    """A request turned away: the page's ``status`` and the sentence it shows."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _LoginNeeded(Exception):
    """No valid token cookie where tokens are configured: answered with a redirect to /login."""


def dashboard_router(scheduler: Callable[[], Scheduler], tokens: Tokens) -> APIRouter:
    """The dashboard's routes (left out of the OpenAPI document) on the Scheduler that
    ``scheduler`` returns; ``tokens`` as the REST API's."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    static = {name: (TEMPLATES / name).read_bytes() for name in STATIC}

    def page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        """``template`` rendered; sets the CSRF cookie when the request has none."""
        csrf = request.cookies.get(CSRF_COOKIE, "")
        fresh = not _well_formed(csrf)
        if fresh:
            csrf = secrets.token_urlsafe(32)
        role = getattr(request.state, "dashboard_role", None)
        html = environment.get_template(template).render(
            context | {"csrf": csrf, "role": role, "signed_in": bool(tokens) and role is not None}
        )
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if fresh:
            _set_cookie(response, request, CSRF_COOKIE, csrf)
        return response

    class HtmlErrors(APIRoute):
        """A route whose errors are pages (the app's own handlers answer JSON)."""

        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    return await handler(request)
                except _LoginNeeded:
                    return _redirect("/login")
                except (_Refused, SchedulerError) as exc:
                    status = exc.status if isinstance(exc, _Refused) else status_of(exc)
                    context = {"status": status, "phrase": http.HTTPStatus(status).phrase, "message": str(exc)}
                    return page(request, "error.html", context, status)

            return answer

    def viewer(request: Request) -> Role:
        """The viewer's role, from the token cookie. Raises _LoginNeeded."""
        found: Role | None = "admin"
        if tokens:
            found = tokens.role_of(unquote(request.cookies.get(TOKEN_COOKIE, "")))
        if found is None:
            raise _LoginNeeded
        request.state.dashboard_role = found
        return found

    async def form(request: Request) -> dict[str, str]:
        """The form posted, once its ``csrf`` field matches the CSRF cookie. Raises _Refused."""
        fields = await _read_form(request)
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not (_well_formed(expected) and hmac.compare_digest(expected.encode(), fields.get("csrf", "").encode())):
            raise _Refused(
                403, "this form is out of date or did not come from this dashboard: reload the page and send it again"
            )
        return fields

    def admin(
        role: Annotated[Role, Depends(viewer)], fields: Annotated[dict[str, str], Depends(form)]
    ) -> dict[str, str]:
        """The form of an admin's action. Raises _Refused for a read token."""
        if role != "admin":
            raise _Refused(403, "this needs the admin token; the token given may only read")
        return fields

    router = APIRouter(route_class=HtmlErrors, include_in_schema=False)
    seen = [Depends(viewer)]

    @router.get("/", dependencies=seen)
    def overview(request: Request) -> Response:
        found = scheduler()
        now = found.clock()
        health = found.health()
        workers = [
            w | {"heartbeat": _instant(datetime.fromisoformat(w["heartbeat_at"]), now)} for w in health["workers"]
        ]
        rate, window = health["success_rate"], format_duration(timedelta(seconds=health["window_seconds"]))
        context = {
            "health": health,
            "workers": workers,
            "success": f"no run ended in the last {window}"
            if rate is None
            else f"success rate {rate:.1%} over the last {window}",
            "no_worker_hint": NO_WORKER_HINT,
            "rows": [_overview_row(entry, run, now) for entry, run in found.list()],
        }
        return page(request, "index.html", context)

    @router.get("/schedules/{name}", dependencies=seen)
    def schedule_page(request: Request, name: str, done: str | None = None) -> Response:
        found = scheduler()
        now = found.clock()
        entry, fires = found.show(name, FIRE_TIMES)
        runs = found.history(name, HISTORY_LIMIT)
        context = {
            "row": _overview_row(entry, runs[0] if runs else None, now),
            "enabled": entry.enabled,
            "note_limit": NOTE_LIMIT,
            "done": DONE.get(done or ""),
            "fields": _fields(entry),
            "fires": [_fire_row(number, fire, now) for number, fire in enumerate(fires, start=1)],
            "runs": [_run_row(run, now) for run in runs],
            "history_limit": HISTORY_LIMIT,
        }
        return page(request, "schedule.html", context)

    @router.post("/schedules/{name}/pause")
    def pause(name: str, fields: Annotated[dict[str, str], Depends(admin)]) -> Response:
        note = fields.get("note", "").strip() or None
        if note is not None and len(note) > NOTE_LIMIT:
            raise _Refused(422, f"a pause note is at most {NOTE_LIMIT} characters, not {len(note)}")
        return _back(name, "paused" if scheduler().pause(name, note).changed else "unchanged")

    @router.post("/schedules/{name}/resume", dependencies=[Depends(admin)])
    def resume(name: str) -> Response:
        return _back(name, "resumed" if scheduler().resume(name).changed else "unchanged")

    @router.post("/schedules/{name}/run", dependencies=[Depends(admin)])
    def run_now(name: str) -> Response:
        scheduler().trigger(name)
        return _back(name, "run")

    @router.get("/login")
    def login_form(request: Request) -> Response:
        if not tokens:
            return _redirect("/")
        return page(request, "login.html", {"problem": None})

    @router.post("/login")
    def login(request: Request, fields: Annotated[dict[str, str], Depends(form)]) -> Response:
        if not tokens:
            return _redirect("/")
        token = fields.get("token", "").strip()
        if not token or tokens.role_of(token) is None:
            problem = "that token is not one of this server's" if token else "give a token"
            return page(request, "login.html", {"problem": problem}, 401)
        response = _redirect("/")
        _set_cookie(response, request, TOKEN_COOKIE, quote(token, safe=""))
        _set_cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(32))
        return response

    @router.post("/logout", dependencies=[Depends(form)])
    def logout(request: Request) -> Response:
        response = _redirect("/login" if tokens else "/")
        for cookie in (TOKEN_COOKIE, CSRF_COOKIE):
            response.delete_cookie(
                cookie, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
            )
        return response

    @router.get("/static/{file}")
    def static_file(file: str) -> Response:
        if file not in static:
            raise _Refused(404, f"no file {file!r} here")
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return Response(static[file], media_type=STATIC[file], headers=headers)

    return router


def _well_formed(csrf: str) -> bool:
    """True for a value :func:`secrets.token_urlsafe` (32 bytes) could have made."""
    return len(csrf) == 43 and all(c.isascii() and (c.isalnum() or c in "-_") for c in csrf)


def _set_cookie(response: Response, request: Request, key: str, value: str) -> None:
    """A session cookie for the whole site: HttpOnly, SameSite=Strict, Secure over https."""
    secure = request.url.scheme == "https"
    response.set_cookie(key, value, path="/", secure=secure, httponly=True, samesite="strict")


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=HEADERS)


def _back(name: str, done: str) -> RedirectResponse:
    """303 to the schedule's page, saying what was done (a key of :data:`DONE`)."""
    return _redirect(f"{_href(name)}?done={done}")


def _href(name: str) -> str:
    return "/schedules/" + quote(name, safe="")


async def _read_form(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body of at most :data:`FORM_LIMIT`
    bytes (the last of a repeated name). Raises _Refused (400, 413, 415)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _Refused(415, "send the page's form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise _Refused(413, f"a form of more than {FORM_LIMIT} bytes")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "the form cannot be read: not URL-encoded UTF-8") from None
    return dict(pairs)


def _instant(moment: datetime | None, now: datetime) -> dict[str, str] | None:
    """An instant as the templates show it: ``iso`` (UTC, for ``<time datetime>``), ``utc``
    (its text without the script) and ``relative`` (``in 3h 12m``)."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return {
        "iso": utc.isoformat().replace("+00:00", "Z"),
        "utc": f"{utc:%Y-%m-%d %H:%M} UTC",
        "relative": relative(moment, now),
    }


def _dst_note(schedule: Schedule) -> str:
    """The note (DST, a move by an exclusion) of the stored next fire time, as ``next`` says it."""
    if schedule.next_fire_at is None:
        return ""
    after = schedule.next_fire_at - timedelta(microseconds=1)
    try:
        fire = next_fire_time(schedule.trigger, get_zone(schedule.timezone), after, schedule.exclusions)
    except SchedulerError:  # no fire time ahead: the page says so
        return ""
    return fire.describe_note() if fire.utc == schedule.next_fire_at else ""


def _overview_row(entry: Schedule | BrokenSchedule, run: Run | None, now: datetime) -> dict[str, Any]:
    """One schedule as the overview's table and a schedule page's heading show it."""
    row: dict[str, Any] = {
        "name": entry.name,
        "href": _href(entry.name),
        "next": _instant(entry.next_fire_at, now),
        "last": _run_row(run, now) if run else None,
    }
    if isinstance(entry, BrokenSchedule):
        stored = entry.stored
        return row | {
            "state": "broken",
            "state_note": entry.reason,
            "trigger": f"{stored['kind']} {stored['expression']}",
            "zone": str(stored["timezone"]),
            "next_local": None,
            "dst_note": "",
        }
    local = entry.next_fire_at.astimezone(get_zone(entry.timezone)) if entry.next_fire_at else None
    notes = []
    if not entry.enabled and entry.pause_note:
        notes.append(entry.pause_note)
    elif entry.enabled and entry.next_fire_at is None:
        notes.append(describe_next(entry, now))  # no fire time ahead, and why
    if is_local_pipeline(entry.pipeline):
        notes.append(RUNS_IN_PYTHON)
    return row | {
        "state": "enabled" if entry.enabled else "paused",
        "state_note": "; ".join(notes),
        "trigger": trigger_label(entry),
        "zone": entry.timezone,
        "next_local": f"{local:%a %Y-%m-%d %H:%M %Z}" if local else None,
        "dst_note": _dst_note(entry),
    }


def _fields(entry: Schedule | BrokenSchedule) -> list[tuple[str, str]]:
    """The stored fields as ``show`` prints them; for a row that cannot be loaded, its stored values."""
    if isinstance(entry, BrokenSchedule):
        return [(key, show_value(key, value)) for key, value in entry_to_dict(entry).items()]
    return [
        (key, entry.exclusions.describe() or "-" if key == "exclusions" else show_value(key, value))
        for key, value in schedule_to_dict(entry).items()
    ]


def _fire_row(number: int, fire: FireTime, now: datetime) -> dict[str, Any]:
    return {
        "number": number,
        "local": fire.at.strftime("%a %Y-%m-%d %H:%M:%S %z"),
        "at": _instant(fire.utc, now),
        "note": fire.describe_note(),
    }


def _run_row(run: Run, now: datetime) -> dict[str, Any]:
    """A history row as the pages show it: the status (a CSS class too), why it ran, the
    times, the duration, the error's last line and whole text, the run's log."""
    return {
        "status": run.status.value,
        "origin": "" if run.origin is RunOrigin.schedule else run.origin.value,
        "attempt": run.attempt,
        "scheduled_for": _instant(run.scheduled_for, now),
        "started_at": _instant(run.started_at, now),
        "retry_at": _instant(run.retry_at, now),
        "duration": _duration(run.duration_seconds),
        "error_line": last_error(run),
        "error": run.error or "",
        "log_path": run.log_path or "",
        "worker": run.worker or "",
    }


def _duration(seconds: float | None) -> str:
    """``0.42s`` under a minute, ``1h30m`` above; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return format_duration(timedelta(seconds=round(seconds)))
