"""A throw-away PostgreSQL server on loopback for the tests (Debian's `postgresql` package).

PostgreSQL refuses to run as root, so under root the cluster is created and run by the
unprivileged `postgres` user (through `runuser`, or `su`). The server listens only on
127.0.0.1 at a free port with password (SCRAM) authentication for TCP, keeps its socket in its
own data folder, runs without fsync (a test server), and is stopped and deleted at teardown.

Without the binaries the tests that need it are skipped, unless DOCTOR_REQUIRE_POSTGRES is set
(`.ci/run` sets it), in which case they fail.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "doctor"
PASSWORD = "Pg-s3cret-7731"  # the tests check that it appears in no output
DATABASE = "doctor"


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb, or the one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data: Path
    port: int
    bin: Path
    as_user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.as_user:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.as_user, "--", *cmd]
            else:
                import shlex

                cmd = ["su", self.as_user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            log = self.data / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr}\n{tail}")
        return out

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self.run(self.bin / "psql", "-h", self.data, "-p", self.port, "-U", "postgres",
                        "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql).stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}" OWNER {USER}')
        return self.database_url(name)

    def stop(self) -> None:
        self.run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)


def start() -> Server:
    bindir = bin_dir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL's initdb was not found (apt-get install postgresql)")
    as_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise FileNotFoundError("running as root and there is no 'postgres' user to run "
                                    "the server (apt-get install postgresql creates it)") from None
        as_user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="doctor-pg-"))  # under /tmp: the server user can enter
    data = root / "data"
    data.mkdir()
    if as_user:
        entry = pwd.getpwnam(as_user)
        for p in (root, data):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o755)
    os.chmod(data, 0o700)
    server = Server(data, 0, bindir, as_user)
    server.run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust",
               "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions")
    last: Exception | None = None
    for _ in range(3):  # the free port can be taken between choosing and binding it
        server.port = free_port()
        opts = (f"-h 127.0.0.1 -p {server.port} -k {data} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        try:
            server.run(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", data / "server.log",
                       "-w", "-t", "60", "start")
            break
        except RuntimeError as e:
            last = e
            time.sleep(0.5)
    else:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {last}")
    server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
    server.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
    return server


@pytest.fixture(scope="session")
def postgres():
    """A running server for the session; yields a `Server` (`.url` has the password in it)."""
    try:
        server = start()
    except (FileNotFoundError, RuntimeError) as e:
        if os.environ.get("DOCTOR_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL server for the tests: {e}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data.parent, ignore_errors=True)
