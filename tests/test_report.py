"""The report: strict JSON, a self-contained escaped HTML page, each figure when its data is there."""
from __future__ import annotations

import copy
import json
import math
import re

from pathlib import Path

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
                    "reference": {"score": 0.8, "model": "logistic regression"},
                    "column_stats": {
                        EVIL: {"kind": "numeric", "missing_share": 0.1, "distinct": 250,
                               "median": 0.0, "std": 1.0, "min": -3.0, "max": 3.0},
                        "price $ (usd)": {"kind": "numeric", "missing_share": 0.0, "distinct": 200,
                                          "median": 5000.0, "std": 2500.0, "min": 10.0, "max": 1e4},
                        "$x$": {"kind": "categorical", "missing_share": 0.0, "distinct": 1}}},
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
    r["trials"][1]["competing"] = "optimizer"
    r["trials"][2]["widened"] = True
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
    assert "competing: optimizer" in html  # the trial a competing treatment was enqueued as
    assert '<span class="tag">widened</span>' in html  # a trial of the widened search
    assert len(html) < 3_000_000


def test_dashboard_note_lists_the_competing_treatments():
    from doctor.pipeline import dashboard_note

    rec = full_record()
    note = dashboard_note(rec, rec["study"]["prescription"])
    section = note.split("## Competing treatments")[1].split("##")[0]
    assert "trial 1, optimizer: lr = 0.002" in section  # what it swapped in the prescription
    rec["trials"][1].pop("competing")
    assert "Competing" not in dashboard_note(rec, rec["study"]["prescription"])


def test_dashboard_note_says_which_trials_the_search_widened():
    from doctor.pipeline import dashboard_note

    rec = full_record()
    section = dashboard_note(rec, rec["study"]["prescription"]).split("## Widened")[1].split("##")[0]
    assert "trial(s) 2 also drew" in section
    rec["trials"][2].pop("widened")
    assert "Widened" not in dashboard_note(rec, rec["study"]["prescription"])


def test_notes_of_what_ran_instead_are_shown_with_their_trial_and_the_cure():
    rec = full_record()
    note = "resampling adasyn could not run on these training rows (<b>x</b>); random oversampling ran instead"
    rec["trials"][3]["notes"] = [note]
    rec["best"]["notes"] = [note]
    html = render_html(rec)
    row = html.split('id="treatment"')[1]
    assert "diverged; resampling adasyn could not run" in row  # the trial's reason column
    assert "<p>Note: resampling adasyn" in row  # under the winning remedies
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


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


# ----------------------------------------------------------------------------- every symptom's figure
#: Each contract symptom with evidence shaped as its check writes it.
ALL_SYMPTOMS = {
    "missing_values": {"missing_cells": 30, "cell_share": 0.02,
                       "columns": {EVIL: {"count": 30, "share": 0.1}, "b": {"count": 3, "share": 0.01}}},
    "unscaled_features": {"spread_ratio": 900.0, "smallest_spread": {"column": EVIL, "spread": 1.0},
                          "largest_spread": {"column": "b", "spread": 900.0}, "offset_columns": {}},
    "outliers": {"rows_with_outliers": 6, "row_share": 0.02,
                 "columns": {EVIL: {"count": 6, "share": 0.02, "low_fence": -4.0, "high_fence": 4.0}}},
    "class_imbalance": {"ratio": 0.1, "counts": {"no": 270, EVIL: 30}},
    "label_noise": {"flagged": 40, "checked": 240, "share": 0.17, "threshold_share": 0.08,
                    "confident_ratio": 0.9},
    "duplicate_rows": {"duplicate_rows": 40, "share": 0.13, "threshold": 0.05},
    "constant_features": {"columns": {EVIL: {"value": 1}}, "n_columns": 1},
    "target_leakage": {"columns": {EVIL: {"single_feature_score": 0.99, "one_to_one": False}},
                       "threshold": 0.95, "score": "normalised balanced accuracy",
                       "other_features_at_most": {"b": 0.3}},
    "high_dimensionality": {"features": 80, "training_rows": 120, "rows_per_feature": 1.5,
                            "threshold": 5.0},
    "limited_data": {"gain": 0.1, "curve": [{"fraction": 0.5, "rows": 100, "score": 0.6},
                                            {"fraction": 1.0, "rows": 200, "score": 0.7}]},
    "vanishing_gradient": {"grad_to_weight_per_layer": [1e-9, 1e-5, 1e-2], "layers": ["0", "2", "4"],
                           "threshold_floor": 1e-6},
    "exploding_gradient": {"nonfinite_readings": 0, "max_grad_norm": 1e6, "threshold_ratio": 100.0},
    "dying_relu": {"dead_share_per_layer": {"1": 0.9, "3": 0.2}, "threshold": 0.5},
    "saturated_activations": {"saturated_share_per_layer": {"3": 0.8}, "threshold": 0.5},
    "loss_divergence": {"min_train_loss": 0.5, "final_train_loss": 1e4, "growth": 2e4},
    "loss_oscillation": {"swing_epochs": 5, "epochs": 12, "swing_share": 0.4},
    "slow_convergence": {"loss_drop": 0.05, "epochs": 12, "val_score": 0.6, "reference": 0.9},
    "overfitting": {"val_loss_min_epoch": 4, "val_loss_rise": 0.5, "train_score": 1.0,
                    "val_score": 0.7},
    "underfitting": {"val_score": 0.6, "train_score": 0.62, "reference": 0.9},
    "adversarial_vulnerability": {"eps": 0.05, "clean_accuracy": 0.9, "robust_accuracy": 0.4,
                                  "linear_clean": 0.88, "linear_robust": 0.8},
    "poor_calibration": {"ece": 0.2, "chance_ece_95": 0.05, "threshold": 0.05},
}


