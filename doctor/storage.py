"""Study storage: default URL, study-name rules, password masking, opening a storage.

SQL stays inside Optuna: the doctor only builds URLs and hands them over.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from doctor.errors import InputError

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_study_name(name: str) -> str:
    """Study names become file names under `studies/`: no separators, no `..`."""
    if not STUDY_NAME.match(name) or ".." in name:
        raise InputError(f"--study '{name}' is not a valid study name; use letters, digits, '_', "
                         "'-' and '.', starting with a letter or digit")
    return name


def default_study_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip("._-") or "study"
    return name[:128]


def default_storage(study: str) -> str:
    Path("studies").mkdir(exist_ok=True)
    return f"sqlite:///studies/{check_study_name(study)}.db"


def mask(url: str) -> str:
    """The URL with any password replaced by ***, for logs, reports, notes and errors."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        if u.password:
            return u.set(password="***").render_as_string(hide_password=False)
        return url
    except Exception:  # not a SQLAlchemy URL: mask anything between ':' and '@' in the netloc
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str):
    """An Optuna storage for `url`: RDB (SQLite, PostgreSQL, MySQL) or a journal file (*.log)."""
    import optuna

    if "://" not in url:
        if url.endswith(".log") or url.endswith(".journal"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url))
        raise InputError(f"--storage '{mask(url)}' is not a database URL; use e.g. "
                         "sqlite:///studies/NAME.db or postgresql://user@host/db")
    kwargs = {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=30, grace_period=90,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                **kwargs)
    except ImportError as e:
        raise InputError(f"--storage '{mask(url)}': the database driver is not installed ({e}); "
                         "install it, e.g. pip install psycopg2-binary") from None
    except Exception as e:
        msg = mask(str(e).splitlines()[0]) if str(e) else type(e).__name__
        for part in (url, url.split("@")[0]):
            msg = msg.replace(part, mask(url))
        raise InputError(f"--storage '{mask(url)}': cannot open the database ({msg}); check the "
                         "URL and that the server is running") from None
