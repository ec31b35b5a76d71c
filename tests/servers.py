"""Servers and hosts of a test's own, for tests that run several processes as on several machines.

- :class:`OwnPostgres` / :func:`own_postgres`: a PostgreSQL instance of the test's own (initdb in
  a temporary directory, on a free port), listening on 127.0.0.1 and on extra addresses, that
  the test may stop and start. The shared server on 5432 is never touched.
- :class:`OwnRedis` / :func:`own_redis`: a ``redis-server`` of the test's own, likewise (no
  persistence: a restart starts empty, on the same port). The shared server on 6379 is never
  touched.
- :class:`Host` / :func:`hosts`: network namespaces as hosts. Each one has a veth pair to the
  root namespace on a /24 of its own in ``10.213.0.0/16`` (root side ``.1``, the host's
  :attr:`~Host.gateway`, where the servers above listen; host side ``.2``), its own loopback,
  and its own hostname: every command run on it gets a UTS namespace of its own too, so
  ``socket.gethostname()`` differs per host. Hosts reach their own gateway only: not each
  other, not the root's loopback, not the outside.

Typical use::

    with hosts(2) as (a, b), own_postgres([a.gateway, b.gateway]) as pg:
        worker = a.popen([sys.executable, "-m", "flowyml_sched", ...], env={..., "DB": pg.url_for(a.gateway)})

Unavailable tools or privileges skip the test with the reason; with the environment variable
``CI`` set, a missing PostgreSQL or Redis fails it, and so does the kernel refusing, as root,
what root may do (a veth pair, say). Namespaces that the test may not create at all (not root,
no CAP_NET_ADMIN / CAP_SYS_ADMIN, ``ip netns add`` not permitted) skip it, CI or not.

Names are unique per process (the pid and a counter), so tests using these run in parallel
under pytest-xdist. Leftovers of a crashed earlier run (namespaces and veths whose pid is dead)
are removed when hosts are made. Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import itertools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from test_worker_processes import wait_until

LOOPBACK = "127.0.0.1"
"""Where every server of the test's own listens, besides the addresses it is given."""
START_TIMEOUT = 60.0
"""Deadline of a server's start (initdb and ``pg_ctl start`` each get this long too)."""
STOP_TIMEOUT = 15.0
"""Deadline of a server's stop once asked (then it is killed) and of a host's teardown."""


def _unavailable(message: str) -> NoReturn:
    """Skip the test with ``message``; fail it instead when ``CI`` is set (CI has everything)."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is a failure", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _accepts(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``address:port`` is accepted."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _with_loopback(addresses: Sequence[str]) -> tuple[str, ...]:
    """127.0.0.1 first, then ``addresses`` without repeats."""
    return tuple(dict.fromkeys([LOOPBACK, *addresses]))


# -- a PostgreSQL instance of the test's own -------------------------------------------------


def _postgres_bindir() -> Path:
    """The directory of the newest PostgreSQL server binaries (``initdb``, ``pg_ctl``), else skip
    (fail under CI)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: [int(part) for part in path.parent.parent.name.split(".") if part.isdigit()],
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH")


def _unprivileged() -> tuple[list[str], int, int] | None:
    """As root (initdb and postgres refuse to run as root): the command prefix that runs a
    program as the ``postgres`` user (else ``nobody``), and that user's uid and gid."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            user = pwd.getpwnam(name)
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv (util-linux) is needed to run PostgreSQL as an unprivileged user"
            prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
            return prefix, user.pw_uid, user.pw_gid
    raise AssertionError("running as root and there is neither a postgres nor a nobody user to run PostgreSQL as")


class _Listening:
    """A server of the test's own on :attr:`port` at :attr:`addresses`, reached by URLs of
    :attr:`URL`'s form."""

    URL = ""
    """The URL's form, with ``{address}`` and ``{port}``."""
    addresses: tuple[str, ...]
    port: int

    @property
    def url(self) -> str:
        """Its URL on 127.0.0.1 (for the test process, in the root namespace)."""
        return self.url_for(LOOPBACK)

    def url_for(self, address: str) -> str:
        """Its URL at ``address`` (one of :attr:`addresses`: a host uses its gateway)."""
        assert address in self.addresses, f"{address} is not one of the addresses it listens on: {self.addresses}"
        return self.URL.format(address=address, port=self.port)


