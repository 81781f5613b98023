"""The command line end to end on small data: every command and exit code of the contract."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from helpers import blobs_frame

FAST = ["--epochs", "4", "--quiet"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_help_runs_as_a_real_process():
    out = subprocess.run([sys.executable, "-m", "doctor", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("diagnose", "fit", "predict", "studies", "dashboard"):
        assert cmd in out.stdout


def test_diagnose_writes_a_report(cli, blobs_csv):
    assert cli("diagnose", blobs_csv, *FAST, "--out", "d") == 0
    report = json.loads(Path("d/report.json").read_text())
    assert report["data"]["rows"] == 300 and report["data"]["target"] == "label"
    assert report["data"]["task"] == "classification" and report["data"]["classes"] == [0, 1]
    assert isinstance(report["symptoms"], list)
    # the reference's learning curve is measured for the report even where no check needed it
    assert [c["fraction"] for c in report["profile"]["learning_curve"]] == [0.25, 0.5, 1.0]
    assert Path("d/report.html").exists()


@pytest.mark.slow
def test_fit_predict_and_resume(cli, blobs_csv):
    assert cli("fit", blobs_csv, *FAST, "--trials", "3", "--out", "o", "--study", "s") == 0
    report = json.loads(Path("o/report.json").read_text())
    for key in ("data", "symptoms", "baseline", "best", "study", "explanations"):
        assert key in report
    assert report["study"]["storage"] == "sqlite:///studies/s.db"
    assert report["study"]["trials"] == 3
    assert "balanced_accuracy" in report["baseline"]["metrics"]
    assert "accuracy" in report["best"]["metrics"]
    assert [c["fraction"] for c in report["profile"]["learning_curve"]] == [0.25, 0.5, 1.0]
    assert set(report["explanations"]["global_importance"]) == {f"f{i}" for i in range(6)}
    new = blobs_frame(40, seed=9).drop(columns="label")
    new.to_csv("new.csv", index=False)
    assert cli("predict", "o", "new.csv", "--out", "preds.csv", "--quiet") == 0
    preds = pd.read_csv("preds.csv")
    assert len(preds) == 40 and {"prediction", "proba_0", "proba_1"} <= set(preds.columns)
    assert set(preds["prediction"]) <= {0, 1}
    # resume: the 3 finished trials count towards --trials 5
    assert cli("fit", blobs_csv, *FAST, "--trials", "5", "--out", "o", "--study", "s", "--resume") == 0
    study = optuna.load_study(study_name="s", storage="sqlite:///studies/s.db")
    assert len(study.trials) == 5
    assert study.user_attrs["doctor:fingerprint"]


@pytest.mark.slow
def test_default_study_is_not_overwritten(cli, blobs_csv):
    assert cli("fit", blobs_csv, *FAST, "--trials", "1", "--out", "a") == 0
    assert cli("fit", blobs_csv, *FAST, "--trials", "1", "--out", "b") == 0
    names = {s.study_name for s in optuna.get_all_study_summaries("sqlite:///studies/blobs.db")}
    assert names == {"blobs", "blobs-2"}


@pytest.mark.slow
def test_diverging_recipe_is_diagnosed_and_treated(cli, blobs_csv):
    args = ["--optimizer", "sgd", "--lr", "1000", "--epochs", "20", "--quiet"]
    assert cli("diagnose", blobs_csv, *args, "--out", "d") == 0
    report = json.loads(Path("d/report.json").read_text())
    ids = [s["id"] for s in report["symptoms"]]
    assert ids[0] == "loss_divergence"
    assert cli("fit", blobs_csv, *args, "--trials", "3", "--out", "f") == 0
    report = json.loads(Path("f/report.json").read_text())
    assert report["best"]["metrics"]["balanced_accuracy"] > report["baseline"]["metrics"]["balanced_accuracy"] + 0.2
    cure = {c["id"]: c["status"] for c in report["cure"]}
    assert cure["loss_divergence"] == "cured"


@pytest.mark.slow
def test_user_model_and_regression(cli, blobs_csv, regression_csv, relu_model_file):
    assert cli("fit", blobs_csv, "--model", f"{relu_model_file}:build", *FAST, "--trials", "2",
               "--out", "m") == 0
    report = json.loads(Path("m/report.json").read_text())
    assert report["baseline"]["recipe"]["model"]["user"].endswith("net.py:build")
    assert cli("predict", "m", blobs_csv, "--out", "p.csv", "--quiet") == 0
    assert cli("fit", regression_csv, *FAST, "--trials", "2", "--out", "r") == 0
    report = json.loads(Path("r/report.json").read_text())
    assert report["data"]["task"] == "regression" and "r2" in report["best"]["metrics"]
    assert cli("predict", "r", regression_csv, "--out", "rp.csv", "--quiet") == 0
    assert pd.read_csv("rp.csv")["prediction"].between(-1e6, 1e6).all()


def test_studies_lists_the_study(cli, blobs_csv, capsys):
    assert cli("fit", blobs_csv, *FAST, "--trials", "1", "--out", "o") == 0
    capsys.readouterr()
    assert cli("studies") == 0
    out = capsys.readouterr().out
    assert "blobs" in out and "trials=1" in out


def write(name: str, text: str) -> Path:
    p = Path(name)
    p.write_text(text)
    return p


MALFORMED = [
    ("empty file", lambda: ["diagnose", write("e.csv", "")], "empty"),
    ("header only", lambda: ["diagnose", write("h.csv", "a,b,label\n")], "no data rows"),
    ("no such target", lambda: ["diagnose", "blobs.csv", "--target", "nope"], "no column named 'nope'"),
    ("one class", lambda: ["diagnose", write("o.csv", "a,label\n" + "1,x\n" * 20)], "single class"),
    ("target missing", lambda: ["diagnose", write("m.csv", "a,label\n" + "1,0\n2,1\n" * 10 + "3,\n")],
     "missing value"),
    ("ragged rows", lambda: ["diagnose", write("r.csv", "a,b,label\n1,2,0\n" * 10 + "1,2,3,4,5\n")],
     "has 5 fields but the header has 3"),
    ("missing model file", lambda: ["diagnose", "blobs.csv", "--model", "nope.py:build"], "no such file"),
    ("model lacks function", lambda: ["diagnose", "blobs.csv", "--model", f"{write('n.py', 'x = 1')}:build"],
     "has no function"),
    ("model wrong input size", lambda: ["diagnose", "blobs.csv", "--model",
     f"{write('w.py', 'import torch.nn as nn' + chr(10) + 'def build(n, k): return nn.Linear(99, k)')}:build"],
     "cannot run"),
    ("no such data file", lambda: ["diagnose", "missing.csv"], "no such file"),
    ("negative trials", lambda: ["fit", "blobs.csv", "--trials", "-1"], "--trials"),
    ("bad optimizer", lambda: ["diagnose", "blobs.csv", "--optimizer", "lion"], "lion"),
    ("bad device", lambda: ["diagnose", "blobs.csv", "--device", "tpu"], "--device"),
    ("bad study name", lambda: ["fit", "blobs.csv", "--study", "../escape"], "not a valid study name"),
    ("predict on a non-bundle", lambda: ["predict", ".", "blobs.csv"], "not a doctor bundle"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_exits_2_with_one_line(cli, capsys, case, blobs_csv):
    _, make_args, words = case
    args = make_args()
    assert cli(*args, "--quiet") == 2
    line = one_line_error(capsys)
    assert words in line


def test_password_is_masked_in_errors(cli, capsys, blobs_csv):
    code = cli("fit", blobs_csv, "--storage", "postgresql://alice:s3cr3t@127.0.0.1:1/doctor",
               "--trials", "1", *FAST)
    assert code == 2
    line = one_line_error(capsys)
    assert "s3cr3t" not in line and "***" in line


@pytest.mark.slow
def test_predict_with_missing_column(cli, capsys, blobs_csv):
    assert cli("fit", blobs_csv, *FAST, "--trials", "1", "--out", "o") == 0
    blobs_frame(20).drop(columns=["f2", "label"]).to_csv("bad.csv", index=False)
    capsys.readouterr()
    assert cli("predict", "o", "bad.csv", "--quiet") == 2
    assert "'f2'" in one_line_error(capsys)
