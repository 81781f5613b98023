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
from doctor.api import predict_arrays
from doctor.bundle import Bundle
from doctor.calibration import expected_calibration_error
from doctor.calibration import reliability_bins
from doctor.checks import Evidence
from doctor.checks.model import model_checks
from doctor.checks.training import link_causes
from doctor.checks.training import training_checks
from doctor.diagnosis import Diagnosis
from doctor.diagnosis import diagnose_table
from doctor.diagnosis import with_remedies
from doctor.metrics import report_metrics
from doctor.prepare import prepare
from doctor.probes import default_probes
from doctor.robustness import robust_curve
from doctor.storage import mask
from doctor.trainer import Run
from doctor.trainer import Trainer
from doctor.search import tune

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


def profile_section(diagnosis: Diagnosis, case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = case.table
    if t.task == "classification":
        out["class_counts"] = {str(k): int(v) for k, v in t.y.value_counts().items()}
    p = diagnosis.profile
    extras = getattr(p, "extras", None) or {}
    ref = extras.get("reference") if isinstance(extras, dict) else None
    if isinstance(ref, dict):
        out["learning_curve"] = ref.get("curve", [])
        out["reference"] = {"score": ref.get("score"), "model": ref.get("model")}
    elif p is not None and p.reference is not None:
        out["reference"] = {"score": p.reference}
    out["columns"] = {"numeric": list(t.numeric), "categorical": list(t.categorical)}
    return out


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


def cure_table(diagnosis: Diagnosis, after: list, applied: list[str]) -> list[dict]:
    after_by_id = {s.id: s for s in after}
    rows = []
    for s in diagnosis.symptoms:
        row = {"id": s.id, "stage": s.stage, "before": s.evidence}
        if s.stage == "data":
            fixes = [r for r in s.remedies if r in applied]
            if s.id in TREATED_BY_PREPROCESSING:
                row["status"], row["after"] = "treated", {"by": ["standard preprocessing"] + fixes}
            elif fixes:
                row["status"], row["after"] = "treated", {"by": fixes}
            else:
                row["status"], row["after"] = "remaining", {"note": "no remedy for it was chosen"}
        elif s.id not in after_by_id:
            row["status"], row["after"] = "cured", {}
        else:
            a = after_by_id[s.id]
            row["status"] = "improved" if a.severity < s.severity - 0.05 else "remaining"
            row["after"] = a.evidence
        rows.append(row)
    return rows


def model_extras(run: Run, prepared, X_test: np.ndarray, case: Case) -> tuple[list, dict]:
    """Robustness curve and calibration of a trained classifier on test rows."""
    t = case.table
    if t.task != "classification" or len(X_test) == 0:
        return [], {}
    dev = prepared.X_train.device
    X = torch.as_tensor(X_test[:1000], dtype=torch.float32, device=dev)
    y = torch.as_tensor(t.y_codes()[case.split.test][:1000], device=dev)
    curve = robust_curve(run.model, X, y, t.task)
    _, proba = predict_arrays(run.model, X_test, t.task, device=str(dev))
    yt = t.y_codes()[case.split.test]
    calib = {"ece": expected_calibration_error(proba, yt), "bins": reliability_bins(proba, yt)}
    return curve, calib


def trials_section(study: optuna.Study) -> list[dict]:
    rows = []
    for tr in study.get_trials(deepcopy=False):
        rows.append({"number": tr.number, "state": tr.state.name, "value": tr.value,
                     "params": tr.params, "symptoms": tr.user_attrs.get("symptoms", []),
                     "reason": tr.user_attrs.get("reason") or tr.user_attrs.get("error")})
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
        applied = report["best"].get("remedies_applied") or []
        what = f"remedies {', '.join(applied)}" if applied else "the search's best configuration"
        head += (f" With {what}, held-out {key.replace('_', ' ')} went from {base[key]:.3f} to "
                 f"{best[key]:.3f} ({gain:+.3f}).")
    return head


def dashboard_note(report: dict, prescription: dict) -> str:
    lines = ["# doctor: diagnosis and prescription", "", f"Data: `{report['data']['source']}`, target "
             f"`{report['data']['target']}` ({report['data']['task']}).", "", "## Symptoms", ""]
    for s in report["symptoms"] or []:
        lines.append(f"- **{s['id']}** (severity {s['severity']:.2f}): {s['summary']}")
    if not report["symptoms"]:
        lines.append("- none: a clean bill of health")
    lines += ["", "## Prescription (enqueued as the first trial)", ""]
    lines += [f"- `{k}` = `{v}`" for k, v in prescription.items()] or ["- nothing to prescribe"]
    if report.get("verdict"):
        lines += ["", "## Verdict", "", report["verdict"]]
    return "\n".join(lines)


def attach_to_study(study: optuna.Study, storage_url: str, report: dict, prescription: dict,
                    out: Path) -> None:
    """The prescription as the study's note; the report and bundle metadata as artifacts."""
    try:
        import optuna_dashboard
    except ImportError:
        return
    try:
        optuna_dashboard.save_note(study, dashboard_note(report, prescription))
        base = artifact_dir(storage_url, study.study_name)
        store = optuna.artifacts.FileSystemArtifactStore(str(base))
        for name, mime in (("report.html", "text/html"), ("report.json", "application/json"),
                           ("bundle.json", "application/json")):
            if (out / name).exists():
                optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(out / name),
                                                 study_or_trial=study, mimetype=mime)
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
def run_diagnose(case: Case, out: Path, *, command: str = "") -> dict:
    diagnosis, run, prepared = diagnose_table(case.table, case.split, case.recipe, device=case.device)
    val_metrics, _, _ = heldout(run, case, prepared, case.split.val)
    report = {"data": data_section(case), "symptoms": [s.to_dict() for s in diagnosis.symptoms],
              "baseline": {"metrics": val_metrics, "held_out": "validation rows",
                           "recipe": case.recipe.as_dict()},
              "traces": {"baseline": run.trace.to_dict()},
              "profile": profile_section(diagnosis, case),
              "versions": versions(), "command": command}
    report["verdict"] = verdict(report)
    write_outputs(out, report, None)
    return report


