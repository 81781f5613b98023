"""The report: strict JSON, a self-contained escaped HTML page, each figure when its data is there."""
from __future__ import annotations

import copy
import json
import math
import re

import pytest

from doctor.report import build_view
from doctor.report import json_safe
from doctor.report import render_html
from doctor.report import write_report
from doctor.report.plots import PLOTS

EVIL = "<script>alert(1)</script>"


def _trace(scale: float) -> dict:
    epochs = [{"epoch": e, "train_loss": scale / (e + 1), "val_loss": scale / (e + 1) + 0.1,
               "train_score": 0.5 + e / 40, "val_score": 0.5 + e / 50, "lr": 1e-3} for e in range(12)]
    epochs[3]["val_loss"] = float("nan")
    steps = [{"step": s, "epoch": s // 10, "loss": 1.0, "lr": 1e-3,
              "grad_norm": [1e-4 * (s + 1), 1e-2, 0.0], "weight_norm": [1.0, 1.0, 1.0]}
             for s in range(0, 120, 10)]
    acts = [{"epoch": e, "layers": [{"name": "1", "kind": "relu", "units": 16, "dead": e / 12},
                                    {"name": "3", "kind": "tanh", "units": 16, "saturated": 0.1}]}
            for e in range(12)]
    return {"layers": ["0", "2", "4"], "epochs": epochs, "steps": steps, "activations": acts,
            "diverged": None, "info": {}}


def diagnose_record() -> dict:
    return {
        "data": {"rows": 300, "columns": 3, "target": "label", "task": "classification",
                 "classes": ["no", EVIL], "source": f"data/{EVIL}.csv"},
        "symptoms": [
            {"id": "overfitting", "stage": "training", "severity": 0.8,
             "summary": f"Validation loss rises; column {EVIL} memorised.",
             "evidence": {"gap": 0.31, "epochs": 12, "curve": [1.0, float("nan"), 2.0],
                          "column": EVIL}, "remedies": ["dropout", "weight_decay"]},
            {"id": "vanishing_gradient", "stage": "training", "severity": 0.4,
             "summary": "Early layers barely learn.", "evidence": {"ratio": 1e-4}, "remedies": ["init"]},
            {"id": "dying_relu", "stage": "training", "severity": 0.3, "summary": "Dead units.",
             "evidence": {"dead_share": 0.6}, "remedies": ["activation"],
             "caused_by": "vanishing_gradient"},
            {"id": "class_imbalance", "stage": "data", "severity": 0.5, "summary": "Rare class.",
             "evidence": {"ratio": 9.0}, "remedies": ["resampling"]},
            {"id": "limited_data", "stage": "data", "severity": 0.2, "summary": "More rows help.",
             "evidence": {"slope": 0.05}, "remedies": []},
        ],
        "baseline": {"metrics": {"balanced_accuracy": 0.7, "accuracy": 0.8, "log_loss": float("nan")},
                     "held_out": "validation rows", "recipe": {"lr": 0.001}},
        "traces": {"baseline": _trace(2.0)},
        "profile": {"class_counts": {"no": 270, EVIL: 30},
                    "learning_curve": [{"fraction": f, "rows": int(240 * f), "score": 0.6 + 0.2 * f}
                                       for f in (0.25, 0.5, 1.0)],
                    "reference": {"score": 0.8, "model": "logistic regression"}},
        "versions": {"torch": "2.13.0", "doctor": "0.1.0"},
        "command": f"doctor diagnose '{EVIL}.csv'",
        "verdict": "Found 5 symptom(s).",
    }


