"""The whole visit: diagnose, treat, check the cure, explain, and write the report and bundle.

`run_diagnose` and `run_fit` are what `doctor diagnose` and `doctor fit` call; both write to a
temporary folder beside OUT and move it into place at the end, so an interrupted or failed
run never leaves OUT half-written.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from typing import Callable

import numpy as np
import optuna
import torch

from doctor.api import Case
from doctor.api import logits_of
from doctor.api import predict_arrays
from doctor.bundle import Bundle
from doctor.calibration import expected_calibration_error
from doctor.calibration import reliability_bins
from doctor.calibration import MIN_NLL_GAIN
from doctor.calibration import temperature_scaling
from doctor.checks import Evidence
from doctor.checks.data import learning_curve
from doctor.checks.data import signal_test
from doctor.checks.model import model_checks
from doctor.checks.training import link_causes
from doctor.checks.training import training_checks
from doctor.diagnosis import Diagnosis
from doctor.diagnosis import diagnose_table
from doctor.diagnosis import with_remedies
from doctor.metrics import report_metrics
from doctor.robustness import curve_eps
from doctor.robustness import robust_curve
from doctor.storage import mask
from doctor.trainer import Run
from doctor.search import WIDEN_AT
from doctor.search import WIDEN_STALL
from doctor.search import tune
from doctor.search import verify_cure

log = logging.getLogger(__name__)
#: Data symptoms the doctor's standard preprocessing always treats (impute, scale, constant
#: columns become zeros after scaling).
TREATED_BY_PREPROCESSING = ("missing_values", "unscaled_features", "constant_features")


# ----------------------------------------------------------------------------- pieces
def versions() -> dict[str, str]:
    out = {}
    for pkg in ("doctor", "torch", "optuna", "optuna-dashboard", "captum", "scikit-learn",
                "imbalanced-learn", "cleanlab", "pandas", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def data_section(case: Case) -> dict[str, Any]:
    t = case.table
    return {"rows": int(t.n_rows), "columns": int(t.X.shape[1]), "target": t.target,
            "task": t.task, "classes": [_plain(c) for c in t.classes] if t.classes else [],
            "source": str(t.source)}


#: Columns described one by one in the report's data profile (the rest are counted).
MAX_PROFILE_COLUMNS = 200


def profile_section(diagnosis: Diagnosis, case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = case.table
    if t.task == "classification":
        out["class_counts"] = {str(k): int(v) for k, v in t.y.value_counts().items()}
    p = diagnosis.profile
    extras = getattr(p, "extras", None) or {}
    ref = extras.get("reference") if isinstance(extras, dict) else None
    if isinstance(ref, dict):
        out["learning_curve"] = learning_curve(p)  # measured now if no check needed it
        out["reference"] = {"score": ref.get("score"), "model": ref.get("model"),
                            "signal": signal_test(ref, t, case.split,
                                                  seed=int(extras.get("seed", 0)))}
    elif p is not None and p.reference is not None:
        out["reference"] = {"score": p.reference}
    out["columns"] = {"numeric": list(t.numeric), "categorical": list(t.categorical)}
    out["column_stats"] = column_stats(t)
    return out


def column_stats(t) -> dict[str, dict[str, Any]]:
    """Per column: kind, missing share, distinct values, and median/spread/range if numeric."""
    stats: dict[str, dict[str, Any]] = {}
    n = max(len(t.X), 1)
    for c in list(t.X.columns)[:MAX_PROFILE_COLUMNS]:
        col = t.X[c]
        row: dict[str, Any] = {"kind": "numeric" if c in t.numeric else "categorical",
                               "missing_share": round(float(col.isna().sum()) / n, 5),
                               "distinct": int(col.nunique(dropna=True))}
        if c in t.numeric:
            x = col.to_numpy(dtype=np.float64, na_value=np.nan)
            x = x[np.isfinite(x)]
            if len(x):
                q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
                row.update({"median": float(med), "iqr": float(q3 - q1), "std": float(x.std()),
                            "min": float(x.min()), "max": float(x.max())})
        stats[str(c)] = row
    return stats


def heldout(run: Run, case: Case, prepared, rows: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Metrics of a trained run on table rows it never trained on (validation or test)."""
    t = case.table
    X = prepared.pre.transform(t.X.iloc[rows])
    pred, proba = predict_arrays(run.model, X, t.task, y_mean=prepared.y_mean, y_std=prepared.y_std,
                                 device=str(prepared.X_train.device))
    y = t.y_codes()[rows]
    return report_metrics(y, pred, proba, t.task, len(t.classes or [])), X, proba


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def write_outputs(out: Path, report: dict, bundle: Bundle | None) -> None:
    """Write into a temporary sibling of OUT, then swap it in: OUT is never half-written."""
    from doctor.report import write_report

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_report(tmp, report)
        if bundle is not None:
            bundle.save(tmp, extra={"source": report["data"].get("source")})
        old = None
        if out.exists():
            for extra in out.iterdir():  # files the user put there (e.g. predictions.csv) stay
                if not (tmp / extra.name).exists() and extra.is_file():
                    shutil.copy2(extra, tmp / extra.name)
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def rediagnose(run: Run, prepared, diagnosis: Diagnosis) -> list:
    """The cure check: the training and model checks on the retrained best recipe."""
    ev = Evidence(profile=diagnosis.profile, trace=run.trace, model=run.model, data=prepared,
                  val_score=run.val_score, found=[s for s in diagnosis.symptoms if s.stage == "data"])
    for stage in (training_checks(), model_checks()):
        ev.found = ev.found + [s for c in stage for s in c.run(ev)]
    return with_remedies(link_causes([s for s in ev.found if s.stage != "data"]))


