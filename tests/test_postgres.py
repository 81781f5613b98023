"""A real PostgreSQL server (tests/pg.py): workers share one study, the heartbeat fails the
trials of dead workers, and the password in the URL appears in no output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import wsgiref.util
from pathlib import Path

import optuna
import pytest

try:
    from tests.conftest import blobs_frame
    from tests.pg import PASSWORD
    from tests.pg import postgres  # noqa: F401 - the session fixture
except ImportError:  # a site-packages module named `tests` shadows this folder
    from conftest import blobs_frame
    from pg import PASSWORD
    from pg import postgres  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
TrialState = optuna.trial.TrialState


def open_study(url: str, name: str) -> optuna.Study:
    from doctor.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url))


def dashboard_study(url: str, name: str) -> dict:
    """What optuna-dashboard's HTTP API shows for the study (in process, no port)."""
    import optuna_dashboard

    from doctor.storage import open_storage

    app = optuna_dashboard.wsgi(open_storage(url))

    def get(path: str):
        env: dict = {}
        wsgiref.util.setup_testing_defaults(env)
        env.update(PATH_INFO=path, REQUEST_METHOD="GET", QUERY_STRING="")
        seen = {}
        body = b"".join(app(env, lambda status, headers, exc=None: seen.update(status=status)))
        assert seen["status"].startswith("200"), (path, seen, body[:300])
        return json.loads(body)

    ids = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}
    return get(f"/api/studies/{ids[name]}")


@pytest.mark.slow
def test_three_workers_share_one_postgres_study_and_the_password_leaks_nowhere(postgres):
    url = postgres.create_database("workers")
    assert PASSWORD in url
    blobs_frame(150).to_csv("data.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "doctor", "fit", "data.csv", "--storage", url,
                          "--study", "shared", "--workers", "3", "--trials", "9", "--epochs", "3",
                          "--out", "o"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 600

    study = open_study(url, "shared")
    trials = study.get_trials()
    assert len(trials) == 9  # exactly the requested number
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    owners = [t.user_attrs["doctor:worker"] for t in trials]
    assert [o["trial"] for o in owners] == [t.number for t in trials]  # each ran once, by one worker
    assert len({o["pid"] for o in owners}) == 3
    assert sum(bool(t.user_attrs.get("doctor:prescribed")) for t in trials) == 1
    assert all("symptoms" in t.user_attrs for t in trials if t.state == TrialState.COMPLETE)

    studies = subprocess.run([sys.executable, "-m", "doctor", "studies", "--storage", url],
                             capture_output=True, text=True, env=env, timeout=120)
    assert studies.returncode == 0, studies.stderr
    assert "shared\ttrials=9" in studies.stdout

    report = json.loads(Path("o/report.json").read_text())
    assert report["study"]["trials"] == 9 and report["study"]["name"] == "shared"
    assert report["study"]["storage"] == url.replace(PASSWORD, "***")
    note = dashboard_study(url, "shared")["note"]["body"]
    assert note.startswith("# doctor")
    outputs = {
        "report.json": Path("o/report.json").read_text(),
        "report.html": Path("o/report.html").read_text(),
        "fit stderr": run.stderr + run.stdout,
        "studies output": studies.stdout + studies.stderr,
        "dashboard note": note,
        "bundle.json": Path("o/bundle.json").read_text(),
    }
    for where, text in outputs.items():
        assert PASSWORD not in text, where
    assert "***" in outputs["fit stderr"]  # the dashboard hint names the storage, masked


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_heartbeat_on_postgres_fails_a_dead_workers_trial(postgres, monkeypatch):
    """A worker on another machine died mid-trial: after the grace period a live worker's next
    trial marks it failed and runs its parameters again (Optuna's heartbeat, RDB storage)."""
    from doctor.search import OWNER
    from doctor.search import recover_stale_trials
    from doctor.storage import grace_period
    from doctor.storage import open_storage

    monkeypatch.setenv("DOCTOR_HEARTBEAT_S", "1")
    url = postgres.create_database("heartbeat")
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="hb", direction="maximize")
    t = study.ask()
    x = t.suggest_float("x", 0, 1)
    t.set_user_attr(OWNER, {"host": "another-machine", "pid": 4242, "start": None, "trial": 0})
    storage.record_heartbeat(t._trial_id)
    assert recover_stale_trials(study) == []  # its heartbeat is fresh: leave it alone
    time.sleep(grace_period() + 1.5)
    seen = []
    other_worker = open_study(url, "hb")
    other_worker.optimize(lambda tr: seen.append(tr.suggest_float("x", 0, 1)) or 0.5, n_trials=1)
    trials = open_study(url, "hb").get_trials()
    assert [tr.state for tr in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert seen == [x] and trials[1].system_attrs["failed_trial"] == 0


def test_postgres_errors_are_one_masked_line(postgres, cli, capsys):
    wrong = postgres.url.replace(PASSWORD, "not-the-password")
    assert cli("studies", "--storage", wrong) == 2
    err = capsys.readouterr().err
    assert "not-the-password" not in err and "***" in err
    assert "password authentication failed" in err and len(err.strip().splitlines()) == 1
    missing_db = postgres.database_url("nope")
    assert cli("studies", "--storage", missing_db) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err and 'database "nope" does not exist' in err