def full_record() -> dict:
    r = diagnose_record()
    r["baseline"]["held_out"] = "test rows"
    r["best"] = {"params": {"dropout": 0.2, "lr": 0.003, "activation": None},
                 "metrics": {"balanced_accuracy": 0.85, "accuracy": 0.86, "log_loss": 0.4},
                 "symptoms": ["limited_data"], "recipe": {"lr": 0.003},
                 "remedies_applied": ["dropout", "init"]}
    r["study"] = {"storage": "sqlite:///studies/x.db", "name": "x", "trials": 4, "best_trial": 2,
                  "prescription": {"dropout": 0.2}}
    r["trials"] = [{"number": i, "state": "COMPLETE" if i != 3 else "FAIL",
                    "value": [0.7, 0.75, 0.85, None][i], "params": {"lr": 0.001 * (i + 1)},
                    "symptoms": ["overfitting"] if i < 2 else [], "reason": "diverged" if i == 3 else None}
                   for i in range(4)]
    r["param_importances"] = {"dropout": 0.7, "lr": 0.3}
    r["traces"]["best"] = _trace(1.0)
    r["cure"] = [{"id": "overfitting", "status": "cured", "before": {"gap": 0.31}, "after": {}},
                 {"id": "class_imbalance", "status": "treated", "before": {"ratio": 9.0},
                  "after": {"by": ["resampling"]}},
                 {"id": "limited_data", "status": "remaining", "before": {}, "after": {"note": "n/a"}}]
    r["explanations"] = {
        "method": "integrated_gradients", "baseline": "zeros (the training mean)",
        "global_importance": {EVIL: 0.6, "price $ (usd)": 0.3, "$x$": 0.1},
        "convergence_delta": 0.002,
        "cross_check": {"method": "feature_ablation",
                        "global_importance": {EVIL: 0.5, "$x$": 0.3, "price $ (usd)": 0.2},
                        "rank_correlation": 0.5},
        "per_class": {"no": {EVIL: 0.7, "$x$": 0.3}, EVIL: {EVIL: 1.0}},
        "rows_selection": "most confident mistakes",
        "rows": [{"index": 4, "predicted": EVIL, "true": "no", "confidence": 0.97,
                  "attributions": {EVIL: 1.2, "$x$": -0.3}}],
        "agreement": f"Both methods put '{EVIL}' first.",
    }
    r["robustness"] = {m: [{"eps": e, "fgsm": 0.9 - e, "pgd": 0.85 - e} for e in (0.0, 0.1, 0.2)]
                       for m in ("baseline", "best")}
    r["calibration"] = {m: {"ece": 0.1, "bins": [{"lo": 0.5, "hi": 0.6, "count": 10, "confidence": 0.55,
                                                   "accuracy": 0.5},
                                                  {"lo": 0.9, "hi": 1.0, "count": 50, "confidence": 0.95,
                                                   "accuracy": float("nan")}]}
                        for m in ("baseline", "best")}
    return r


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def test_full_record_renders_every_section_and_figure():
    html = render_html(full_record())
    ids = _ids(html)
    for section in ("verdict", "symptoms", "treatment", "cure", "explanations", "robustness",
                    "calibration", "profile", "versions", "symptom-overfitting",
                    "symptom-vanishing_gradient", "symptom-dying_relu", "symptom-class_imbalance",
                    "symptom-limited_data"):
        assert section in ids, section
    for name in PLOTS:  # every figure has data in the full record, each appears once
        assert html.count(f'id="fig-{name}"') == 1, name
    for alt in re.findall(r"<img [^>]*>", html):
        assert 'alt="' in alt and 'src="data:image/png;base64,' in alt
    # page order: verdict, symptoms, treatment, cure, explanations, robustness, calibration, profile
    pos = [html.index(f'id="{s}"') for s in ("verdict", "symptoms", "treatment", "cure", "explanations",
                                              "robustness", "calibration", "profile", "versions")]
    assert pos == sorted(pos)
    # symptom figures sit inside their symptom's section
    assert html.index('id="fig-loss_curves"') > html.index('id="symptom-overfitting"')
    assert html.index('id="fig-class_counts"') > html.index('id="symptom-class_imbalance"')
    assert "No symptoms found" not in html
    assert len(html) < 3_000_000