def remedies_applied(best_params: dict, diagnosis: Diagnosis, remedies: list) -> list[str]:
    """Names of the remedy families whose replay on the user's recipe changes it."""
    fixed = optuna.trial.FixedTrial(best_params)
    out = []
    for r in remedies:
        try:
            if r.apply(fixed, diagnosis.recipe, diagnosis) != diagnosis.recipe:
                out.append(r.name)
        except Exception:  # a parameter it needs is absent: it was not part of the search
            continue
    return out


def symptoms_treated(best_params: dict, remedies: list, applied: list[str]) -> dict[str, list[str]]:
    """For each applied family, the symptoms its chosen parameters treat (`Remedy.treated`)."""
    return {r.name: [sid for sid in r.treats if r.treated(best_params, sid)]
            for r in remedies if r.name in applied}


def _remaining_note(s) -> str:
    """Why a data symptom stayed, and for a leak what the user should do about it."""
    if s.id == "target_leakage":
        cols = ", ".join(str(c) for c in (s.evidence.get("columns") or {})) or "the flagged columns"
        return (f"kept: the validation rows carry {cols} too, so the models that use it scored "
                "higher there; if it will not be known when you predict, remove it from the data "
                "and run again")
    return "no remedy for it was chosen"


def cure_table(diagnosis: Diagnosis, after: list, applied: list[str],
               treated: dict[str, list[str]] | None = None) -> list[dict]:
    """Each symptom found before, as treated, cured, improved or remaining. `treated` (family
    → symptoms, `symptoms_treated`) narrows a family to what its chosen switches treat."""
    after_by_id = {s.id: s for s in after}
    treated = treated or {}
    rows = []
    for s in diagnosis.symptoms:
        row = {"id": s.id, "stage": s.stage, "before": s.evidence}
        if s.stage == "data":
            fixes = [r for r in s.remedies if r in applied and s.id in treated.get(r, [s.id])]
            if s.id in TREATED_BY_PREPROCESSING:
                row["status"], row["after"] = "treated", {"by": ["standard preprocessing"] + fixes}
            elif fixes:
                row["status"], row["after"] = "treated", {"by": fixes}
            else:
                row["status"], row["after"] = "remaining", {"note": _remaining_note(s)}
        elif s.id not in after_by_id:
            by = [r for r in s.remedies if r in applied]
            if s.id == "poor_calibration" and "temperature_scaling" in applied:
                by.append("temperature_scaling")
            row["status"], row["after"] = "cured", ({"by": by} if by else {})
        else:
            a = after_by_id[s.id]
            row["status"] = "improved" if a.severity < s.severity - 0.05 else "remaining"
            row["after"] = a.evidence
        rows.append(row)
    return rows


