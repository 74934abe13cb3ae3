"""A private PostgreSQL cluster and Redis server for one chaos run, and child processes.

Nothing here touches the machine's own PostgreSQL (5432) or Redis (6379): other people's
tests and benchmarks use them. The cluster is ``initdb`` into the run's directory and listens
on a free loopback port (its socket in the same directory), trust authentication, superuser
``root``; Redis is a child process with persistence off, so a restart loses everything, as the
fault asks. PostgreSQL refuses to run as root: as root, its commands run as ``postgres``.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the chaos driver dies, however it dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Child:
    """One child process in its own process group (so a kill takes its pool children too)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path):
        self.name, self.argv, self.env, self.log_path, self.cwd = name, argv, env, log, cwd
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> Child:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: no cleanup, no acks, like a machine losing power."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        self.kills += 1

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.kills -= 1
        # Whatever the group left behind (a pool child mid-task) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _pg_bin() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("chaos: PostgreSQL's initdb was not found (apt-get install postgresql)")


class PrivatePostgres:
    """``initdb`` once, then start, crash (``-m immediate``) and restart at will."""

    def __init__(self, root: Path, *, database: str = "outreach_chaos"):
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.log = root / "logs" / "postgres.log"
        self.port = free_port()
        self.database = database
        self.bin = _pg_bin()
        self.restarts = 0
        # PostgreSQL will not run as root; the system's postgres user owns the cluster then.
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgres://root@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(
            command, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.dir, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            # The run's directory must be traversable by that user.
            os.chmod(self.dir.parent, 0o755)
        self._run(
            "initdb", "-D", str(self.data), "-U", "root", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Stop as a crash would: no checkpoint, every backend killed; recovery on start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def restart(self, down_seconds: float) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def sql(self, statement: str, **values: str) -> str:
        """Run SQL on the run's database (no Django needed); ``values`` are psql variables,
        quoted by psql where the statement says ``:'name'``. Returns psql's output."""
        variables = [f"--variable={name}={value}" for name, value in values.items()]
        return subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "root",
             "-d", self.database, "-v", "ON_ERROR_STOP=1", "-qAt", *variables],
            input=statement, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def createdb(self, name: str | None = None, *, template: str | None = None) -> None:
        """The run's database, or ``name`` as a copy of ``template`` (a file copy: no other
        session may be connected to the template meanwhile)."""
        options = ["-T", template] if template else []
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "root",
             *options, name or self.database],
            check=True, capture_output=True,
        )  # fmt: skip


class PrivateRedis:
    """``redis-server`` as a child: no RDB, no AOF, so a kill loses the broker and the buckets."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.dir = root / "redis"
        self.log = root / "logs" / "redis.log"
        self.child: Child | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("chaos: redis-server was not found (apt-get install redis-server)")
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
        ]  # fmt: skip
        self.child = Child("redis", argv, env=dict(os.environ), log=self.log, cwd=self.dir).start()
        wait_for(self.ping, timeout=20, what="the private Redis")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def crash(self) -> None:
        if self.child:
            self.child.kill()

    def restart(self, down_seconds: float) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.child:
            self.child.stop(timeout=5)