def test_user_data_is_escaped_and_nothing_is_fetched():
    html = render_html(full_record())
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html.lower() and "@import" not in html


def test_write_report_round_trips_strict_json(tmp_path):
    rec = full_record()
    before = copy.deepcopy(rec)
    write_report(tmp_path / "out", rec)
    text = (tmp_path / "out" / "report.json").read_text()

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    loaded = json.loads(text, parse_constant=no_constants)
    assert "NaN" not in text and "Infinity" not in text
    assert loaded == json_safe(rec)
    assert loaded["baseline"]["metrics"]["log_loss"] is None
    assert loaded["symptoms"][0]["evidence"]["curve"] == [1.0, None, 2.0]
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="verdict"' in html
    assert math.isnan(rec["baseline"]["metrics"]["log_loss"])  # the caller's record is untouched
    assert rec.keys() == before.keys()


def test_json_safe_handles_numpy_and_torch():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    out = json_safe({"a": np.float32(1.5), "b": np.int64(3), "c": np.array([1.0, np.inf]),
                     "d": torch.tensor([0.5, float("nan")]), 1: (True, None)})
    assert out == {"a": 1.5, "b": 3, "c": [1.0, None], "d": [0.5, None], "1": [True, None]}
    json.dumps(out, allow_nan=False)


def test_diagnose_only_record():
    rec = diagnose_record()
    view = build_view(rec)
    assert view["treatment"] is None and view["cure"] == [] and view["explanations"] is None
    html = render_html(rec)
    ids = _ids(html)
    assert {"verdict", "symptoms", "profile", "versions"} <= ids
    assert not {"treatment", "cure", "explanations", "robustness", "calibration"} & ids
    for name in ("loss_curves", "gradient_norms", "unit_fractions", "class_counts", "learning_curve"):
        assert f'id="fig-{name}"' in html, name
    for name in ("trial_history", "importance", "robustness", "reliability"):
        assert f'id="fig-{name}"' not in html, name
    assert "validation rows" in html


def test_healthy_record_says_no_symptoms_found():
    html = render_html({"data": {"rows": 100, "columns": 4, "target": "y", "task": "regression"},
                        "symptoms": [], "baseline": {"metrics": {"r2": 0.9, "rmse": 1.2}}})
    assert "No symptoms found" in html
    assert 'id="no-symptoms"' in html


@pytest.mark.parametrize("drop", [("traces", "profile"), ("explanations", "trials", "study"), ("best",),
                                  ("robustness", "calibration", "cure"), ("versions", "baseline")])
def test_missing_keys_do_not_crash(drop):
    rec = full_record()
    for key in drop:
        rec.pop(key)
    html = render_html(rec)
    assert 'id="verdict"' in html
    assert not {k for k in drop if k in ("treatment", "cure", "explanations", "robustness",
                                         "calibration")} & _ids(html)


def test_sparse_and_odd_values_do_not_crash():
    rec = {"data": {}, "symptoms": [{"id": "overfitting"}],
           "traces": {"baseline": {"epochs": [], "steps": [{"step": 0}], "activations": [{}]},
                      "best": None},
           "explanations": {"global_importance": {}, "cross_check": {}},
           "trials": [{"number": 0, "value": None}], "robustness": {"baseline": []},
           "calibration": {"best": {"ece": None}}, "profile": {"class_counts": {}},
           "best": {"metrics": {"accuracy": "n/a"}}}
    html = render_html(rec)
    assert 'id="symptom-overfitting"' in html
    assert "<img" not in html
    render_html({"data": {}, "symptoms": []})


def test_each_plot_skips_itself_without_data():
    for name, (fn, alt) in PLOTS.items():
        assert fn({}) is None, name
        assert alt
    full = json_safe(full_record())
    for name, (fn, _) in PLOTS.items():
        assert isinstance(fn(full), str), name