class OwnPostgres(_Listening):
    """A PostgreSQL server in a temporary directory, on a free port, that the test may stop.

    It listens on 127.0.0.1 and on ``addresses`` (a host's :attr:`~Host.gateway`, say), and
    trusts every client (``pg_hba.conf``: ``host all all 0.0.0.0/0 trust``): user ``postgres``,
    database ``postgres``. :func:`own_postgres` makes, starts and removes one.
    """

    URL = "postgresql+psycopg://postgres@{address}:{port}/postgres"

    def __init__(
        self,
        bindir: Path,
        root: Path,
        runas: list[str],
        addresses: Sequence[str] = (),
        max_connections: int = 200,
    ):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.runas = runas
        self.addresses = _with_loopback(addresses)
        """Where it listens: 127.0.0.1 first."""
        self.max_connections = max_connections
        self.port = _free_port()
        self._started = False

    def _run(self, program: str, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.runas, str(self.bindir / program), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _check(self, program: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        done = self._run(program, *args, timeout=timeout)
        assert done.returncode == 0, f"{program} {' '.join(args)} failed:\n{done.stdout}{done.stderr}"

    def init(self) -> None:
        """initdb (trust, user ``postgres``), and trust TCP clients from anywhere it listens."""
        self._check("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write("\n# the test's hosts (network namespaces) connect from their own addresses\n")
            hba.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")

    def start(self) -> None:
        """``pg_ctl start``, waiting until it accepts connections on every address. The first start
        picks another free port if its port was taken meanwhile; later starts keep the port."""
        for attempt in itertools.count(1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            options = (
                f"-p {self.port} -c listen_addresses={','.join(self.addresses)}"
                f" -c unix_socket_directories={self.root} -c max_connections={self.max_connections}"
            )
            done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options)
            if done.returncode == 0:
                break
            log = self.log.read_text(errors="replace")[logged:] if self.log.exists() else ""
            if not self._started and attempt < 3 and "already in use" in log:
                self.port = _free_port()
                continue
            raise AssertionError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\nserver.log:\n{log}")
        self._started = True
        for address in self.addresses:
            wait_until(
                lambda address=address: _accepts(address, self.port),
                START_TIMEOUT,
                f"PostgreSQL on {address}:{self.port}",
            )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``, waiting until it has stopped."""
        self._check("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")

    def restart(self) -> None:
        """Stop (fast), then start again on the same port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def own_postgres(addresses: Sequence[str] = (), *, max_connections: int = 200) -> Iterator[OwnPostgres]:
    """A started :class:`OwnPostgres` listening on 127.0.0.1 and ``addresses``; stopped
    (immediate) and its directory removed afterwards, whatever happened. Skips (fails under CI)
    without PostgreSQL's server binaries."""
    bindir = _postgres_bindir()
    runas = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="flowyml-test-pg-"))
    if runas is not None:
        os.chown(root, runas[1], runas[2])
    server = OwnPostgres(bindir, root, runas[0] if runas else [], addresses, max_connections)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# -- a Redis server of the test's own ----------------------------------------------------------


def _redis_server() -> str:
    """The ``redis-server`` program, else skip (fail under CI)."""
    found = shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)), None
    )
    if found:
        return found
    _unavailable("no redis-server on PATH (Debian: apt-get install redis-server)")