def run_fit(case: Case, out: Path, *, storage: str, study: str, trials: int,
            timeout: float | None = None, resume: bool = False, join: bool = False,
            space: str = "guided", workers: int = 1, robust_eps: float | None = None,
            command: str = "", callbacks: list[Callable] | None = None) -> dict:
    started = time.perf_counter()
    recipe = case.recipe
    diagnosis, base_run, base_prep = diagnose_table(case.table, case.split, case.recipe,
                                                    device=case.device)
    noisy = np.asarray(diagnosis.profile.noisy_rows, dtype=int) if diagnosis.profile else None
    result = tune(case.table, case.split, recipe, diagnosis, storage=storage, study_name=study,
                  trials=trials, timeout=timeout, resume=resume, join=join, space=space,
                  workers=workers, device=case.device, callbacks=callbacks,
                  robust_eps=robust_eps)
    best_recipe = result.best_recipe
    best_prep = prepare(case.table, case.split, best_recipe, device=case.device, noisy=noisy)
    best_run = Trainer(best_recipe, probes=default_probes()).fit(best_prep)
    after = rediagnose(best_run, best_prep, diagnosis)
    import search_spaces

    applied = remedies_applied(result.best_params, diagnosis,
                               search_spaces.select(diagnosis, space="full"))
    base_test, Xb, _ = heldout(base_run, case, base_prep, case.split.test)
    best_test, Xt, _ = heldout(best_run, case, best_prep, case.split.test)
    report: dict[str, Any] = {
        "data": data_section(case),
        "symptoms": [s.to_dict() for s in diagnosis.symptoms],
        "baseline": {"metrics": base_test, "held_out": "test rows", "recipe": case.recipe.as_dict(),
                     "val_score": base_run.val_score},
        "best": {"params": result.best_params, "metrics": best_test, "symptoms": [s.id for s in after],
                 "symptom_details": [s.to_dict() for s in after], "recipe": best_recipe.as_dict(),
                 "remedies_applied": applied, "val_score": best_run.val_score},
        "study": {"storage": result.storage, "name": result.study.study_name,
                  "trials": len(result.study.trials), "best_trial": result.best_trial,
                  "space": space, "prescription": result.prescription, "remedies": result.remedies},
    }
    from doctor.explain import explain

    t = case.table
    Xt_tensor = torch.as_tensor(Xt, dtype=torch.float32, device=best_prep.X_train.device)
    report["explanations"] = explain(
        best_run.model, Xt_tensor, feature_names=best_prep.pre.feature_names_out_,
        groups=best_prep.pre.groups_, task=t.task, n_classes=len(t.classes or []),
        class_names=[str(c) for c in t.classes] if t.classes else None, seed=recipe.seed,
        y=torch.as_tensor(t.y_codes()[case.split.test], device=Xt_tensor.device)
        if t.task == "classification" else None,
        row_ids=[int(i) + 2 for i in case.split.test])  # CSV line numbers
    report["cure"] = cure_table(diagnosis, after, applied)
    report["trials"] = trials_section(result.study)
    report["param_importances"] = param_importances(result.study)
    report["traces"] = {"baseline": base_run.trace.to_dict(), "best": best_run.trace.to_dict()}
    report["profile"] = profile_section(diagnosis, case)
    base_curve, base_cal = model_extras(base_run, base_prep, Xb, case)
    best_curve, best_cal = model_extras(best_run, best_prep, Xt, case)
    if base_curve:
        report["robustness"] = {"baseline": base_curve, "best": best_curve}
        report["calibration"] = {"baseline": base_cal, "best": best_cal}
    report["versions"] = versions()
    report["command"] = command
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["verdict"] = verdict(report)
    bundle = Bundle(best_run.model.cpu(), best_recipe, best_prep.pre, t.task, t.target, t.classes,
                    best_prep.y_mean, best_prep.y_std)
    write_outputs(out, report, bundle)
    attach_to_study(result.study, storage, report, result.prescription, Path(out))
    return report

