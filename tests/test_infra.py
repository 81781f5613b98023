"""Runs like infrastructure: interrupts, killed workers, stale trials, faults inside trials,
resume checks, atomic outputs, workers on SQLite, and the security points of issue #6.

The end-to-end tests run `doctor fit` as a real process and signal it (SIGINT, SIGKILL); the
rest drive `doctor.search` in process on tiny data.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

try:
    from helpers import blobs_frame
except ImportError:  # a site-packages module named `tests` shadows this folder
    from conftest import blobs_frame

ROOT = Path(__file__).resolve().parents[1]
TrialState = optuna.trial.TrialState
QUIET = ["--quiet"]


# ----------------------------------------------------------------------------- helpers
def doctor_process(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """`python -m doctor ARGS` in the current folder; stderr goes to a file (no pipe stalls)."""
    err = Path(f"stderr-{time.monotonic_ns()}.txt")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "doctor", *args], stdout=subprocess.DEVNULL,
                            stderr=err.open("w"), env=full_env)
    return proc, err


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def states(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT state, COUNT(*) FROM trials GROUP BY state"))


def running_with_params(db: Path) -> list[int]:
    """RUNNING trials in the middle of training: worker recorded, every parameter drawn and
    at least one validation score reported."""
    return [r[0] for r in query(db, """
        SELECT t.number FROM trials t WHERE t.state = 'RUNNING'
          AND EXISTS (SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)
          AND EXISTS (SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id
                      AND a.key = 'doctor:worker')""")]


def wait_for(proc: subprocess.Popen, err: Path, ready, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"doctor ended early ({proc.returncode}): {err.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out; stderr: {err.read_text()}")


def load(name: str, url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url or f"sqlite:///studies/{name}.db")


def finished(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}


def small_csv(name: str = "data.csv", n: int = 200, seed: int = 0) -> str:
    blobs_frame(n, seed=seed).to_csv(name, index=False)
    return name


# ----------------------------------------------------------------------------- Ctrl-C and kill -9
@pytest.mark.slow
def test_sigint_keeps_finished_trials_and_resume_reaches_the_count(cli):
    csv = small_csv()
    Path("o").mkdir()
    Path("o/report.json").write_text('{"earlier": true}')  # an earlier, good OUT
    db = Path("studies/s.db")
    proc, err = doctor_process("fit", csv, "--epochs", "30", "--trials", "8", "--study", "s",
                               "--out", "o", *QUIET)

    def two_done_and_one_running() -> bool:
        st = states(db)
        return st.get("COMPLETE", 0) + st.get("PRUNED", 0) >= 2 and bool(running_with_params(db))

    wait_for(proc, err, two_done_and_one_running)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=300)  # generous: CI machines are shared
    text = err.read_text()
    assert code == 130, text
    assert "Traceback" not in text, text
    assert "interrupted" in text
    assert json.loads(Path("o/report.json").read_text()) == {"earlier": True}  # OUT untouched
    assert not [p for p in Path(".").iterdir() if p.name.startswith(".o.")]  # no temp folders left

    before = finished(load("s"))
    assert len(before) >= 2
    for t in load("s").get_trials(states=(TrialState.FAIL,)):
        assert "interrupted" in t.user_attrs.get("reason", ""), t.user_attrs
    assert not load("s").get_trials(states=(TrialState.RUNNING,))

    assert cli("fit", csv, "--epochs", "30", "--trials", "8", "--study", "s", "--resume",
               "--out", "o", *QUIET) == 0
    study = load("s")
    after = finished(study)
    for number, t in before.items():  # every trial finished before the interrupt is still there
        assert after[number].state == t.state and after[number].value == t.value
        assert after[number].params == t.params
    assert len(after) == 8  # trials with a result reach exactly the requested count
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    report = json.loads(Path("o/report.json").read_text())
    assert report["study"]["name"] == "s" and report["study"]["trials"] == len(study.trials)


@pytest.mark.slow
def test_sigkill_leaves_a_stale_trial_that_resume_fails_and_reruns(cli):
    csv = small_csv()
    db = Path("studies/k.db")
    proc, err = doctor_process("fit", csv, "--epochs", "40", "--trials", "5", "--study", "k",
                               "--out", "o", *QUIET)
    wait_for(proc, err, lambda: sum(states(db).get(s, 0) for s in ("COMPLETE", "PRUNED")) >= 1
             and bool(running_with_params(db)))
    proc.kill()
    proc.wait(timeout=30)
    study = load("k")
    stale = study.get_trials(states=(TrialState.RUNNING,))
    assert len(stale) == 1
    stale_trial = stale[0]
    done_before = finished(study)
    assert stale_trial.user_attrs["doctor:worker"]["pid"] == proc.pid

    assert cli("fit", csv, "--epochs", "40", "--trials", "5", "--study", "k", "--resume",
               "--out", "o", *QUIET) == 0
    study = load("k")
    old = study.trials[stale_trial.number]
    assert old.state == TrialState.FAIL
    assert old.user_attrs["reason"].startswith("abandoned: its worker"), old.user_attrs
    reruns = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale_trial.number]
    assert len(reruns) == 1
    rerun = reruns[0]
    assert rerun.user_attrs["doctor:retry_of"] == stale_trial.number
    assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert rerun.params == stale_trial.params  # the same configuration, run again
    after = finished(study)
    assert all(after[n].value == t.value for n, t in done_before.items())
    assert len(after) == 5
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert Path("o/report.json").exists()


# ----------------------------------------------------------------------------- stale trials
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resume_fails_trials_of_dead_local_workers_only(kind):
    from doctor.search import OWNER
    from doctor.search import recover_stale_trials
    from doctor.search import worker_record
    from doctor.storage import open_storage

    url = "sqlite:///studies/z.db" if kind == "sqlite" else "studies/z.log"
    study = optuna.create_study(storage=open_storage(url), study_name="z", direction="maximize")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        trials = {}
        for who in ("dead", "live", "other-host", "nobody"):
            t = study.ask()
            t.suggest_float("x", 0, 1)
            rec = worker_record(t.number)
            if who == "dead":
                rec.update(pid=_dead_pid(), start=None)
                t.set_user_attr("doctor:competing", "optimizer")  # an enqueued rival's mark
                t.set_user_attr("doctor:widened", True)  # a widened trial's (search.WIDEN)
            elif who == "live":
                rec.update(pid=live.pid, start=None)
            elif who == "other-host":
                rec.update(host="some-other-machine", pid=1)
            if who != "nobody":
                t.set_user_attr(OWNER, rec)
            trials[who] = t.number
        failed = recover_stale_trials(study)
        again = recover_stale_trials(study)  # the queued retry is WAITING, not abandoned
    finally:
        live.kill()
        live.wait()
    assert again == []
    assert failed == [trials["dead"]]
    by_number = {t.number: t for t in study.get_trials()}
    dead = by_number[trials["dead"]]
    assert dead.state == TrialState.FAIL and dead.user_attrs["reason"].startswith("abandoned")
    for who in ("live", "other-host", "nobody"):
        assert by_number[trials[who]].state == TrialState.RUNNING, who
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == dead.params
    assert waiting[0].user_attrs == {"doctor:retry_of": dead.number, "doctor:widened": True,
                                     "doctor:competing": "optimizer"}  # the retry keeps them


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_live_worker_fails_a_heartbeat_stale_trial_and_reruns_it(monkeypatch):
    """Another machine's worker died: after the grace period any live worker fails its trial
    (Optuna's heartbeat on RDB storage) and runs the same parameters again."""
    from doctor.search import OWNER
    from doctor.storage import grace_period
    from doctor.storage import open_storage

    monkeypatch.setenv("DOCTOR_HEARTBEAT_S", "1")
    assert grace_period() == 3
    storage = open_storage("sqlite:///studies/hb.db")
    study = optuna.create_study(storage=storage, study_name="hb", direction="maximize")
    t = study.ask()
    x = t.suggest_float("x", 0, 1)
    t.set_user_attr(OWNER, {"host": "some-other-machine", "pid": 1, "start": None, "trial": 0})
    storage.record_heartbeat(t._trial_id)
    from doctor.search import recover_stale_trials

    assert recover_stale_trials(study) == []  # fresh heartbeat: a live worker elsewhere
    time.sleep(grace_period() + 1.5)
    seen = []
    study.optimize(lambda tr: seen.append(tr.suggest_float("x", 0, 1)) or 1.0, n_trials=1)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert seen == [x]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].state == TrialState.COMPLETE
    assert trials[1].user_attrs == {"doctor:retry_of": 0}