def _all_symptoms_record() -> dict:
    from doctor.checks._base import SYMPTOMS

    assert set(ALL_SYMPTOMS) == set(SYMPTOMS)  # the table covers the contract
    rec = full_record()
    rec["symptoms"] = [{"id": k, "stage": SYMPTOMS[k], "severity": 0.5, "summary": f"{k} found",
                        "evidence": ev, "remedies": []} for k, ev in ALL_SYMPTOMS.items()]
    return rec


def test_every_symptom_has_its_own_figure_of_its_evidence():
    rec = _all_symptoms_record()
    for key in ("explanations", "trials"):  # figures other tests draw; keeps this test quick
        rec.pop(key)
    html = render_html(rec)
    for sid in ALL_SYMPTOMS:
        sec = html.index(f'id="symptom-{sid}"')
        fig = html.index(f'id="fig-symptom-{sid}"')
        nxt = html.find('class="symptom"', sec + 1)
        assert sec < fig and (nxt == -1 or fig < nxt), sid  # inside its own section
    assert EVIL not in html
    # the general figures still appear once each, in their own sections
    for name in set(PLOTS) - {"importance", "trial_history"}:
        assert html.count(f'id="fig-{name}"') == 1, name
    # without traces, robustness or calibration every symptom still gets a figure: the
    # trace-based ones fall back to their evidence's numbers
    html = render_html({"data": {"rows": 300}, "symptoms": rec["symptoms"]})
    missing = [sid for sid in ALL_SYMPTOMS if f'id="fig-symptom-{sid}"' not in html]
    assert missing == [], missing


def test_symptom_figures_survive_odd_evidence():
    from doctor.report.plots import symptom_figure

    for sid in ALL_SYMPTOMS:
        for ev in ({}, {"columns": "n/a", "curve": [None], "counts": [1, 2]}, {"x": float("nan")}):
            out = symptom_figure({"id": sid, "evidence": ev}, {})
            assert out is None or isinstance(out, str)
    assert symptom_figure({"id": "unknown", "evidence": {"a": 1.0, "threshold": 2.0}}, {})


# ----------------------------------------------------------------------------- page rules
def test_page_forbids_scripts_and_fetching_by_policy():
    import html as htmllib

    html = render_html({"data": {"source": EVIL}, "symptoms": []})
    csp = htmllib.unescape(
        re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1))
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "script-src" not in csp  # default-src 'none' covers scripts: none may run
    assert html.index("Content-Security-Policy") < html.index("<title>")


def test_verdict_comes_first_with_what_was_wrong_fixed_and_gained():
    rec = full_record()
    for key in ("traces", "explanations", "trials", "robustness", "calibration", "profile"):
        rec.pop(key)
    html = render_html(rec)
    verdict = html[html.index('id="verdict"'):html.index('id="symptoms"')]
    assert "What was wrong" in verdict and "What fixed it: Dropout, Init" in verdict
    assert 'id="verdict-gain"' in verdict and "0.7 → " in verdict.replace("<b>", "").replace("</b>", "")
    assert "status-cured" in verdict  # overfitting's status from the cure table
    assert html.index('id="verdict"') < html.index('id="symptoms"')
    assert "After the cure: still found Limited data." in verdict


def test_verdict_tells_a_symptom_new_after_the_cure_from_one_that_stayed():
    rec = full_record()
    rec["best"]["symptoms"] = ["limited_data", "poor_calibration"]  # the second was not found before
    verdict = render_html(rec).split('id="verdict"')[1].split('id="symptoms"')[0]
    assert "still found Limited data; new: Poor calibration." in verdict
    rec["best"]["symptoms"] = ["poor_calibration"]
    verdict = render_html(rec).split('id="verdict"')[1].split('id="symptoms"')[0]
    assert "no training or model symptom found before remains; new: Poor calibration." in verdict
    assert "still found" not in verdict
    rec["best"]["symptoms"] = []
    assert "no training or model symptom remains" in render_html(rec)


