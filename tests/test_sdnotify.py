"""systemd's notify protocol against a real notify socket: the worker as systemd starts it
(``flowyml-sched run-worker`` with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``), and the
Notifier on its own."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowyml_sched.sdnotify import Notifier

CLI = Path(sys.executable).with_name("flowyml-sched")


class NotifySocket:
    """A datagram socket standing in for systemd's: collects what the worker sends."""

    def __init__(self, address: str):
        self.address = address  # what goes into NOTIFY_SOCKET ('@name' for the abstract namespace)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def receive_until(self, done: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"no such message within {timeout} s; got {self.messages}")
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def close(self) -> None:
        self.sock.close()


def fields(messages: list[str]) -> list[str]:
    """Every ``KEY=VALUE`` line of every datagram, in order."""
    return [line for message in messages for line in message.splitlines()]


def has(key: str) -> Callable[[list[str]], bool]:
    return lambda messages: any(line.startswith(key) for line in fields(messages))


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@flowyml-sched-test-{uuid.uuid4().hex}")
    yield sock
    sock.close()


def worker_command(tmp_path: Path, *extra: str) -> list[str]:
    program = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "flowyml_sched"]
    return [
        *program,
        "run-worker",
        "--db",
        str(tmp_path / "state" / "schedules.db"),
        "--state-dir",
        str(tmp_path / "state"),
        "--poll-interval",
        "0.05",
        *extra,
    ]


def worker_env(tmp_path: Path, notify: str, watchdog_usec: str | None = "2000000") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWYML_SCHEDULER_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), NOTIFY_SOCKET=notify)
    env.pop("WATCHDOG_USEC", None)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = watchdog_usec
    return env


def test_run_worker_once_sends_ready_status_watchdog_and_stopping(tmp_path: Path, path_socket: NotifySocket) -> None:
    done = subprocess.run(
        worker_command(tmp_path, "--once"),
        env=worker_env(tmp_path, path_socket.address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = fields(path_socket.drain())
    assert "READY=1" in lines
    assert "WATCHDOG=1" in lines
    assert "STOPPING=1" in lines
    assert any(line.startswith("STATUS=serving") for line in lines)
    assert lines.index("READY=1") < lines.index("WATCHDOG=1") < lines.index("STOPPING=1")
    assert lines[lines.index("STOPPING=1") + 1].startswith("STATUS=draining")


def test_run_worker_sends_stopping_after_sigterm_and_exits_cleanly(tmp_path: Path, path_socket: NotifySocket) -> None:
    process = subprocess.Popen(
        worker_command(tmp_path),
        env=worker_env(tmp_path, path_socket.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path_socket.receive_until(has("READY=1"))
        # the loop keeps the watchdog fed: several WATCHDOG=1 after READY
        path_socket.receive_until(lambda m: fields(m).count("WATCHDOG=1") >= 3)
        assert not has("STOPPING=1")(path_socket.messages)
        process.send_signal(signal.SIGTERM)
        path_socket.receive_until(has("STOPPING=1"))
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "received SIGTERM" in stderr


def test_without_watchdog_usec_no_watchdog_pings_are_sent(tmp_path: Path, path_socket: NotifySocket) -> None:
    done = subprocess.run(
        worker_command(tmp_path, "--once"),
        env=worker_env(tmp_path, path_socket.address, watchdog_usec=None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = fields(path_socket.drain())
    assert "READY=1" in lines and "STOPPING=1" in lines
    assert "WATCHDOG=1" not in lines


def test_an_abstract_namespace_address_receives_the_same_messages(
    tmp_path: Path, abstract_socket: NotifySocket
) -> None:
    done = subprocess.run(
        worker_command(tmp_path, "--once"),
        env=worker_env(tmp_path, abstract_socket.address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = fields(abstract_socket.drain())
    assert {"READY=1", "WATCHDOG=1", "STOPPING=1"} <= set(lines)


# -- the Notifier on its own ---------------------------------------------------------------


def test_a_notifier_without_notify_socket_does_nothing() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    notifier.ready("up")
    notifier.status("fine")
    notifier.watchdog()
    notifier.stopping("bye")
    assert notifier._socket is None  # not even a socket was made


def test_a_notifier_sends_one_datagram_per_call(path_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_socket.address, "WATCHDOG_USEC": "500000"})
    assert notifier.enabled and notifier.watchdog_seconds == 0.5
    notifier.ready("serving x")
    notifier.status("serving; 2 running")
    notifier.watchdog()
    notifier.stopping("draining")
    notifier.close()
    assert path_socket.receive_until(lambda m: len(m) == 4) == [
        "READY=1\nSTATUS=serving x",
        "STATUS=serving; 2 running",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=draining",
    ]


@pytest.mark.parametrize("usec", ["", "0", "abc", "-5"])
def test_a_notifier_without_a_positive_watchdog_usec_sends_no_watchdog(path_socket: NotifySocket, usec: str) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_socket.address, "WATCHDOG_USEC": usec})
    assert notifier.watchdog_seconds is None
    notifier.watchdog()
    notifier.status("still here")
    assert path_socket.receive_until(lambda m: len(m) == 1) == ["STATUS=still here"]
    assert path_socket.drain() == ["STATUS=still here"]


def test_a_notifier_whose_socket_is_gone_logs_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.WARNING, logger="flowyml_sched.sdnotify"):
        notifier.ready("up")
    assert "sd_notify" in caplog.text and "nobody-listens.sock" in caplog.text