def test_sqlite_queue_pops_each_trial_once_across_processes():
    """Three processes draining one SQLite study whose queue holds enqueued trials: with the
    doctor's `BEGIN IMMEDIATE` each trial runs exactly once (plain pysqlite ran some twice)."""
    from doctor.storage import open_storage

    url = "sqlite:///studies/q.db"
    study = optuna.create_study(storage=open_storage(url), study_name="q")
    for i in range(6):
        study.enqueue_trial({"x": i / 10})
    start = time.time() + 3
    code = textwrap.dedent(f"""
        import os, sys, time, optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        from doctor.storage import open_storage
        study = optuna.load_study(study_name="q", storage=open_storage("{url}"))
        def objective(trial):
            x = trial.suggest_float("x", 0, 1)
            trial.set_user_attr("pid", os.getpid())
            time.sleep(0.02)
            return x
        while time.time() < {start}:
            time.sleep(0.005)
        study.optimize(objective, n_trials=8)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, errors
    trials = load("q", url).get_trials()
    assert len(trials) == 24
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.params["x"] for t in trials if "fixed_params" in t.system_attrs) == \
        [i / 10 for i in range(6)]


# ----------------------------------------------------------------------------- faults in trials
@pytest.fixture
def tiny_case():
    from doctor.api import make_case
    from doctor.diagnosis import diagnose_table

    case = make_case(None, blobs_frame(120), target="label", epochs=4)
    diagnosis, _, _ = diagnose_table(case.table, case.split, case.recipe, device=case.device)
    return case, diagnosis


def test_faulty_trials_are_recorded_with_their_reason_and_the_study_goes_on(tiny_case, monkeypatch):
    import torch

    import doctor.search as search

    case, diagnosis = tiny_case
    real = search.Trainer
    calls = {"n": 0}

    class FaultyTrainer:
        def __init__(self, recipe, probes=None, on_epoch=None):
            self.inner = real(recipe, probes=probes, on_epoch=on_epoch)
            self.on_epoch = on_epoch

        def fit(self, data):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("boom in the 3rd batch")
            if calls["n"] == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            if calls["n"] == 3:
                self.on_epoch(0, {"val_score": float("nan"), "val_loss": float("nan")})
            return self.inner.fit(data)

    monkeypatch.setattr(search, "Trainer", FaultyTrainer)
    records: list = []

    class Keep(__import__("logging").Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    optuna.logging.get_logger("optuna").addHandler(handler)
    try:
        result = search.tune(case.table, case.split, case.recipe, diagnosis,
                             storage="sqlite:///studies/f.db", study_name="f", trials=5)
    finally:
        optuna.logging.get_logger("optuna").removeHandler(handler)
    trials = result.study.trials
    assert len(trials) == 5  # the study went on
    assert [t.state for t in trials[:3]] == [TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED]
    assert trials[0].user_attrs["reason"] == "raised RuntimeError: boom in the 3rd batch"
    assert trials[1].user_attrs["reason"].startswith("ran out of memory (OutOfMemoryError: CUDA")
    assert "non-finite" in trials[2].user_attrs["reason"]
    assert all(t.state == TrialState.COMPLETE for t in trials[3:])
    assert result.best_trial in (3, 4)
    assert not any(r.exc_info for r in records)  # the reason, not a traceback
    assert any("boom in the 3rd batch" in r.getMessage() for r in records)


def test_a_model_that_cannot_run_is_reported_once_before_the_search(cli, capsys):
    csv = small_csv(n=60)
    Path("net.py").write_text("import torch.nn as nn\ndef build(n, k):\n    return nn.Linear(n + 1, k)\n")
    assert cli("fit", csv, "--model", "net.py:build", "--epochs", "2", "--trials", "3",
               "--study", "m", *QUIET) == 2
    err = capsys.readouterr().err
    assert err.count("doctor: error:") == 1 and "cannot run on this data's 6" in err
    assert "Traceback" not in err
    db = Path("studies/m.db")
    assert not query(db, "SELECT * FROM trials")  # no search started


# ----------------------------------------------------------------------------- resume checks
def test_resume_refuses_other_data_or_target(cli, capsys):
    from doctor.data import from_frame
    from doctor.search import check_resume
    from doctor.search import create_study

    a = blobs_frame(60, seed=1)
    a.to_csv("a.csv", index=False)
    table = from_frame(a, source="a.csv")
    url = "sqlite:///studies/fp.db"
    study, _ = create_study(url, "fp", seed=0, epochs=2, resume=False, join=False, table=table)
    assert len(study.user_attrs["doctor:fingerprint"]) == 16
    assert study.user_attrs["doctor:target"] == "label"
    check_resume(url, "fp", table, resume=True, join=True)  # the same data: fine

    b = a.copy()
    b.loc[3, "f0"] += 1.0  # one cell differs
    b.to_csv("b.csv", index=False)
    for args, words in [
        (["b.csv", "--resume"], "was made on other data"),
        (["b.csv"], "was made on other data"),  # joining by name checks too
        (["a.csv", "--target", "f5", "--resume"], "was made for target 'label', not 'f5'"),
        (["a.csv", "--study", "missing", "--resume"], "no study named 'missing'"),
    ]:
        study_args = [] if "--study" in args else ["--study", "fp"]
        assert cli("fit", *args, *study_args, "--trials", "1", "--epochs", "1", *QUIET) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert len(load("fp", url).trials) == 0  # nothing ran


# ----------------------------------------------------------------------------- outputs
def test_a_failed_write_never_replaces_a_good_out(monkeypatch):
    import doctor.report as report_mod
    from doctor.pipeline import write_outputs

    out = Path("o")
    write_outputs(out, {"data": {"source": "x"}, "symptoms": []}, None)
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.json" in good

    def half_then_fail(folder, report):
        (Path(folder) / "report.json").write_text('{"half": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_mod, "write_report", half_then_fail)
    with pytest.raises(OSError):
        write_outputs(out, {"data": {"source": "y"}, "symptoms": []}, None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good
    assert sorted(p.name for p in Path(".").iterdir() if p.name.startswith(".o")) == []


# ----------------------------------------------------------------------------- --workers on SQLite
@pytest.mark.slow
def test_workers_share_one_sqlite_study(cli, capsys):
    csv = small_csv(n=120)
    assert cli("fit", csv, "--epochs", "3", "--trials", "5", "--workers", "2", "--study", "w",
               "--out", "o", *QUIET) == 0
    study = load("w")
    assert len(study.trials) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    owners = [t.user_attrs["doctor:worker"] for t in study.trials]
    assert all(o["trial"] == t.number for o, t in zip(owners, study.trials))
    assert len({o["pid"] for o in owners}) == 2 and os.getpid() not in {o["pid"] for o in owners}
    assert sum(bool(t.user_attrs.get("doctor:prescribed")) for t in study.trials) == 1
    report = json.loads(Path("o/report.json").read_text())
    assert report["study"]["trials"] == 5 and len(report["trials"]) == 5
    capsys.readouterr()
    assert cli("studies") == 0
    assert "w\ttrials=5" in capsys.readouterr().out


# ----------------------------------------------------------------------------- security
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bundle_weights_are_never_unpickled(cli, capsys):
    import torch

    from doctor.bundle import Bundle
    from doctor.errors import InputError
    from doctor.preprocess import Preprocessor
    from doctor.recipe import Recipe

    X = pd.DataFrame({"f0": np.linspace(0, 1, 20), "f1": np.arange(20.0)})
    pre = Preprocessor().fit(X, ["f0", "f1"], [])
    recipe = Recipe(epochs=1)
    Bundle(recipe.build(2, 2), recipe, pre, "classification", "label", [0, 1]).save(Path("b"))
    marker = Path("pwned").resolve()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Evil()}, "b/model.pt")
    with pytest.raises(InputError, match="cannot load the weights"):
        Bundle.load("b")
    Path("b/model.pt").write_bytes(pickle.dumps(Evil()))
    X.to_csv("x.csv", index=False)
    assert cli("predict", "b", "x.csv", *QUIET) == 2
    assert "cannot load the weights" in capsys.readouterr().err
    assert not marker.exists()


def test_docs_say_that_model_runs_your_code():
    import typer

    from doctor.cli import app

    commands = typer.main.get_command(app).commands
    for name in ("fit", "diagnose"):
        model = next(p for p in commands[name].params if "--model" in p.opts)
        assert "runs your code" in model.help
    readme = (ROOT / "README.md").read_text()
    assert "imports and runs your Python file" in readme
    doc = (ROOT / "docs/multi-machine.md").read_text()
    assert "runs your own Python code" in doc


@pytest.mark.parametrize("url, secret", [
    ("postgresql://alice:s3cr3t-pw@db.example:5432/doctor", "s3cr3t-pw"),
    ("postgresql+psycopg2://alice:p%40ss%2Fw0rd@db/doctor", "p%40ss"),
    ("mysql+pymysql://root:hunter2@10.0.0.5/optuna?charset=utf8mb4", "hunter2"),
    ("postgresql://alice@db/doctor?password=qu3ry-secret&sslmode=require", "qu3ry-secret"),
])
def test_passwords_are_masked(url, secret):
    from doctor.storage import mask
    from doctor.storage import mask_text

    assert secret not in mask(url) and "***" in mask(url)
    assert mask(url).split("***")[0] in url  # the rest of the URL is kept
    line = f"cannot connect to {url} (timeout)"
    assert secret not in mask_text(line) and "***" in mask_text(line)


def test_storage_errors_never_show_the_password(cli, capsys):
    for url in ("postgresql://bob:Zz-s3cret@127.0.0.1:1/db",
                "postgresql://bob@127.0.0.1:1/db?password=Zz-s3cret",
                "mysql://bob:Zz-s3cret@127.0.0.1:1/db"):
        assert cli("studies", "--storage", url) == 2
        err = capsys.readouterr().err
        assert "Zz-s3cret" not in err and "***" in err, err