def test_model_sections_show_permutation_temperature_and_robust_eps():
    rec = full_record()
    rec["explanations"]["permutation"] = {
        "method": "permutation_importance", "scoring": "increase in cross-entropy (log loss)",
        "against": "the true labels", "n_repeats": 5,
        "global_importance": {EVIL: 0.8, "$x$": 0.2, "price $ (usd)": 0.0},
        "rank_correlation_with_ig": 0.5,
        "comparison": {"disagree": False}}
    rec["robustness"]["robust_eps"] = 0.1
    rec["robustness"]["attack"] = "FGSM and PGD"
    rec["calibration"]["temperature_scaling"] = {
        "applied": True, "temperature": 1.7, "test_ece_before": 0.15, "test_ece_after": 0.04,
        "bins_before": [{"confidence": 0.9, "accuracy": 0.7}],
        "reason": "applied: dividing the logits by 1.7 lowers the validation NLL"}
    rec["calibration"]["best"]["ece"] = 0.04
    for key in ("traces", "symptoms", "trials", "profile"):  # figures other tests draw
        rec.pop(key)
    rec["symptoms"] = []
    html = render_html(rec)
    assert 'id="fig-reliability"' in html and 'id="fig-robustness"' in html
    from doctor.report.plots import reliability

    assert reliability(json_safe(rec))  # with the before-temperature curve
    table = html[html.index('id="importance-table"'):]
    assert table.index("Permutation importance") < table.index("</tr>")
    assert table.count('class="num"') >= 9  # three methods for each of the three columns
    marked = re.findall(r'<tr class="marked">(.*?)</tr>', html, flags=re.S)
    assert len(marked) == 1 and ">0.1<" in marked[0]
    assert "Under PGD attacks of size 0.1" in html
    cal = html[html.index('id="calibration"'):]
    assert cal.index("best, before temperature scaling") < cal.index("best, temperature 1.7")
    assert 'id="temperature-scaling"' in cal and "dividing the logits by 1.7" in cal


# ----------------------------------------------------------------------------- calibration, robustness
def _overconfident(n: int = 1500, seed: int = 0):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    y = (X[:, 0] + 0.8 * torch.randn(n, generator=g) > 0).long()
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():  # a good direction, far too sure of itself
        net.weight.copy_(torch.tensor([[-6.0, 0, 0], [6.0, 0, 0]]))
        net.bias.zero_()
    return net, X, y


def test_temperature_scaling_cools_an_overconfident_network():
    from doctor.calibration import expected_calibration_error
    from doctor.calibration import temperature_scaling

    torch = pytest.importorskip("torch")
    net, X, y = _overconfident()
    with torch.no_grad():
        logits = net(X)
    fit = temperature_scaling(logits[:500], y[:500])
    assert fit["improves"] and fit["temperature"] > 2
    assert fit["val_nll_after"] < fit["val_nll_before"]
    before = expected_calibration_error(torch.softmax(logits[500:], 1).numpy(), y[500:].numpy())
    after = expected_calibration_error(torch.softmax(logits[500:] / fit["temperature"], 1).numpy(),
                                       y[500:].numpy())
    assert after < before / 2
    # a calibrated model gets no temperature
    with torch.no_grad():
        calm = net(X) / fit["temperature"]
    assert not temperature_scaling(calm[:500], y[:500])["improves"]


def test_pipeline_ships_a_temperature_only_for_poor_calibration():
    from types import SimpleNamespace

    from doctor.checks import Symptom
    from doctor.pipeline import calibrate
    from doctor.pipeline import recheck_calibration
    from doctor.prepare import Prepared
    from doctor.preprocess import Preprocessor

    pytest.importorskip("torch")
    net, X, y = _overconfident(seed=1)
    prep = Prepared(Preprocessor(), X[:500], y[:500], X[500:1000], y[500:1000], None,
                    "classification", 2)
    run = SimpleNamespace(model=net, trace=None, val_score=0.8)
    sick = Symptom("poor_calibration", 0.7, "overconfident", {"ece": 0.2})
    diag = SimpleNamespace(symptoms=[sick], profile=None)
    Xt, yt = X[1000:].numpy(), y[1000:].numpy()
    rec = calibrate(run, prep, diag, [sick], Xt, yt)
    assert rec["applied"] and rec["temperature"] > 2
    assert rec["test_ece_after"] < rec["test_ece_before"]
    assert "applied" in rec["reason"] and rec["bins_before"]
    after = recheck_calibration(run, prep, diag, [sick], rec["temperature"], Xt, yt)
    assert "poor_calibration" not in [s.id for s in after]
    healthy = SimpleNamespace(symptoms=[], profile=None)
    rec = calibrate(run, prep, healthy, [], Xt, yt)
    assert not rec["applied"] and rec["temperature"] == 1.0 and "not needed" in rec["reason"]