def model_extras(run: Run, prepared, X_rows: np.ndarray, y_rows: np.ndarray, task: str, *,
                 robust_eps: float | None = None, temperature: float = 1.0,
                 held_out: str = "test rows") -> tuple[list, dict]:
    """Robustness curve and calibration of a trained classifier on held-out rows.

    The curve attacks at `robustness.curve_eps(robust_eps)`; calibration is measured on the
    probabilities as shipped, i.e. after dividing the logits by `temperature`.
    """
    if task != "classification" or len(X_rows) == 0:
        return [], {}
    dev = prepared.X_train.device
    X = torch.as_tensor(X_rows, dtype=torch.float32, device=dev)
    y = torch.as_tensor(y_rows, device=dev)
    curve = robust_curve(run.model, X[:MAX_ATTACK_ROWS], y[:MAX_ATTACK_ROWS], task,
                         curve_eps(robust_eps))
    logits = torch.nan_to_num(logits_of(run.model, X)).cpu().double()
    proba = torch.softmax(logits / temperature, 1).numpy()
    calib = {"ece": expected_calibration_error(proba, y_rows), "bins": reliability_bins(proba, y_rows),
             "rows": int(len(y_rows)), "held_out": held_out, "temperature": float(temperature)}
    return curve, calib


#: Held-out rows attacked for the robustness curve (FGSM + PGD-10 at each radius).
MAX_ATTACK_ROWS = 1000
ATTACK_TEXT = ("L-inf perturbations of the standardised features: FGSM (one signed-gradient step) "
               "and PGD (10 projected steps, random start)")
#: The radius the adversarial_vulnerability check attacks at (marked on the curve).
CHECK_EPS = 0.05