def _redis_ping(address: str, port: int) -> bool:
    """Whether a Redis server answers PING at ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class OwnRedis(_Listening):
    """A ``redis-server`` of the test's own on a free port, bound to 127.0.0.1 and ``addresses``,
    without persistence (``--save "" --appendonly no``) or protected mode: a restart starts empty,
    on the same port. :func:`own_redis` makes, starts and stops one."""

    URL = "redis://{address}:{port}/0"

    def __init__(self, root: Path, addresses: Sequence[str] = (), program: str | None = None):
        self.program = program or _redis_server()
        self.root = root
        self.log = root / "redis.log"
        self.addresses = _with_loopback(addresses)
        """Where it listens: 127.0.0.1 first."""
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def running(self) -> bool:
        """Whether its process runs (started and not exited)."""
        return self.process is not None and self.process.poll() is None

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [
            self.program,
            "--port", str(self.port),
            "--bind", *self.addresses,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.root),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        """Start it, waiting until it answers PING on every address. The first start picks
        another free port if its port was taken meanwhile; later starts keep the port."""
        assert not self.running, "it is running already"
        for attempt in itertools.count(1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            process = self._spawn()
            self.process = process

            def ready(process: subprocess.Popen[bytes] = process) -> bool | str:
                if process.poll() is not None:
                    return "exited"
                return _redis_ping(LOOPBACK, self.port)

            outcome = wait_until(ready, START_TIMEOUT, f"redis-server on port {self.port}")
            if outcome is True:
                break
            log = self.log.read_text(errors="replace")[logged:]
            if not self._started and attempt < 3 and "already in use" in log:
                self.port = _free_port()
                continue
            raise AssertionError(f"redis-server exited with {process.returncode} at its start:\n{log}")
        self._started = True
        for address in self.addresses[1:]:
            wait_until(lambda address=address: _redis_ping(address, self.port), START_TIMEOUT, f"Redis on {address}")

    def stop(self) -> None:
        """Stop it (SIGTERM: a shutdown without saving, as nothing is to be saved), waiting for its
        exit; killed if it has not exited within :data:`STOP_TIMEOUT`."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop, then start again on the same port (empty: nothing is persisted)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def own_redis(addresses: Sequence[str] = ()) -> Iterator[OwnRedis]:
    """A started :class:`OwnRedis` bound to 127.0.0.1 and ``addresses``; stopped and its
    directory removed afterwards, whatever happened. Skips (fails under CI) without redis-server."""
    program = _redis_server()
    root = Path(tempfile.mkdtemp(prefix="flowyml-test-redis-"))
    server = OwnRedis(root, addresses, program)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


# -- network namespaces as hosts ---------------------------------------------------------------

PREFIX = "fys"
"""Namespaces are named ``fys-<pid>-<n>``, their root-side veths ``fys<pid>-<n>`` (at most 15
characters, the kernel's limit)."""
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
"""Each host gets a free /24 of this range (free: no address or route of the root namespace in it)."""
_LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
LOCK_FILE = _LOCK_DIR / "flowyml-test-netns.lock"
"""Serialises the choice of subnets (and the removal of leftovers) between processes: a fixed
path (not under ``$TMPDIR``, which may differ between processes)."""
_NAMESPACE = re.compile(rf"^{PREFIX}-(\d+)-(\d+)$")
_VETH = re.compile(rf"^{PREFIX}(\d+)-(\d+)$")
_REFUSED = re.compile(r"Operation not permitted|Permission denied|Operation not supported|not supported|Unknown device")
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
_serial = itertools.count(1)


@dataclass(frozen=True)
class _Tools:
    ip: str
    unshare: str
    sh: str
    hostname: str | None


