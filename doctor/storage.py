"""Study storage: default URL, study-name rules, password masking, opening a storage.

SQL stays inside Optuna: the doctor only builds URLs and hands them over.

Which storage for which run (measured; docs/multi-machine.md has the numbers):

- one process, or `--workers N` on one machine: SQLite, `sqlite:///studies/<study>.db`. Every
  SQLite transaction starts with `BEGIN IMMEDIATE` (see `_serialise_sqlite`): Optuna's
  `SELECT … FOR UPDATE` is a no-op on SQLite, and without it two workers popped the same queued
  trial and one crashed ("Cannot tell a COMPLETE trial"); with it, 4 workers × 20 trials gave
  exactly 80 trials, each run once. One file keeps `doctor studies`, the dashboard, `--resume`
  and the report on the same URL, and keeps Optuna's heartbeat (RDB storages only).
- several machines: PostgreSQL or MySQL (`postgresql://user@host/db`).
- a journal file (`--storage studies/NAME.log`) is accepted too: about 10× cheaper per write with
  many workers, but it has no heartbeat, so only `--resume` recovers trials of dead workers.

Heartbeat: every running trial writes a heartbeat every `DOCTOR_HEARTBEAT_S` seconds (default
30; the variable exists for tests); a trial silent for 3 intervals is stale: the next trial
started by any worker marks it FAIL and queues its parameters once more (`RetryStale`).
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

from doctor.errors import InputError

log = logging.getLogger(__name__)

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
HEARTBEAT_S = 30
#: A trial whose heartbeat is older than this many intervals is stale.
GRACE_INTERVALS = 3
#: How often a trial left by a dead worker is queued again (a trial that kills its worker
#: every time, e.g. through the kernel's OOM killer, is not retried forever).
MAX_RETRY = 1
SQLITE_TIMEOUT_S = 120


def check_study_name(name: str) -> str:
    """Study names become file names under `studies/`: no separators, no `..`."""
    if not STUDY_NAME.match(name) or ".." in name:
        raise InputError(f"--study '{name}' is not a valid study name; use letters, digits, '_', "
                         "'-' and '.', starting with a letter or digit")
    return name


def default_study_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip("._-") or "study"
    name = re.sub(r"\.{2,}", "_", name)
    return name[:128]


def default_storage(study: str) -> str:
    Path("studies").mkdir(exist_ok=True)
    return f"sqlite:///studies/{check_study_name(study)}.db"


_PLACEHOLDER = "doctorPasswordMask"
_NETLOC_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_QUERY_PASSWORD = re.compile(r"((?:[?&;]|\b)(?:password|passwd|pwd)=)[^&\s;]*", re.I)


def mask(url: str) -> str:
    """The URL with any password replaced by ***, for logs, reports, notes and errors."""
    if not isinstance(url, str):
        return url
    if "://" not in url and "password" not in url.lower():
        return url
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        changed = False
        if u.password:
            u = u.set(password=_PLACEHOLDER)
            changed = True
        keys = [k for k in u.query if k.lower() in ("password", "passwd", "pwd")]
        if keys:
            u = u.update_query_dict({k: _PLACEHOLDER for k in keys})
            changed = True
        if not changed:
            return url
        return mask_text(u.render_as_string(hide_password=False).replace(_PLACEHOLDER, "***"))
    except Exception:  # not a SQLAlchemy URL (or text with a URL inside)
        return mask_text(url)


def mask_text(text: str) -> str:
    """Mask passwords of every URL inside a piece of text (messages, logs)."""
    if not isinstance(text, str):
        return text
    return _QUERY_PASSWORD.sub(r"\1***", _NETLOC_PASSWORD.sub(r"\1***@", text))


def heartbeat_interval() -> int:
    """Seconds between heartbeats of a running trial (`DOCTOR_HEARTBEAT_S`, for tests)."""
    raw = os.environ.get("DOCTOR_HEARTBEAT_S")
    if raw:
        try:
            return max(1, int(float(raw)))
        except ValueError:
            log.warning("DOCTOR_HEARTBEAT_S=%r is not a number of seconds; using %d", raw, HEARTBEAT_S)
    return HEARTBEAT_S


def grace_period() -> int:
    """Seconds without a heartbeat after which a running trial counts as abandoned."""
    return GRACE_INTERVALS * heartbeat_interval()


def is_journal(url: str) -> bool:
    return "://" not in url and (url.endswith(".log") or url.endswith(".journal"))


class RetryStale:
    """A trial whose worker died: it is FAIL already; queue its parameters once more.

    Like Optuna's `RetryHeartbeatStaleTrialCallback` (the same `failed_trial` and
    `retry_history` system attributes, so its `retried_trial_number` works), but the retry does
    not inherit the dead trial's user attributes (its reason, worker, partial symptoms), only
    `doctor:retry_of` and whether it was the prescription.
    """

    def __init__(self, max_retry: int = MAX_RETRY) -> None:
        self.max_retry = max_retry

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        if len(history) > self.max_retry:
            log.warning("trial %d was abandoned by its worker again; not retried a %s time",
                        trial.number, _ordinal(len(history)))
            return
        user: dict[str, Any] = {"doctor:retry_of": trial.number}
        for mark in ("doctor:prescribed", "doctor:competing", "doctor:prior", "doctor:widened"):
            if trial.user_attrs.get(mark):
                user[mark] = trial.user_attrs[mark]
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, params=trial.params,
            distributions=trial.distributions, user_attrs=user,
            system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                          "retry_history": history}))
        log.info("trial %d was left running by a worker that stopped; marked failed and "
                 "queued again with the same parameters", trial.number)


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


def _serialise_sqlite(storage: Any) -> None:
    """Make every SQLite transaction `BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe).

    pysqlite starts a transaction only before the first write, so Optuna's read-check-write
    of a queued trial (`SELECT … FOR UPDATE`, which SQLite ignores) races between processes.
    Taking the write lock at the start of each transaction serialises them; waiting for the
    lock uses the connection's busy timeout.
    """
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while Optuna set the schema up lack the listeners


def open_storage(url: str):
    """An Optuna storage for `url`: RDB (SQLite, PostgreSQL, MySQL) or a journal file (*.log)."""
    import optuna

    if not isinstance(url, str) or not url.strip():
        raise InputError("--storage is empty; pass a database URL such as sqlite:///studies/NAME.db")
    if "://" not in url:
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            try:
                return optuna.storages.JournalStorage(JournalFileBackend(url))
            except Exception as e:
                raise InputError(f"--storage '{url}': cannot open the journal file "
                                 f"({type(e).__name__}: {e}); pass a writable path") from None
        raise InputError(f"--storage '{mask(url)}' is not a database URL; use e.g. "
                         "sqlite:///studies/NAME.db or postgresql://user@host/db")
    shown = url
    url = _with_installed_driver(url)
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    memory = False
    if sqlite:
        path = url.split("///", 1)[-1] if "///" in url else ""
        memory = not path or path == ":memory:" or "mode=memory" in url
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    interval = heartbeat_interval()
    last: Exception | None = None
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=interval, grace_period=GRACE_INTERVALS * interval,
                    heartbeat_stale_trial_callback=RetryStale(), **kwargs)
            if sqlite and not memory:
                _serialise_sqlite(storage)
            return storage
        except ImportError as e:
            raise InputError(f"--storage '{mask(shown)}': the database driver is not installed "
                             f"({mask_text(str(e))}); install it, e.g. pip install "
                             "psycopg2-binary (PostgreSQL) or pymysql (MySQL)") from None
        except Exception as e:  # noqa: BLE001 - every driver has its own errors
            last = e
            text = str(e).lower()
            # Several machines creating the schema of a new database at the same moment: one
            # wins, the others see "already exists"; opening again then finds the tables.
            if attempt < 2 and ("already exists" in text or "duplicate key" in text):
                time.sleep(0.5 + attempt)
                continue
            break
    msg = _first_line(last)
    for u in (url, shown):
        for part in (u, u.split("@")[0]):
            msg = msg.replace(part, mask(shown))
    raise InputError(f"--storage '{mask(shown)}': cannot open the database ({mask_text(msg)}); check "
                     "the URL and that the server is running") from None


#: SQLAlchemy's default driver for a bare scheme, and the alternatives the doctor accepts.
_DRIVERS = {"postgresql": ("psycopg", (("psycopg2", "postgresql+psycopg2"),)),
            "mysql": ("MySQLdb", (("pymysql", "mysql+pymysql"),))}


def _with_installed_driver(url: str) -> str:
    """`postgresql://` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 when only it is
    installed (and pymysql for `mysql://`), so the plain URL from the docs works."""
    import importlib.util

    scheme = url.split("://", 1)[0]
    if scheme not in _DRIVERS:
        return url
    default, alternatives = _DRIVERS[scheme]
    if importlib.util.find_spec(default) is not None:
        return url
    for module, drivername in alternatives:
        if importlib.util.find_spec(module) is not None:
            return drivername + url[len(scheme):]
    return url


def _first_line(e: Exception | None) -> str:
    if e is None:
        return "unknown error"
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("(Background on this error"):
            return line[:300]
    return type(e).__name__
