"""The REST API (``flowyml-sched serve``): a front end like the CLI, on FastAPI.

Every handler parses, calls one use case of :mod:`flowyml_sched.application` on the store the
CLI and the workers use, and renders JSON; errors map to status codes in one place
(:func:`status_of`): 404 for an unknown schedule, 409 for a name taken, 422 with the CLI's own
message for bad input, 503 when the store cannot be used. Imported only by ``serve`` (the CLI
and the worker never load FastAPI or pydantic).

Auth: bearer tokens (:class:`Tokens`): an ``admin`` token may do everything, a ``read`` token
only what reads; compared in constant time (``hmac.compare_digest``). With no token at all,
every request is let in: ``serve`` then listens on loopback only.
"""

import contextlib
import gc
import hmac
import os
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from flowyml_sched.application import Scheduler
from flowyml_sched.errors import (
    RunGone,
    ScheduleExists,
    ScheduleNotFound,
    SchedulerError,
    StoreError,
    StoreMissing,
    UsageError,
)
from flowyml_sched.exposition import Exposition
from flowyml_sched.model import RunStatus, entry_to_dict, run_to_dict, schedule_to_dict

NOTE_LIMIT = 10_000
"""Characters of a pause note given through the API or the dashboard."""
Role = Literal["admin", "read"]
ROLES: tuple[Role, ...] = ("admin", "read")


class TokenFileError(SchedulerError, ValueError):
    """Tokens that cannot be used: a token file unreadable, readable by others, empty or with
    a bad line; a token that no HTTP header holds. ``where`` names the file or the variable."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens by role: ``admin`` ones may change schedules, ``read`` ones only read."""

    admin: tuple[str, ...] = ()
    read: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.admin or self.read)

    def role_of(self, token: str) -> Role | None:
        """The role ``token`` grants, or None; every stored token is compared, in constant time."""
        found: Role | None = None
        for role, known in (("admin", self.admin), ("read", self.read)):
            for candidate in known:
                if hmac.compare_digest(candidate.encode(), token.encode()) and found is None:
                    found = role  # type: ignore[assignment]
        return found

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Tokens":
        """``FLOWYML_SCHEDULER_API_TOKEN`` (admin) and ``FLOWYML_SCHEDULER_API_READ_TOKEN`` (read),
        in either spelling of the prefix."""

        def value(name: str) -> tuple[str, ...]:
            for prefix in ("FLOWYML_SCHEDULER_", "flowyml_SCHEDULER_"):
                text = environ.get(prefix + name, "").strip()
                if text:
                    return (text,)
            return ()

        tokens = cls(admin=value("API_TOKEN"), read=value("API_READ_TOKEN"))
        for token in (*tokens.admin, *tokens.read):
            _check_token(token, "FLOWYML_SCHEDULER_API_TOKEN / _API_READ_TOKEN")
        return tokens

    @classmethod
    def from_file(cls, path: Path) -> "Tokens":
        """One ``ROLE TOKEN`` a line (``admin`` or ``read``; a line whose first character
        other than a blank is ``#`` is a comment: a token may hold ``#``). The file
        must be readable by its owner only (mode 0600 or 0400). Raises TokenFileError."""
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"token file {path}", f"cannot be read ({exc})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(
                f"token file {path}", f"its mode is {stat.S_IMODE(mode):04o}; make it 0600 (chmod 600)"
            )
        found: dict[str, list[str]] = {role: [] for role in ROLES}
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != 2 or words[0] not in ROLES:
                raise TokenFileError(f"token file {path}", f"line {number}: expected 'admin TOKEN' or 'read TOKEN'")
            found[words[0]].append(words[1])
        tokens = cls(admin=tuple(found["admin"]), read=tuple(found["read"]))
        if not tokens:
            raise TokenFileError(f"token file {path}", "it holds no token: one 'admin TOKEN' or 'read TOKEN' a line")
        for token in (*tokens.admin, *tokens.read):
            _check_token(token, f"token file {path}")
        return tokens

    def __repr__(self) -> str:  # never a token in a log or a traceback
        return f"Tokens(admin={len(self.admin)}, read={len(self.read)})"


class Retries(BaseModel):
    """``retries: {max: 2, backoff: 1m}``."""

    model_config = ConfigDict(extra="forbid")
    max: StrictInt | None = None
    backoff: str | None = None