@functools.cache
def _tools_or_reason() -> _Tools | str:
    """The programs hosts need, or why this process may not make hosts (checked once)."""
    ip, unshare, sh = shutil.which("ip") or "", shutil.which("unshare") or "", shutil.which("sh") or ""
    missing = [
        name for name, path in (("ip (iproute2)", ip), ("unshare (util-linux)", unshare), ("sh", sh)) if not path
    ]
    if missing:
        return f"network namespaces as hosts need {', '.join(missing)}"
    if os.geteuid() != 0:
        return "network namespaces as hosts need root (ip netns add, veth pairs)"
    capabilities = re.search(r"^CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
    effective = int(capabilities.group(1), 16) if capabilities else 0
    for bit, name in ((_CAP_NET_ADMIN, "CAP_NET_ADMIN"), (_CAP_SYS_ADMIN, "CAP_SYS_ADMIN")):
        if not effective >> bit & 1:
            return f"network namespaces as hosts need {name}, which this process lacks"
    done = subprocess.run([unshare, "--uts", "--", "true"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"unshare --uts is not permitted here: {done.stderr.strip()}"
    return _Tools(ip, unshare, sh, shutil.which("hostname"))


def _tools() -> _Tools:
    found = _tools_or_reason()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_tools().ip, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        message = f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        if _REFUSED.search(done.stderr):
            _unavailable(f"the kernel refused it, running as root: {message}")
        raise AssertionError(message)
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    """Names of the network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    """Names of the root namespace's interfaces."""
    names = []
    for line in _ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def _kill_all_in(namespace: str) -> None:
    """SIGKILL every process in ``namespace`` until none is left (deadline :data:`STOP_TIMEOUT`)."""

    def empty() -> bool:
        pids = [int(pid) for pid in _ip("netns", "pids", namespace, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    wait_until(empty, STOP_TIMEOUT, f"the processes in network namespace {namespace} to die")


def _remove(namespace: str, veth: str) -> None:
    """Kill what runs in ``namespace``, delete ``veth`` (its peer goes with it) and the namespace.
    The veth is deleted explicitly: a namespace's own teardown in the kernel is asynchronous (its
    veth outlives ``ip netns del`` for a while), and never happens while a process is left in it."""
    if namespace in _namespaces():
        _kill_all_in(namespace)
    if veth in _links():
        _ip("link", "del", veth)
    if namespace in _namespaces():
        _ip("netns", "del", namespace)


def _remove_leftovers() -> None:
    """Remove namespaces and veths of ours whose process is dead (a crashed earlier run)."""
    for name in _namespaces():
        match = _NAMESPACE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _remove(name, f"{PREFIX}{match.group(1)}-{match.group(2)}")
    for name in _links():
        match = _VETH.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _ip("link", "del", name, check=False)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Networks of the root namespace's IPv4 addresses and routes."""
    taken = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            taken.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unicast", "unreachable", "blackhole", "prohibit", "throw"):
            words = words[1:]
        with contextlib.suppress(ValueError, IndexError):
            taken.append(ipaddress.ip_network(words[0], strict=False))
    return [net for net in taken if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0]


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    taken = _taken_networks()
    free = [net for net in SUBNETS.subnets(new_prefix=24) if not any(net.overlaps(other) for other in taken)]
    free = [net for net in free if net.network_address.packed[2] != 0]  # 10.213.0.0/24 left alone
    assert len(free) >= count, f"only {len(free)} free /24 in {SUBNETS} for {count} hosts"
    return free[:count]


@contextlib.contextmanager
def netns_lock() -> Iterator[None]:
    """Hold :data:`LOCK_FILE` (exclusive, between processes): :func:`hosts` holds it while it
    removes leftovers and makes namespaces; hold it to make or inspect ``fys-*`` ones unraced."""
    with LOCK_FILE.open("a") as lock:
        wait_until(lambda: _try_lock(lock.fileno()), 60.0, f"the lock {LOCK_FILE}", interval=0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _hostname(index: int) -> str:
    return f"host-{string.ascii_lowercase[index]}" if index < 26 else f"host-{index + 1}"


@dataclass
class Host:
    """A network namespace with a veth to the root namespace, and a hostname of its own.

    Commands run on it (:meth:`popen`, :meth:`run`) run in its network namespace and in a UTS
    namespace of their own named :attr:`hostname`. Made and removed by :func:`hosts`.
    """

    name: str
    """The network namespace's name (``ip netns exec NAME``): ``fys-<pid>-<n>``."""
    hostname: str
    """What ``hostname`` / ``socket.gethostname()`` say on it: ``host-a``, ``host-b``, ..."""
    address: str
    """Its address (inside the namespace, on its ``eth0``)."""
    gateway: str
    """The root namespace's address on its veth: where servers listen for it."""
    veth: str
    """The root-side interface's name: ``fys<pid>-<n>``."""
    processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)
    """The processes :meth:`popen` started (killed at teardown if still running)."""

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` on this host (in its network namespace, in a UTS
        namespace of its own with its hostname). ``argv[0]`` is looked up on ``PATH``."""
        tools = _tools()
        if tools.hostname:
            script = f'{shlex.quote(tools.hostname)} "$0" && exec "$@"'
        else:
            script = 'printf %s "$0" > /proc/sys/kernel/hostname && exec "$@"'
        return [tools.ip, "netns", "exec", self.name, tools.unshare, "--uts", "--", tools.sh, "-c", script,
                self.hostname, *argv]  # fmt: skip

    def popen(self, argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on this host (``subprocess.Popen`` keyword arguments pass through). The
        process is ``argv`` itself (the wrappers exec it): its pid takes signals."""
        process = subprocess.Popen(self.command(argv), env=env, **kwargs)
        self.processes.append(process)
        return process

    def run(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` on this host to its end (``subprocess.run``): output captured as text
        unless ``stdout``/``stderr``/``capture_output``/``text`` say otherwise; not checked unless
        ``check=True``."""
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), env=env, timeout=timeout, **kwargs)

    def pids(self) -> list[int]:
        """The pids of the processes in its network namespace (``ip netns pids``)."""
        return [int(pid) for pid in _ip("netns", "pids", self.name, check=False).stdout.split()]


def _make_host(index: int, subnet: ipaddress.IPv4Network, made: list[Host]) -> None:
    serial = next(_serial)
    name, veth = f"{PREFIX}-{os.getpid()}-{serial}", f"{PREFIX}{os.getpid()}-{serial}"
    assert len(veth) <= 15, f"interface name {veth} is too long"
    gateway, address = (str(subnet.network_address + offset) for offset in (1, 2))
    added = _ip("netns", "add", name, check=False)
    if added.returncode != 0:
        message = f"ip netns add {name} failed: {added.stderr.strip()}"
        if _REFUSED.search(added.stderr):
            pytest.skip(f"this process may not create network namespaces: {message}")
        raise AssertionError(message)
    made.append(Host(name, _hostname(index), address, gateway, veth))
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", veth)
    _ip("link", "set", veth, "up")
    _ip("-n", name, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "link", "set", "lo", "up")


def _teardown(made: list[Host]) -> list[str]:
    """Remove ``made``'s hosts (their processes killed first); the problems met, if any."""
    problems = []
    for host in made:
        for process in host.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        try:
            _remove(host.name, host.veth)
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as error:
            problems.append(f"{host.name}: {error}")
    left = set(_namespaces()) & {host.name for host in made}
    if left:
        problems.append(f"network namespaces left: {sorted(left)}")
    return problems


@contextlib.contextmanager
def hosts(count: int = 2) -> Iterator[list[Host]]:
    """``count`` :class:`Host` objects (``host-a``, ``host-b``, ...), each on its own /24 of
    :data:`SUBNETS`, ready (links up). Afterwards, even when the body raised or left processes
    running, every process in their namespaces is killed and the namespaces and veths are
    removed. Skips when this process may not create network namespaces."""
    assert count >= 1
    _tools()
    made: list[Host] = []
    try:
        with netns_lock():
            _remove_leftovers()
            for index, subnet in enumerate(_free_subnets(count)):
                _make_host(index, subnet, made)
        for host in made:  # the root side's carrier follows the host side's "up"
            path = Path("/sys/class/net") / host.veth / "operstate"
            wait_until(lambda path=path: path.read_text().strip() == "up", 10.0, f"{host.veth} up")
        yield made
    except BaseException as error:
        problems = _teardown(made)
        if problems:
            error.add_note("removing the hosts: " + "; ".join(problems))
        raise
    problems = _teardown(made)
    assert not problems, "removing the hosts: " + "; ".join(problems)
