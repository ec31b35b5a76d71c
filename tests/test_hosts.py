"""The multi-host harness of ``tests/servers.py`` separates hosts for real.

From inside a host (a network namespace), the test's own PostgreSQL and Redis answer at the
host's gateway, and see the connection come from the host's address; the host's loopback is
its own (neither the shared Redis on 6379 nor the test's own servers' loopback ports answer
there), and the other host's gateway is unreachable. Each host has its own hostname, the root's
is left alone. Once :func:`~servers.hosts` exits, even with processes left running and the body
failing, no namespace, veth or process of it remains. A Redis restart keeps its port.

The names of namespaces and veths hold the pid, subnets are chosen under a lock file: these
tests run in parallel with any other (pytest-xdist, no group needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from servers import hosts, netns_lock, own_postgres, own_redis
from test_worker_processes import process_gone, wait_until

PROBE = """
import errno, json, socket, sys
import psycopg, redis

pg_url, redis_url, other_gateway = sys.argv[1:4]
loopback_ports = [int(port) for port in sys.argv[4:]]

def connect(address, port):
    try:
        socket.create_connection((address, port), timeout=5).close()
        return "connected"
    except OSError as error:
        return errno.errorcode.get(error.errno, type(error).__name__)

with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as conn:
    pg = conn.execute("select host(inet_server_addr()), host(inet_client_addr())").fetchone()
print(json.dumps({
    "pg": list(pg),
    "redis": redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping(),
    "loopback": {port: connect("127.0.0.1", port) for port in loopback_ports},
    "other": connect(other_gateway, int(redis_url.rsplit(":", 1)[1].split("/")[0])),
}))
"""
"""Run on a host: what it reaches, as JSON (errno names for connections that failed)."""

SHARED_REDIS_PORT = 6379


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_a_host_reaches_the_tests_own_servers_at_its_gateway_and_nothing_of_the_root_on_its_loopback() -> None:
    with (
        hosts(2) as (a, b),
        own_postgres([a.gateway, b.gateway]) as pg,
        own_redis([a.gateway, b.gateway]) as cache,
    ):
        assert a.gateway != b.gateway and a.address != b.address
        engine = sa.create_engine(pg.url, poolclass=sa.pool.NullPool)
        try:  # the root namespace reaches both servers on its loopback: their loopback ports are bound
            with engine.connect() as conn:
                assert conn.execute(sa.select(1)).scalar() == 1
        finally:
            engine.dispose()
        assert redis.Redis.from_url(cache.url, socket_connect_timeout=5).ping()

        for host, other in ((a, b), (b, a)):
            ports = [SHARED_REDIS_PORT, cache.port, pg.port]
            argv = [sys.executable, "-c", PROBE, pg.url_for(host.gateway), cache.url_for(host.gateway), other.gateway]
            done = host.run([*argv, *map(str, ports)], timeout=60)
            assert done.returncode == 0, f"on {host.hostname}:\n{done.stdout}{done.stderr}"
            seen = json.loads(done.stdout)
            assert seen["pg"] == [host.gateway, host.address], host
            assert seen["redis"] is True
            assert seen["loopback"] == {str(port): "ECONNREFUSED" for port in ports}, host
            assert seen["other"] == "ENETUNREACH", host


def test_each_host_has_its_own_hostname_and_the_root_keeps_its_own() -> None:
    root_hostname = socket.gethostname()
    with hosts(2) as made:
        names = {host.name for host in made}
        assert names <= _namespaces()
        said = []
        for host in made:
            done = host.run([sys.executable, "-c", "import socket; print(socket.gethostname())"], check=True)
            said.append(done.stdout.strip())
        assert said == ["host-a", "host-b"] == [host.hostname for host in made]
        assert root_hostname not in said
    assert socket.gethostname() == root_hostname
    assert not names & _namespaces()
    assert not any(Path("/sys/class/net", host.veth).exists() for host in made)


SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""
"""Prints the pid of a detached ``sleep`` it starts, then sleeps: both are left running."""


def test_leaving_hosts_kills_their_processes_and_removes_them_when_the_body_fails() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="the body failed"), hosts(2) as (a, b):
        names = {a.name, b.name}
        veths = [a.veth, b.veth]
        tracked = a.popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
        # started around the harness: only `ip netns pids` can find it
        untracked = subprocess.Popen([*b.command([sys.executable, "-c", SPAWNER])], stdout=subprocess.PIPE, text=True)
        for process in (tracked, untracked):
            assert process.stdout is not None
            pids += [process.pid, int(process.stdout.readline())]
        assert set(pids) <= set(a.pids()) | set(b.pids())
        raise RuntimeError("the body failed")
    try:
        assert untracked.wait(timeout=10) == -signal.SIGKILL
    finally:
        assert untracked.stdout is not None
        untracked.stdout.close()
    assert tracked.returncode == -signal.SIGKILL
    wait_until(lambda: all(process_gone(pid) for pid in pids), 10, f"processes {pids} to be gone")
    assert not names & _namespaces()
    assert not any(Path("/sys/class/net", veth).exists() for veth in veths)


def test_own_redis_restarts_on_the_same_port_empty_and_is_stopped_afterwards() -> None:
    with own_redis() as cache:
        client = redis.Redis.from_url(cache.url, socket_connect_timeout=5)
        port = cache.port
        client.set("key", "value")
        cache.stop()
        assert not cache.running
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        cache.restart()
        assert cache.running and cache.port == port and cache.url.endswith(f":{port}/0")
        assert client.ping()
        assert client.get("key") is None  # nothing persisted
        pid = cache.process.pid if cache.process else 0
    client.close()
    assert process_gone(pid)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_leftovers_of_a_dead_process_go_when_hosts_are_made() -> None:
    """A namespace (with a process left in it) and a veth of the harness, named after a dead
    process (a crashed run), are removed by the next :func:`~servers.hosts`."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("making a leftover namespace needs root and ip (iproute2)")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    assert process_gone(pid)
    leftover, veth = f"fys-{pid}-1", f"fys{pid}-1"
    with netns_lock():  # else another process's hosts() may remove it half made
        made = subprocess.run(["ip", "netns", "add", leftover], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"this process may not create network namespaces: {made.stderr.strip()}")
        subprocess.run(
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", leftover], check=True
        )
    left_running = subprocess.Popen(["ip", "netns", "exec", leftover, "sleep", "300"])
    try:
        wait_until(lambda: Path(f"/proc/{left_running.pid}/comm").read_text().strip() == "sleep", 10, "sleep")
        with hosts(1):
            assert leftover not in _namespaces()
            assert not Path("/sys/class/net", veth).exists()
        assert left_running.wait(timeout=10) == -signal.SIGKILL
    finally:
        left_running.kill()
        left_running.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", leftover], capture_output=True, check=False)