class TemperatureScaled(torch.nn.Module):
    """A network whose logits are divided by a fitted temperature (what the bundle ships)."""

    def __init__(self, model: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def calibrate(run: Run, prepared, diagnosis: Diagnosis, after: list, X_test: np.ndarray,
              y_test: np.ndarray) -> dict[str, Any] | None:
    """Temperature scaling, the remedy for poor_calibration (Guo et al. 2017).

    Considered when the diagnosis or the cure check found poor_calibration; the temperature is
    fitted on validation rows and kept only when it lowers their negative log-likelihood. The
    record holds the test-row ECE with and without it.
    """
    if prepared.task != "classification":
        return None
    found = [s.id for s in list(diagnosis.symptoms) + list(after) if s.id == "poor_calibration"]
    if not found:
        return {"applied": False, "temperature": 1.0,
                "reason": "not needed: poor_calibration was not found"}
    fit = temperature_scaling(logits_of(run.model, prepared.X_val), prepared.y_val)
    rec: dict[str, Any] = {"applied": bool(fit["improves"]), **fit,
                           "fitted_temperature": fit["temperature"]}
    if len(X_test):
        X = torch.as_tensor(X_test, dtype=torch.float32, device=prepared.X_train.device)
        logits = torch.nan_to_num(logits_of(run.model, X)).cpu().double()
        for key, temp in (("test_ece_before", 1.0), ("test_ece_after", fit["temperature"])):
            rec[key] = expected_calibration_error(torch.softmax(logits / temp, 1).numpy(), y_test)
        rec["bins_before"] = reliability_bins(torch.softmax(logits, 1).numpy(), y_test)
    if not rec["applied"]:
        rec["temperature"] = 1.0
        rec["reason"] = ("not applied: the fitted temperature "
                         f"{fit['temperature']:.3g} did not lower the validation NLL by "
                         f"{MIN_NLL_GAIN:.0%} or more")
    else:
        rec["reason"] = (f"applied: dividing the logits by {fit['temperature']:.3g} lowers the "
                         f"validation NLL from {fit['val_nll_before']:.4f} to "
                         f"{fit['val_nll_after']:.4f}")
    return rec


def recheck_calibration(run: Run, prepared, diagnosis: Diagnosis, after: list,
                        temperature: float, X_test: np.ndarray, y_test: np.ndarray) -> list:
    """The cure check's symptom list with poor_calibration measured on the shipped model.

    The temperature was fitted on validation rows, so the check runs on test rows (when there
    are enough for it), which neither trained the network nor fitted the temperature.
    """
    from dataclasses import replace

    from doctor.checks.model import PoorCalibration

    check = PoorCalibration()
    data = prepared
    if len(y_test) >= check.min_rows:
        dev = prepared.X_train.device
        data = replace(prepared, X_val=torch.as_tensor(X_test, dtype=torch.float32, device=dev),
                       y_val=torch.as_tensor(y_test, device=dev))
    rest = [s for s in after if s.id != "poor_calibration"]
    ev = Evidence(profile=diagnosis.profile, trace=run.trace,
                  model=TemperatureScaled(run.model, temperature), data=data,
                  val_score=run.val_score,
                  found=[s for s in diagnosis.symptoms if s.stage == "data"] + rest)
    return with_remedies(rest + check.run(ev))


def trials_section(study: optuna.Study) -> list[dict]:
    rows = []
    for tr in study.get_trials(deepcopy=False):
        row = {"number": tr.number, "state": tr.state.name, "value": tr.value,
               "params": tr.params, "symptoms": tr.user_attrs.get("symptoms", []),
               "reason": tr.user_attrs.get("reason") or tr.user_attrs.get("error")}
        for key in ("val_loss", "robust_accuracy", "clean_score", "epochs_run", "notes"):
            if key in tr.user_attrs:
                row[key] = tr.user_attrs[key]
        if tr.user_attrs.get("doctor:prescribed"):
            row["prescribed"] = True
        if tr.user_attrs.get("doctor:competing"):
            row["competing"] = tr.user_attrs["doctor:competing"]
        if tr.user_attrs.get("doctor:prior"):
            row["prior"] = tr.user_attrs["doctor:prior"]
        if tr.user_attrs.get("doctor:widened"):
            row["widened"] = True
        if tr.user_attrs.get("pruned_by"):
            row["pruned_by"] = tr.user_attrs["pruned_by"]
        rows.append(row)
    return rows


def param_importances(study: optuna.Study) -> dict[str, float]:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 3:
        return {}
    try:
        import warnings

        with warnings.catch_warnings():  # "some regimes have less than 2 trials" on short studies
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        return {k: float(v) for k, v in imp.items()}
    except Exception as e:  # too few distinct values and the like
        log.debug("parameter importances unavailable: %s", e)
        return {}


def verdict(report: dict) -> str:
    """The report's first paragraph: what was wrong, what fixed it and what it gained."""
    syms = report["symptoms"]
    if not syms:
        head = "No symptoms found: the data and the recipe look healthy."
    else:
        roots = [s["id"].replace("_", " ") for s in syms if not s.get("caused_by")][:3]
        head = f"Found {len(syms)} symptom(s); most important: {', '.join(roots)}."
    base, best = report.get("baseline", {}).get("metrics"), report.get("best", {}).get("metrics")
    if base and best:
        key = "balanced_accuracy" if "balanced_accuracy" in base else "r2"
        gain = best[key] - base[key]
        applied = [a for a in report["best"].get("remedies_applied") or []
                   if a != "temperature_scaling"]
        if report["best"].get("kept_recipe_as_given"):
            check = report["best"].get("verification") or {}
            why = check.get("decision")
            lead = (" Your recipe already treats what was found (the prescription is your "
                    "recipe as given), and no other remedy beat it by more than the noise of its "
                    "validation score, so it is kept" if check.get("same_as_given") else
                    " No remedy beat your recipe by more than the noise of its validation "
                    "score, so it is kept")
            members = int((report["best"].get("ensemble") or {}).get("members") or 1)
            # The model shipped is the kept recipe trained again (with `members` seeds,
            # averaged), so its held-out score can differ from the one run the diagnosis
            # trained: say both, or the user reads a number their model does not have.
            shipped = ("" if abs(gain) < 5e-4 else
                       f" as the diagnosis trained it once, {best[key]:.3f} for the model shipped "
                       + (f"(your recipe trained with {members} seeds, averaged)" if members > 1
                          else "(your recipe trained again)"))
            head += (lead + f"; held-out {key.replace('_', ' ')} {base[key]:.3f}{shipped}."
                     + (f" ({why[0].upper()}{why[1:]}.)" if why and not check.get("same_as_given")
                        else ""))
        else:
            what = f"remedies {', '.join(applied)}" if applied else "the search's best configuration"
            head += (f" With {what}, held-out {key.replace('_', ' ')} went from {base[key]:.3f} to "
                     f"{best[key]:.3f} ({gain:+.3f}).")
        cure = report.get("cure") or []
        if cure:
            fixed = sum(c.get("status") in ("cured", "treated") for c in cure)
            head += f" {fixed} of {len(cure)} symptom(s) cured or treated."
    signal = ((report.get("profile") or {}).get("reference") or {}).get("signal") or {}
    if signal and not signal.get("signal", True):
        metric = "balanced accuracy" if report.get("data", {}).get("task") == "classification" else "R²"
        head += (f" The features show no measurable signal about the target: the reference "
                 f"model's out-of-fold {metric} is {signal['score']:.3f} against {signal['chance']:.3f} "
                 f"by chance (permutation test, p = {signal['p_value']:.2f}), so no recipe can be "
                 "expected to beat chance on these columns; check that the target and the "
                 "features belong together.")
    ts = (report.get("calibration") or {}).get("temperature_scaling") or {}
    if ts.get("applied") and ts.get("test_ece_before") is not None:
        head += (f" Temperature scaling (T = {ts['temperature']:.2f}) took the expected calibration "
                 f"error on test rows from {ts['test_ece_before']:.3f} to {ts['test_ece_after']:.3f}.")
    rob = report.get("robustness") or {}
    eps = rob.get("robust_eps")
    if eps and rob.get("baseline") and rob.get("best"):
        at = {n: next((p["pgd"] for p in rob[n] if abs(p["eps"] - eps) < 1e-9), None)
              for n in ("baseline", "best")}
        if None not in at.values():
            head += (f" Under PGD attacks of size {eps:g}, accuracy went from {at['baseline']:.3f} "
                     f"to {at['best']:.3f}.")
    return head


def _md(text: Any) -> str:
    """User text for a markdown note: markup characters escaped, one line."""
    out = str(text).replace("\n", " ").replace("\r", " ")
    for ch in "\\`*_[]<>#|~&":
        out = out.replace(ch, "\\" + ch)
    return out


def _md_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        v = json_text(v)
        v = v if len(v) <= 120 else v[:119] + "…"
    return _md(v)


def json_text(v: Any) -> str:
    import json

    return json.dumps(v, default=str)


def dashboard_note(report: dict, prescription: dict) -> str:
    """The study's markdown note in optuna-dashboard: diagnosis, prescription, cure, verdict."""
    d = report["data"]
    lines = ["# doctor: diagnosis and prescription", ""]
    if report.get("verdict"):
        lines += ["**Verdict.** " + _md(report["verdict"]), ""]
    lines += [f"Data: {_md(d.get('source'))}, target {_md(d.get('target'))} ({_md(d.get('task'))}), "
              f"{d.get('rows')} rows, {d.get('columns')} feature columns.", "", "## Symptoms", ""]
    if report["symptoms"]:
        lines += ["| symptom | stage | severity | summary |", "| --- | --- | --- | --- |"]
        for s in report["symptoms"]:
            lines.append(f"| **{_md(s['id'])}** | {s['stage']} | {s['severity']:.2f} | "
                         f"{_md(s['summary'])} |")
    else:
        lines.append("None: a clean bill of health.")
    lines += ["", "## Prescription (enqueued as the first trial)", ""]
    lines += [f"- {_md(k)} = {_md_value(v)}" for k, v in prescription.items()] or \
        ["- nothing to prescribe"]
    rivals = [t for t in report.get("trials") or [] if t.get("competing")]
    if rivals:
        lines += ["", "## Competing treatments (enqueued after the prescription)", ""]
        for t in rivals:
            swapped = {k: v for k, v in (t.get("params") or {}).items() if prescription.get(k) != v}
            lines.append(f"- trial {t['number']}, {_md(t['competing'])}: " + ", ".join(
                f"{_md(k)} = {_md_value(v)}" for k, v in swapped.items()))
    widened = [t["number"] for t in report.get("trials") or [] if t.get("widened")]
    if widened:
        lines += ["", "## Widened to every family", "",
                  f"The search's best had not improved for {WIDEN_STALL} trials once {WIDEN_AT:.0%} of "
                  "the budget was spent, so trial(s) " + ", ".join(map(str, widened)) + " also drew the families "
                  "the diagnosis did not call for."]
    best = report.get("best") or {}
    if best:
        lines += ["", "## Treatment", ""]
        applied = best.get("remedies_applied") or []
        lines.append("Winning remedies: " + (", ".join(_md(a) for a in applied) if applied else
                                             "none (the recipe as given was kept)") + ".")
        base_m, best_m = (report.get("baseline") or {}).get("metrics") or {}, best.get("metrics") or {}
        keys = [k for k in best_m if isinstance(best_m.get(k), (int, float))
                and isinstance(base_m.get(k), (int, float))]
        if keys:
            lines += ["", "| metric (test rows) | baseline | best |", "| --- | --- | --- |"]
            lines += [f"| {_md(k)} | {base_m[k]:.4f} | {best_m[k]:.4f} |" for k in keys]
    if report.get("cure"):
        lines += ["", "## Cure check", "", "| symptom | status |", "| --- | --- |"]
        lines += [f"| {_md(c['id'])} | {_md(c['status'])} |" for c in report["cure"]]
    ex = report.get("explanations") or {}
    if ex.get("global_importance"):
        top = list(ex["global_importance"].items())[:5]
        lines += ["", "## Explanations", "", "Most important columns (integrated gradients): "
                  + ", ".join(f"{_md(k)} ({v:.2f})" for k, v in top) + ".",
                  "", _md(ex.get("agreement", ""))]
    lines += ["", "The full report (report.html) and the model bundle are attached to this study "
              "as artifacts."]
    return "\n".join(lines)


#: The study artifacts `fit` uploads: file name in OUT → mimetype. The bundle travels as one
#: zip (bundle.json + model.pt) so `doctor predict` can use it once unpacked.
ARTIFACTS = {"report.html": "text/html", "report.json": "application/json"}
BUNDLE_ZIP = "model-bundle.zip"


def attach_to_study(study: optuna.Study, storage_url: str | None, report: dict, prescription: dict,
                    out: Path) -> None:
    """The diagnosis and prescription as the study's note; the report and bundle as artifacts."""
    try:
        import optuna_dashboard
    except ImportError:
        return
    try:
        optuna_dashboard.save_note(study, dashboard_note(report, prescription))
        study.set_user_attr("doctor:symptoms", [s["id"] for s in report["symptoms"]])
        if report.get("best"):
            study.set_user_attr("doctor:remaining_symptoms", list(report["best"].get("symptoms") or []))
        if report.get("verdict"):
            study.set_user_attr("doctor:verdict", report["verdict"])
        if storage_url is None:  # an in-memory study (the Python API): no place to keep files
            return
        base = artifact_dir(storage_url, study.study_name)
        store = optuna.artifacts.FileSystemArtifactStore(str(base))
        for name, mime in ARTIFACTS.items():
            if (out / name).exists():
                optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(out / name),
                                                 study_or_trial=study, mimetype=mime)
        files = [f for f in ("bundle.json", "model.pt") if (out / f).exists()]
        if files:
            import zipfile

            with tempfile.TemporaryDirectory() as tmp:
                zpath = Path(tmp) / BUNDLE_ZIP
                with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
                    for f in files:
                        z.write(out / f, arcname=f)
                optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(zpath),
                                                 study_or_trial=study, mimetype="application/zip")
    except Exception as e:  # the note is a convenience; the run's results are already saved
        log.warning("could not attach the note/artifacts to the study: %s", mask(str(e)))