def test_robust_curve_includes_the_robust_eps_and_is_repeatable():
    from doctor.robustness import CURVE_EPS
    from doctor.robustness import curve_eps
    from doctor.robustness import robust_curve

    torch = pytest.importorskip("torch")
    assert curve_eps(0.15) == sorted(set(CURVE_EPS) | {0.15})
    assert curve_eps(None) == sorted(CURVE_EPS) and curve_eps(0.05) == sorted(CURVE_EPS)
    net, X, y = _overconfident(200)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = robust_curve(net, X, y, "classification", curve_eps(0.15))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's randomness untouched
    b = robust_curve(net, X, y, "classification", curve_eps(0.15))
    assert a == b and [p["eps"] for p in a] == curve_eps(0.15)
    assert a[0]["fgsm"] == a[0]["pgd"] >= a[-1]["pgd"]
    assert all(p["pgd"] <= p["fgsm"] + 0.05 for p in a)  # PGD is the stronger attack
    assert robust_curve(net, X, y, "regression") == []


# ----------------------------------------------------------------------------- the terminal
def test_terminal_summary_and_trial_progress(capsys, caplog):
    import logging
    from types import SimpleNamespace

    from doctor import cli

    rec = full_record()
    rec["best"]["metrics"]["balanced_accuracy"] = 0.85
    (Path("out")).mkdir()
    Path("out/bundle.json").write_text("{}")
    cli._summary(rec, Path("out"), quiet=False)
    err = capsys.readouterr().err
    assert "5 symptom(s)" in err and "overfitting" in err and "→ cured" in err
    assert "balanced_accuracy" in err and "+0.1500" in err
    assert "Report: out/report.html" in err and "doctor predict out" in err
    cli._summary(rec, Path("out"), quiet=True)
    assert capsys.readouterr().err == ""
    # trials: one log line each when stderr is not a terminal, with the best so far
    callback = cli._progress_callback(2)
    study = SimpleNamespace(best_trial=SimpleNamespace(value=0.9, number=0))
    trial = SimpleNamespace(value=0.9, number=0, state=SimpleNamespace(name="COMPLETE"),
                            user_attrs={})
    root = logging.getLogger("doctor")
    was = root.propagate
    root.propagate = True  # the CLI's own handler is not installed here; let caplog see it
    try:
        with caplog.at_level(logging.INFO, logger="doctor"):
            callback(study, trial)
    finally:
        root.propagate = was
    assert "trial 1/2 complete value=0.9000 best=0.9000 (trial 0)" in caplog.text


def test_checks_that_could_not_judge_are_listed_and_escaped():
    rec = diagnose_record()
    assert 'id="not-judged"' not in render_html(rec)  # nothing to list: no section
    rec["not_applicable"] = {"dying_relu": f"no ReLU units were found among {EVIL}",
                             "poor_calibration": "classification only"}
    view = build_view(rec)
    from doctor.report import title

    assert [n["title"] for n in view["not_judged"]] == [title("dying_relu"), title("poor_calibration")]
    html = render_html(rec)
    assert 'id="not-judged"' in html and "classification only" in html
    assert EVIL not in html and "&lt;script&gt;" in html
    # it sits in the symptoms section, after the symptoms themselves
    assert html.index('id="symptoms"') < html.index('id="not-judged"')
    assert build_view({**rec, "not_applicable": ["odd"]})["not_judged"] == []


def test_a_kept_recipe_verdict_quotes_the_shipped_model_when_it_scores_otherwise():
    # The model shipped is the kept recipe trained again with three seeds, averaged; its
    # held-out score is not the one run's the diagnosis trained, and the verdict says both.
    from doctor.pipeline import verdict

    def record(base: float, best: float) -> dict:
        return {"symptoms": [{"id": "missing_values"}],
                "baseline": {"metrics": {"balanced_accuracy": base}},
                "best": {"metrics": {"balanced_accuracy": best}, "kept_recipe_as_given": True,
                         "remedies_applied": [], "ensemble": {"members": 3},
                         "verification": {"same_as_given": True}}}

    text = verdict(record(0.617, 0.533))
    assert ("held-out balanced accuracy 0.617 as the diagnosis trained it once, 0.533 for the "
            "model shipped (your recipe trained with 3 seeds, averaged).") in text
    same = verdict(record(0.948, 0.948))
    assert "held-out balanced accuracy 0.948." in same and "shipped" not in same
