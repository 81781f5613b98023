"""tune(): the Optuna search over remedies, shaped by the diagnosis.

Every trial builds its recipe from the selected remedies (`search_spaces`), trains it with the
one `Trainer`, reports validation scores for pruning, is pruned with its reason when the loss
diverges, and stores the symptoms that remain as user attributes. Finished trials are in the
storage as soon as they finish; a Ctrl-C leaves them there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable

import numpy as np
import optuna

from doctor.checks import Evidence
from doctor.checks.training import training_checks
from doctor.errors import InputError
from doctor.prepare import prepare
from doctor.probes import default_probes
from doctor.storage import mask
from doctor.storage import open_storage
from doctor.surgery import SurgeryError
from doctor.trainer import Trainer

if TYPE_CHECKING:
    from doctor.data import Split
    from doctor.data import Table
    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe

log = logging.getLogger(__name__)
#: Intermediate values reported per trial at most (SQLite costs ~1.5 ms per report).
MAX_REPORTS = 20
DEFAULT_TRIALS = 20


@dataclass
class TuneResult:
    """The study, the best parameters and the best recipe rebuilt through `FixedTrial`."""

    study: optuna.Study
    storage: str  # masked
    best_params: dict[str, Any]
    best_recipe: Recipe
    best_trial: int | None
    best_value: float | None
    prescription: dict[str, Any] = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None


def fingerprint(table: Table) -> str:
    """A hash of the data and target, stored in the study so --resume refuses other data."""
    h = hashlib.sha256()
    h.update(table.target.encode())
    h.update(",".join(table.X.columns).encode())
    h.update(str(table.n_rows).encode())
    h.update(np.ascontiguousarray(
        __import__("pandas").util.hash_pandas_object(table.X.assign(_y=table.y), index=False)
        .to_numpy()).tobytes())
    return h.hexdigest()[:16]


class Objective:
    """The function Optuna calls; picklable so worker processes can run it."""

    def __init__(self, table: Table, split: Split, recipe: Recipe, diagnosis: Diagnosis,
                 remedies: list, device: str, robust_eps: float | None = None) -> None:
        self.table, self.split, self.recipe = table, split, recipe
        self.diagnosis, self.remedies, self.device = diagnosis, remedies, device
        self.robust_eps = robust_eps

    def __call__(self, trial: optuna.Trial) -> float:
        from search_spaces import build_recipe

        try:
            recipe = build_recipe(trial, self.recipe, self.diagnosis, self.remedies)
        except SurgeryError as e:
            trial.set_user_attr("reason", f"remedy does not apply to this network: {e}")
            raise optuna.TrialPruned(str(e)) from None
        trial.set_user_attr("seed", recipe.seed)
        profile = self.diagnosis.profile
        noisy = np.asarray(profile.noisy_rows, dtype=int) if profile is not None else None
        data = prepare(self.table, self.split, recipe, device=self.device, noisy=noisy)
        every = max(1, math.ceil(recipe.epochs / MAX_REPORTS))

        def on_epoch(epoch: int, record: dict) -> None:
            if epoch % every and epoch != recipe.epochs - 1:
                return
            value = record["val_score"]
            if not math.isfinite(record["val_loss"]):
                reason = f"validation loss became non-finite at epoch {epoch + 1}"
                trial.set_user_attr("reason", reason)
                raise optuna.TrialPruned(reason)
            trial.report(value, epoch)
            if trial.should_prune():
                reason = f"pruned at epoch {epoch + 1}: validation score {value:.3f} below the median"
                trial.set_user_attr("reason", reason)
                raise optuna.TrialPruned(reason)

        run = Trainer(recipe, probes=default_probes(), on_epoch=on_epoch).fit(data)
        if run.trace.diverged:
            reason = run.trace.diverged["reason"]
            trial.set_user_attr("reason", reason)
            trial.set_user_attr("symptoms", ["loss_divergence"])
            raise optuna.TrialPruned(reason)
        ev = Evidence(profile=profile, trace=run.trace, data=data, val_score=run.val_score)
        symptoms = sorted({s.id for c in training_checks() for s in c.run(ev)})
        trial.set_user_attr("symptoms", symptoms)
        trial.set_user_attr("val_loss", run.val_loss)
        trial.set_user_attr("epochs_run", len(run.trace.epochs))
        if not math.isfinite(run.val_score):
            raise optuna.TrialPruned("validation score is not finite")
        if self.robust_eps and data.task == "classification":
            # --robust-eps: one objective, the mean of clean and PGD accuracy on validation
            # rows. A scalarisation keeps pruning (single-objective only in Optuna) and picks
            # a model that is both accurate and robust; the robust part is stored per trial.
            from doctor.robustness import robust_score

            _, robust = robust_score(run.model, data.X_val[:1000], data.y_val[:1000],
                                     self.robust_eps, data.task)
            trial.set_user_attr("robust_accuracy", robust)
            trial.set_user_attr("clean_score", float(run.val_score))
            return 0.5 * (float(run.val_score) + robust)
        return float(run.val_score)


def create_study(storage_url: str | None, name: str, *, seed: int, epochs: int, resume: bool,
                 join: bool, table: Table) -> tuple[optuna.Study, str]:
    """Create the study once (before any worker starts) or load it for --resume / a named join.

    Returns the study and its final name (a default-named study that exists already and is not
    resumed gets a fresh numbered name, so nothing earlier is touched).
    """
    storage = open_storage(storage_url) if storage_url else optuna.storages.InMemoryStorage()
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage=storage)}
    fp = fingerprint(table)
    if name in existing and not (resume or join):
        base, k = name, 2
        while f"{base}-{k}" in existing:
            k += 1
        name = f"{base}-{k}"
        log.info("study '%s' exists; starting a new study '%s' (pass --resume to continue)", base, name)
    elif name not in existing and resume:
        raise InputError(f"--resume: no study named '{name}' in {mask(storage_url)}; run without "
                         "--resume to start it")
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4))
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    old = study.user_attrs.get("doctor:fingerprint")
    if old is None:
        study.set_user_attr("doctor:fingerprint", fp)
        study.set_user_attr("doctor:target", table.target)
    elif old != fp:
        raise InputError(f"study '{name}' in {mask(storage_url)} was made on other data (or another "
                         f"target than '{table.target}'); pass --study NEW for this data")
    return study, name


def n_finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
              optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))


def tune(table: Table, split: Split, recipe: Recipe, diagnosis: Diagnosis, *,
         storage: str | None, study_name: str, trials: int = DEFAULT_TRIALS, timeout: float | None = None,
         resume: bool = False, join: bool = False, space: str = "guided", workers: int = 1,
         device: str = "cpu", callbacks: list[Callable] | None = None,
         robust_eps: float | None = None) -> TuneResult:
    """Run the remedy search and return the best recipe.

    Args:
        trials: trials to run in this call; with `resume`, finished trials count towards it.
        space: "guided" (the diagnosis selects remedies; its prescription runs first) or
            "full" (every remedy family, nothing enqueued).
    """
    import search_spaces

    if space not in ("guided", "full"):
        raise InputError(f"--space must be 'guided' or 'full', got '{space}'")
    remedies = search_spaces.select(diagnosis, space=space)
    if robust_eps and table.task == "classification":
        names = {r.name for r in remedies}
        remedies += [r for r in search_spaces.select(diagnosis, space="full")
                     if "adversarial_vulnerability" in r.treats and r.name not in names]
    study, study_name = create_study(storage, study_name, seed=recipe.seed, epochs=recipe.epochs,
                                     resume=resume, join=join, table=table)
    prescription: dict[str, Any] = {}
    if space == "guided":
        prescription = search_spaces.prescription(diagnosis, remedies)
        study.enqueue_trial(prescription, user_attrs={"doctor:prescribed": True},
                            skip_if_exists=True)
        study.set_user_attr("doctor:prescription", json.dumps(prescription, default=str))
    study.set_user_attr("doctor:space", space)
    study.set_user_attr("doctor:remedies", [r.name for r in remedies])
    todo = trials - n_finished(study) if resume else trials
    objective = Objective(table, split, recipe, diagnosis, remedies, device, robust_eps)
    if todo > 0:
        if workers > 1 and storage:
            from doctor.workers import run_workers

            run_workers(storage, study_name, objective, todo, workers, timeout)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=todo, timeout=timeout, catch=(Exception,),
                               callbacks=callbacks or [], gc_after_trial=False)
    out = result(study, storage, recipe, diagnosis, remedies, prescription)
    out.diagnosis = diagnosis
    return out


def result(study: optuna.Study, storage: str | None, recipe: Recipe, diagnosis: Diagnosis,
           remedies: list, prescription: dict) -> TuneResult:
    from search_spaces import build_recipe

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return TuneResult(study, mask(storage or "in-memory"), {}, recipe, None, None, prescription,
                          [r.name for r in remedies])
    best = max(done, key=lambda t: t.value)
    fixed = optuna.trial.FixedTrial(best.params)
    best_recipe = build_recipe(fixed, recipe, diagnosis, remedies)
    return TuneResult(study, mask(storage or "in-memory"), dict(best.params), best_recipe, best.number,
                      float(best.value), prescription, [r.name for r in remedies])