class ScheduleFields(BaseModel):
    """The keys of a YAML entry (flowyml-sched.yaml(5)), each optional: what ``PATCH`` changes
    (the others keep their values). Texts as in YAML: ``"02:30"``, ``"15m"``, ``"2026-01-01T00:00:00Z"``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"daily": "03:15", "timeout": "45m", "params": {"region": "eu"}}]},
    )

    pipeline: str | None = None
    cron: str | None = None
    daily: str | None = None
    hourly: StrictInt | str | None = None
    every: str | None = None
    anchor: str | None = None
    timezone: str | None = None
    params: dict[str, Any] | None = None
    exclude: dict[str, Any] | None = None
    on_excluded: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    enabled: bool | None = None
    pause_note: str | None = None
    catchup: str | None = None
    max_catchup: StrictInt | None = None
    misfire_grace: str | None = None
    overlap: str | None = None
    timeout: str | None = None
    retries: StrictInt | Retries | None = None

    def fields(self) -> dict[str, Any]:
        """The plain fields given (:mod:`flowyml_sched.fields`); the hourly minute as text."""
        out = self.model_dump(exclude_none=True)
        if "hourly" in out:
            out["hourly"] = str(out["hourly"])
        return out


def _check_token(token: str, where: str) -> None:
    """A token travels in an HTTP header: printable ASCII, at least 8 characters."""
    if not (token.isascii() and token.isprintable()) or len(token) < 8:
        raise TokenFileError(
            where, "a token must be at least 8 printable ASCII characters (an HTTP header holds no other)"
        )


class NewSchedule(ScheduleFields):
    """A schedule to create: flowyml's request body (``pipeline_name``, ``schedule_type`` with
    ``hour``/``minute``/``interval_seconds``/``cron_expression``) or the keys of a YAML entry
    (``pipeline`` and one of ``cron``, ``daily``, ``hourly``, ``every``, with the others)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "daily_etl_job",
                    "pipeline_name": "etl.jobs:run",
                    "schedule_type": "daily",
                    "hour": 2,
                    "minute": 30,
                    "timezone": "Europe/Berlin",
                },
                {"name": "weekday-report", "pipeline": "daily_summary", "cron": "0 9 * * 1-5", "timezone": "UTC"},
            ]
        },
    )

    name: str
    pipeline_name: str | None = None
    schedule_type: Literal["cron", "daily", "hourly", "interval"] | None = None
    hour: StrictInt | None = None
    minute: StrictInt | None = None
    interval_seconds: StrictInt | None = None
    cron_expression: str | None = None


class Problem(BaseModel):
    """An error: one line saying what was wrong and what would be valid."""

    detail: str


class Pause(BaseModel):
    """Why a schedule is paused (optional)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=NOTE_LIMIT)


class RunNow(BaseModel):
    """Parameters of this run only, over the schedule's (optional)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] | None = None