def artifact_dir(storage_url: str, study: str) -> Path:
    """Artifacts live beside a SQLite file (studies/artifacts), else under ./studies/artifacts."""
    if storage_url.startswith("sqlite:///"):
        base = Path(storage_url[len("sqlite:///"):]).parent / "artifacts"
    else:
        base = Path("studies") / "artifacts"
    base.mkdir(parents=True, exist_ok=True)
    return base


# ----------------------------------------------------------------------------- commands
def _stage(progress: Callable | None, label: str, epochs: int):
    """The per-epoch callback of a progress display for one training stage, or None."""
    return progress(label, epochs) if progress is not None else None


def run_diagnose(case: Case, out: Path, *, command: str = "", progress: Callable | None = None) -> dict:
    """`doctor diagnose`. `progress(label, epochs)` may return an `on_epoch(epoch, record)`."""
    diagnosis, run, prepared = diagnose_table(
        case.table, case.split, case.recipe, device=case.device,
        on_epoch=_stage(progress, "training your recipe", case.recipe.epochs))
    val_metrics, Xv, _ = heldout(run, case, prepared, case.split.val)
    report = {"data": data_section(case), "symptoms": [s.to_dict() for s in diagnosis.symptoms],
              "not_applicable": diagnosis.not_applicable,
              "baseline": {"metrics": val_metrics, "held_out": "validation rows",
                           "recipe": case.recipe.as_dict()},
              "traces": {"baseline": run.trace.to_dict()},
              "profile": profile_section(diagnosis, case),
              "versions": versions(), "command": command}
    if not run.trace.diverged:
        curve, cal = model_extras(run, prepared, Xv, case.table.y_codes()[case.split.val],
                                  case.table.task, held_out="validation rows")
        if curve:
            report["robustness"] = {"baseline": curve, "held_out": "validation rows",
                                    "attack": ATTACK_TEXT, "check_eps": CHECK_EPS}
            report["calibration"] = {"baseline": cal}
    report["verdict"] = verdict(report)
    write_outputs(out, report, None)
    return report


