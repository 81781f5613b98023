"""A real `fit` served by optuna-dashboard, in process through its WSGI app (no port).

`doctor dashboard` is run with `optuna_dashboard.run_server` replaced by a stand-in that keeps
the storage and artifact store it was handed; the test then builds the same WSGI app
(`optuna_dashboard.wsgi(storage, artifact_store=...)`) and reads what a person would see through
the dashboard's HTTP API: the study, each trial's remaining symptoms and metrics as user
attributes, the diagnosis and prescription as the study's note, and the report and model bundle
as study artifacts.
"""
from __future__ import annotations

import io
import json
import wsgiref.util
import zipfile

import optuna_dashboard
import pandas as pd
import pytest

from doctor.cli import main


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def blobs_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, class_sep=1.5,
                               random_state=seed)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    df["label"] = y
    return df


class Client:
    """Just enough of a WSGI client for GET requests."""

    def __init__(self, app) -> None:
        self.app = app

    def get(self, path: str) -> tuple[int, dict, bytes]:
        env: dict = {}
        wsgiref.util.setup_testing_defaults(env)
        path, _, query = path.partition("?")
        env.update(PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD="GET")
        seen: dict = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, dict(headers)

        body = b"".join(self.app(env, start_response))
        return int(seen["status"].split()[0]), seen["headers"], body

    def json(self, path: str):
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Fit a small study, then start `doctor dashboard` on it with the server stubbed out."""
    root = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{root / 'studies' / 'blobs.db'}"
    (root / "studies").mkdir()
    captured = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        blobs_frame().to_csv("blobs.csv", index=False)
        assert run_cli("fit", "blobs.csv", "--epochs", "3", "--trials", "2", "--out", "out",
                       "--storage", url, "--quiet") == 0

        def fake_run_server(storage, host="localhost", port=8080, artifact_store=None, **kw):
            captured.update(storage=storage, artifact_store=artifact_store, host=host, port=port)

        mp.setattr(optuna_dashboard, "run_server", fake_run_server)
        assert run_cli("dashboard", "--storage", url, "--quiet") == 0
    assert captured["artifact_store"] is not None
    app = optuna_dashboard.wsgi(captured["storage"], artifact_store=captured["artifact_store"])
    report = json.loads((root / "out" / "report.json").read_text())
    return Client(app), report, root


def _study(client: Client, name: str) -> tuple[int, dict]:
    summaries = client.json("/api/studies")["study_summaries"]
    ids = {s["study_name"]: s["study_id"] for s in summaries}
    assert name in ids, ids
    return ids[name], client.json(f"/api/studies/{ids[name]}")


def _attrs(items: list[dict]) -> dict:
    return {a["key"]: a["value"] for a in items}


def test_dashboard_shows_the_study_and_trial_symptoms(served):
    client, report, _ = served
    assert client.json("/api/meta")["artifact_is_available"] is True
    _, study = _study(client, report["study"]["name"])
    assert len(study["trials"]) == report["study"]["trials"] == 2
    finished = [t for t in study["trials"] if t["state"] in ("Complete", "Pruned")]
    assert finished
    for t in finished:
        attrs = _attrs(t["user_attrs"])
        assert "symptoms" in attrs, attrs  # the symptoms that remained in this trial
        assert isinstance(json.loads(attrs["symptoms"]), list)
    for t in (t for t in study["trials"] if t["state"] == "Complete"):
        attrs = _attrs(t["user_attrs"])
        assert float(attrs["val_loss"]) >= 0  # a metric beside the objective value
        assert t["values"]
    # the trial numbers and symptoms agree with the report's trial table
    by_number = {t["number"]: t for t in report["trials"]}
    for t in finished:
        assert json.loads(_attrs(t["user_attrs"])["symptoms"]) == by_number[t["number"]]["symptoms"]
    study_attrs = _attrs(study["user_attrs"])
    assert json.loads(study_attrs["doctor:symptoms"]) == [s["id"] for s in report["symptoms"]]
    assert json.loads(study_attrs["doctor:prescription"]) == report["study"]["prescription"]


def test_dashboard_note_holds_diagnosis_and_prescription(served):
    client, report, _ = served
    _, study = _study(client, report["study"]["name"])
    note = study["note"]["body"]
    assert study["note"]["version"] >= 1
    assert note.startswith("# doctor: diagnosis and prescription")
    for heading in ("## Symptoms", "## Prescription", "## Treatment", "## Cure check"):
        assert heading in note
    for s in report["symptoms"]:
        assert s["id"].replace("_", "\\_") in note
    for k in report["study"]["prescription"]:
        assert k.replace("_", "\\_") in note
    assert "**Verdict.**" in note


def test_dashboard_serves_report_and_bundle_artifacts(served, tmp_path):
    client, report, root = served
    study_id, study = _study(client, report["study"]["name"])
    arts = {a["filename"]: a for a in study["artifacts"]}
    assert {"report.html", "report.json", "model-bundle.zip"} <= set(arts)
    assert arts["report.html"]["mimetype"] == "text/html"
    status, headers, body = client.get(f"/artifacts/{study_id}/{arts['report.html']['artifact_id']}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (root / "out" / "report.html").read_bytes()
    status, _, body = client.get(f"/artifacts/{study_id}/{arts['report.json']['artifact_id']}")
    assert status == 200 and json.loads(body)["verdict"] == report["verdict"]
    # The bundle artifact is a working model: unpack it and predict with it.
    status, _, body = client.get(f"/artifacts/{study_id}/{arts['model-bundle.zip']['artifact_id']}")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert set(z.namelist()) == {"bundle.json", "model.pt"}
        z.extractall(tmp_path / "bundle")
    blobs_frame(20, seed=5).drop(columns="label").to_csv("new.csv", index=False)
    assert run_cli("predict", tmp_path / "bundle", "new.csv", "--out", "p.csv", "--quiet") == 0
    preds = pd.read_csv("p.csv")
    assert len(preds) == 20 and {"prediction", "proba_0", "proba_1"} <= set(preds.columns)
    assert run_cli("predict", root / "out", "new.csv", "--out", "q.csv", "--quiet") == 0
    assert preds.equals(pd.read_csv("q.csv"))  # the artifact is the bundle `fit` wrote to OUT