def create_app(scheduler_factory: Callable[[], Scheduler], tokens: Tokens, *, public_health: bool = False) -> FastAPI:
    """The API on the store that ``scheduler_factory`` opens (once, at the first request;
    closed at shutdown). ``public_health`` lets /metrics and the health endpoints answer without a token."""
    holder: dict[str, Scheduler] = {}

    def scheduler() -> Scheduler:
        if "it" not in holder:
            holder["it"] = scheduler_factory()
        return holder["it"]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if "it" in holder:
            holder.pop("it").close()

    app = FastAPI(
        lifespan=lifespan,
        title="flowyml-sched",
        summary="Schedules, their runs and the scheduler's health.",
        version="1",
        responses={
            status: {"model": Problem, "description": description}
            for status, description in (
                (400, "A body that cannot even be parsed (nested too deep)"),
                (401, "No valid token"),
                (403, "A read token, where the admin token is needed"),
                (404, "No schedule of that name"),
                (409, "The name is taken"),
                (422, "Bad input: the message names the field and what would be valid"),
                (503, "The store cannot be used"),
            )
        },
    )
    bearer = HTTPBearer(auto_error=False)

    def role(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Role | None:
        """The caller's role, kept on the request for the error handlers."""
        found: Role | None = "admin"
        if tokens:
            found = None if credentials is None else tokens.role_of(credentials.credentials)
        request.state.role = found
        return found

    def reader(
        found: Annotated[Role | None, Depends(role)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if found is None:
            if credentials is None:
                raise _Refused(401, "a bearer token is needed: Authorization: Bearer TOKEN")
            raise _Refused(401, "the bearer token given is not one of this server's")

    def admin(
        request: Request,
        found: Annotated[Role | None, Depends(role)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        reader(found, credentials)
        if found != "admin":
            raise _Refused(403, "this needs the admin token; the token given may only read")
        if not tokens and cross_site(request):  # a page elsewhere must not drive a server that asks no token
            raise _Refused(
                403,
                "a change asked for by a page of another site: without tokens only this server's own pages "
                "and clients that are not browsers may change schedules",
            )

    def health_reader(
        found: Annotated[Role | None, Depends(role)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not public_health:
            reader(found, credentials)

    read = [Depends(reader)]
    write = [Depends(admin)]

    @app.exception_handler(_Refused)
    def refused(request: Request, exc: _Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's (the dashboard's too)
            every = [
                r for route in app.routes for r in getattr(getattr(route, "original_router", None), "routes", [route])
            ]
            routes = [r for r in every if isinstance(r, APIRoute) and r.matches(request.scope)[0] != Match.NONE]
            fixed = [r for r in routes if "{" not in r.path_format]  # /api/schedules/health, not .../{name}
            headers["Allow"] = ", ".join(sorted({m for r in fixed or routes for m in r.methods}))
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(SchedulerError)
    def scheduler_error(request: Request, exc: SchedulerError) -> JSONResponse:
        status = status_of(exc)
        if status == 503 and getattr(request.state, "role", None) is None:
            # an anonymous caller (--public-metrics' health) learns nothing of where the store is
            return JSONResponse({"detail": "the store cannot be used"}, status_code=503)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"the body is not JSON ({e.get('ctx', {}).get('error', 'cannot be read')})"
            if e.get("type") == "json_invalid"
            else f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems) or "bad request"}, status_code=422)

    @app.get("/api/schedules", dependencies=read, summary="Every schedule, with its last run")
    def list_schedules() -> list[dict[str, Any]]:
        return [entry_to_dict(e) | {"last_run": run_to_dict(r) if r else None} for e, r in scheduler().list()]

    @app.post("/api/schedules", dependencies=write, status_code=201, summary="Create a schedule")
    def create_schedule(body: NewSchedule) -> dict[str, Any]:
        return schedule_to_dict(scheduler().add(fields_of(body.fields()), check_pipeline=False))

    @app.get("/api/scheduler/health", dependencies=[Depends(health_reader)], summary="The scheduler's health")
    def health() -> dict[str, Any]:
        return scheduler().health()

    app.get("/api/schedules/health", dependencies=[Depends(health_reader)], summary="The same, flowyml's path")(health)

    exposition = Exposition()
    frozen: list[bool] = []

    @app.get(
        "/metrics",
        dependencies=[Depends(health_reader)],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus' text format"}
        },
    )
    def metrics() -> Response:
        body = exposition.render(scheduler().metrics())
        if not frozen:
            # Once: what the process has built by its first scrape (the frameworks' objects, the
            # counts and text kept per schedule) lives as long as it does, so it leaves the
            # collector's full passes: each scanned it all, 35-50 ms in 4 scrapes of 10 with
            # 10,000 schedules, 4-7 ms after (bench/api.py's setting, measured in-process).
            gc.freeze()
            frozen.append(True)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/workers", dependencies=read, summary="Live workers")
    def workers() -> list[dict[str, Any]]:
        return [_worker_dict(w) for w in scheduler().live_workers()]

    @app.get("/api/schedules/{name}", dependencies=read, summary="One schedule and its next fire times")
    def get_schedule(name: str) -> dict[str, Any]:
        entry, fires = scheduler().show(name, 10)
        return entry_to_dict(entry) | {"next_fire_times": [f.at.isoformat() for f in fires]}

    @app.patch("/api/schedules/{name}", dependencies=write, summary="Change fields of a schedule (as edit)")
    def edit_schedule(name: str, body: ScheduleFields) -> dict[str, Any]:
        return schedule_to_dict(scheduler().edit(name, body.fields(), check_pipeline=False))

    @app.delete("/api/schedules/{name}", dependencies=write, status_code=204, summary="Delete a schedule")
    def delete_schedule(name: str) -> Response:
        scheduler().remove(name)
        return Response(status_code=204)

    @app.post("/api/schedules/{name}/enable", dependencies=write, summary="Resume (flowyml's name)")
    @app.post("/api/schedules/{name}/resume", dependencies=write, summary="Resume from the next fire time")
    def resume(name: str) -> dict[str, Any]:
        toggled = scheduler().resume(name)
        return entry_to_dict(toggled.entry) | {"changed": toggled.changed}

    @app.post("/api/schedules/{name}/disable", dependencies=write, summary="Pause (flowyml's name)")
    @app.post("/api/schedules/{name}/pause", dependencies=write, summary="Pause, with an optional note")
    def pause(name: str, body: Pause | None = None) -> dict[str, Any]:
        toggled = scheduler().pause(name, body.note if body else None)
        return entry_to_dict(toggled.entry) | {"changed": toggled.changed}

    @app.get("/api/schedules/{name}/history", dependencies=read, summary="The last runs, newest first")
    def history(
        name: str,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
        status: Annotated[RunStatus | None, Query(description="Only those of the last `limit` of this status")] = None,
    ) -> list[dict[str, Any]]:
        runs = scheduler().history(name, limit)
        return [run_to_dict(r) for r in runs if status is None or r.status is status]

    @app.get("/api/schedules/{name}/next", dependencies=read, summary="The next fire times")
    def next_fire_times(name: str, count: Annotated[int, Query(ge=1, le=1000)] = 5) -> list[dict[str, Any]]:
        from flowyml_sched.clock import utc_now

        _schedule, fires = scheduler().preview(name, utc_now(), count)
        return [{"fire_time": f.at.isoformat(), "utc": f.utc.isoformat(), "note": f.describe_note()} for f in fires]

    @app.post("/api/schedules/{name}/run", dependencies=write, status_code=202, summary="Run now (as trigger)")
    def run_now(name: str, body: RunNow | None = None) -> dict[str, Any]:
        run = scheduler().trigger(name, body.params if body else None)
        return run_to_dict(run) | {"id": run.id}

    from flowyml_sched.dashboard import dashboard_router

    app.include_router(dashboard_router(scheduler, tokens))
    return app


def cross_site(request: Request) -> bool:
    """True when a browser sent ``request`` from a page of another origin: its ``Origin`` names
    another host or port than ``Host``, or its ``Sec-Fetch-Site`` says so. Clients that are
    not browsers send neither."""
    origin = request.headers.get("origin")
    if origin is not None:
        return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


_TYPE_KEYS = {"cron": "cron", "daily": "daily", "hourly": "hourly", "interval": "every"}


def fields_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request body as the plain fields of :mod:`flowyml_sched.fields`: flowyml's keys
    (``pipeline_name``, ``schedule_type`` + ``hour``/``minute``/``interval_seconds``/
    ``cron_expression``) turned into a YAML entry's, which pass as they are. Raises UsageError
    for keys that do not fit together."""
    fields = {key: value for key, value in body.items() if value is not None}
    if "pipeline_name" in fields:
        if "pipeline" in fields:
            raise UsageError("give pipeline_name or pipeline, not both")
        fields["pipeline"] = fields.pop("pipeline_name")
    kind = fields.pop("schedule_type", None)
    if kind is not None and any(key in fields for key in _TYPE_KEYS.values()):
        given = ", ".join(key for key in _TYPE_KEYS.values() if key in fields)
        raise UsageError(f"give schedule_type or {given}, not both")
    hour, minute = fields.pop("hour", None), fields.pop("minute", None)
    seconds, expression = fields.pop("interval_seconds", None), fields.pop("cron_expression", None)
    if kind is None:
        if any(v is not None for v in (hour, minute, seconds, expression)):
            raise UsageError("hour, minute, interval_seconds and cron_expression go with schedule_type")
        return fields
    if kind not in _TYPE_KEYS:
        raise UsageError(f"invalid schedule_type {kind!r}: expected one of cron, daily, hourly, interval")
    if kind == "daily":
        fields["daily"] = f"{_whole(hour, 'hour', 0):02d}:{_whole(minute, 'minute', 0):02d}"
    elif kind == "hourly":
        fields["hourly"] = str(_whole(minute, "minute", 0))
    elif kind == "interval":
        fields["every"] = f"{_whole(seconds, 'interval_seconds', None)}s"
    else:
        if not isinstance(expression, str):
            raise UsageError("schedule_type cron needs cron_expression, such as '0 9 * * 1-5'")
        fields["cron"] = expression
    return fields


def _whole(value: Any, name: str, default: int | None) -> int:
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{name} must be a whole number, not {value!r}")
    return value


def _worker_dict(worker: Any) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at.isoformat(),
        "heartbeat_at": worker.heartbeat_at.isoformat(),
        "lease_expires_at": worker.lease_expires_at.isoformat(),
        "status": worker.status,
        "lock_backend": worker.lock_backend,
        "lock_problem": worker.lock_problem,
        "lock_target": worker.lock_target,
    }


def status_of(exc: SchedulerError) -> int:
    """The HTTP status of a use case's error: the one place they are mapped."""
    if isinstance(exc, ScheduleNotFound | RunGone):
        return 404
    if isinstance(exc, ScheduleExists):
        return 409
    if isinstance(exc, StoreError | StoreMissing):
        return 503
    return 422


def loopback(host: str) -> bool:
    """True for a host name or address that only this machine reaches."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_for(environ: Mapping[str, str] | None = None, token_file: Path | None = None) -> "Tokens":
    """The tokens of ``token_file`` when given, else of the environment. Raises TokenFileError."""
    if token_file is not None:
        return Tokens.from_file(token_file)
    return Tokens.from_environment(os.environ if environ is None else environ)