def run_fit(case: Case, out: Path, *, storage: str, study: str, trials: int,
            timeout: float | None = None, resume: bool = False, join: bool = False,
            space: str = "guided", workers: int = 1, robust_eps: float | None = None,
            command: str = "", callbacks: list[Callable] | None = None,
            progress: Callable | None = None) -> dict:
    started = time.perf_counter()
    recipe = case.recipe
    diagnosis, base_run, base_prep = diagnose_table(
        case.table, case.split, case.recipe, device=case.device,
        on_epoch=_stage(progress, "training your recipe", recipe.epochs))
    noisy = np.asarray(diagnosis.profile.noisy_rows, dtype=int) if diagnosis.profile else None
    result = tune(case.table, case.split, recipe, diagnosis, storage=storage, study_name=study,
                  trials=trials, timeout=timeout, resume=resume, join=join, space=space,
                  workers=workers, device=case.device, callbacks=callbacks,
                  robust_eps=robust_eps)
    # The verified cure: the best few trials and the recipe as given retrained with several
    # seeds on fresh train/validation splits; the cure replaces the recipe only when it wins
    # by more than noise, and is then retrained on the original split (search.verify_cure).
    cure = verify_cure(case.table, case.split, recipe, base_run, base_prep, result, diagnosis,
                       device=case.device, noisy=noisy, robust_eps=robust_eps, progress=progress)
    best_recipe, best_params, best_run, best_prep = cure.recipe, cure.params, cure.run, cure.prepared
    after = rediagnose(best_run, best_prep, diagnosis)
    # The model judged on the test rows and shipped: on small tables several seeds of the
    # chosen recipe, averaged (doctor.refit); the re-diagnosis above reads one network's probes.
    from doctor.refit import add_members
    from doctor.refit import ensemble_size

    single_run = best_run
    best_run, ensemble = add_members(
        best_recipe, best_run, best_prep, ensemble_size(len(case.split.train)),
        on_epoch=_stage(progress, "training the ensemble's other seeds", best_recipe.epochs))
    import search_spaces

    families = search_spaces.select(diagnosis, space="full")
    applied = remedies_applied(best_params, diagnosis, families)
    treated = symptoms_treated(best_params, families, applied)
    base_test, Xb, _ = heldout(base_run, case, base_prep, case.split.test)
    best_test, Xt, _ = heldout(best_run, case, best_prep, case.split.test)
    y_test = case.table.y_codes()[case.split.test]
    temp = calibrate(best_run, best_prep, diagnosis, after, Xt, y_test)
    temperature = temp["temperature"] if temp and temp.get("applied") else 1.0
    if temperature != 1.0:
        applied = applied + ["temperature_scaling"]
        after = recheck_calibration(best_run, best_prep, diagnosis, after, temperature, Xt, y_test)
        if best_test.get("log_loss") is not None:  # the shipped probabilities are the scaled ones
            best_test = dict(best_test)
            _, proba = predict_arrays(best_run.model, Xt, case.table.task, temperature=temperature,
                                      device=str(best_prep.X_train.device))
            best_test["log_loss"] = report_metrics(y_test, proba.argmax(1), proba, case.table.task,
                                                   len(case.table.classes or []))["log_loss"]
    report: dict[str, Any] = {
        "data": data_section(case),
        "symptoms": [s.to_dict() for s in diagnosis.symptoms],
        "not_applicable": diagnosis.not_applicable,
        "baseline": {"metrics": base_test, "held_out": "test rows", "recipe": case.recipe.as_dict(),
                     "val_score": base_run.val_score},
        "best": {"params": best_params, "kept_recipe_as_given": not best_params,
                 "best_trial_params": result.best_params, "metrics": best_test, "symptoms": [s.id for s in after],
                 "symptom_details": [s.to_dict() for s in after], "recipe": best_recipe.as_dict(),
                 "remedies_applied": applied, "val_score": best_run.val_score,
                 "trial": cure.trial, "seeds": cure.seeds, "seed_val_scores": cure.scores,
                 "verification": cure.record, "ensemble": ensemble,
                 **({"notes": list(best_prep.notes)} if best_prep.notes else {})},
        "study": {"storage": result.storage, "name": result.study.study_name,
                  "trials": len(result.study.trials), "best_trial": result.best_trial,
                  "space": space, "prescription": result.prescription, "remedies": result.remedies},
    }
    from doctor.explain import explain

    t = case.table
    Xt_tensor = torch.as_tensor(Xt, dtype=torch.float32, device=best_prep.X_train.device)
    # True targets in the model's output units: class indices, or standardised values.
    y_model = y_test if t.task == "classification" else (
        (y_test.astype(np.float64) - best_prep.y_mean) / (best_prep.y_std or 1.0))
    report["explanations"] = explain(
        best_run.model, Xt_tensor, feature_names=best_prep.pre.feature_names_out_,
        groups=best_prep.pre.groups_, task=t.task, n_classes=len(t.classes or []),
        class_names=[str(c) for c in t.classes] if t.classes else None, seed=recipe.seed,
        y=torch.as_tensor(y_model, device=Xt_tensor.device),
        row_ids=[int(i) + 2 for i in case.split.test])  # CSV line numbers
    report["cure"] = cure_table(diagnosis, after, applied, treated)
    report["trials"] = trials_section(result.study)
    report["param_importances"] = param_importances(result.study)
    report["traces"] = {"baseline": base_run.trace.to_dict(), "best": best_run.trace.to_dict()}
    report["profile"] = profile_section(diagnosis, case)
    base_curve, base_cal = [], {}
    if not base_run.trace.diverged:  # a diverged network has nothing to attack or calibrate
        base_curve, base_cal = model_extras(base_run, base_prep, Xb, y_test, t.task,
                                            robust_eps=robust_eps)
    best_curve, best_cal = model_extras(best_run, best_prep, Xt, y_test, t.task,
                                        robust_eps=robust_eps, temperature=temperature)
    if best_curve or base_curve:
        report["robustness"] = {"baseline": base_curve, "best": best_curve, "held_out": "test rows",
                                "attack": ATTACK_TEXT, "robust_eps": robust_eps,
                                "check_eps": CHECK_EPS}
        report["calibration"] = {"baseline": base_cal, "best": best_cal}
        if temp is not None:
            report["calibration"]["temperature_scaling"] = temp
    report["versions"] = versions()
    report["command"] = command
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["verdict"] = verdict(report)
    from doctor.refit import epochs_used
    from doctor.refit import refit_all_rows

    final_run, final_prep, refit = refit_all_rows(
        case, best_recipe, single_run, noisy=noisy, members=ensemble["members"],
        on_epoch=_stage(progress, "refitting on all rows", epochs_used(single_run)))
    if final_run.trace.diverged:  # keep the validated model rather than a broken refit
        final_run, final_prep, refit = best_run, best_prep, {"skipped": final_run.trace.diverged["reason"]}
    report["best"]["refit"] = refit
    # The temperature was fitted on the validated model; the refit shares its recipe and epochs.
    bundle = Bundle(final_run.model.cpu(), best_recipe, final_prep.pre, t.task, t.target, t.classes,
                    final_prep.y_mean, final_prep.y_std, temperature=temperature)
    write_outputs(out, report, bundle)
    attach_to_study(result.study, storage, report, result.prescription, Path(out))
    return report

