"""tune(): the Optuna search over remedies, shaped by the diagnosis.

Every trial builds its recipe from the selected remedies (`search_spaces`), trains it with the
one `Trainer`, reports validation scores for pruning, is pruned with its reason when the loss
diverges, and stores the symptoms that remain as user attributes. Finished trials are in the
storage as soon as they finish; a Ctrl-C leaves them there.

Faults and crashes (docs/multi-machine.md says the same for users):

- A trial that raises, runs out of memory or is interrupted ends FAIL with its `reason` user
  attribute; the study goes on (Ctrl-C: the running trial is FAIL, the rest is kept, exit 130).
  A trial whose loss or score becomes NaN/inf is PRUNED with its reason.
- Each trial records its worker (`doctor:worker`: host, pid, process start time). A trial left
  RUNNING by a worker that died (SIGKILL, power loss) is *abandoned*; it is marked FAIL and its
  parameters are queued once more (`storage.RetryStale`) when
  * its heartbeat is older than the grace period (RDB storages: any live worker on any machine
    does this before each trial, and so does `--resume`), or
  * `--resume`/joining finds it on this machine with its process gone (immediately, any
    storage), or with no worker recorded and started longer ago than the grace period.
  A RUNNING trial of a live process, or of another machine with a fresh heartbeat, is left alone.
- With `--resume`, trials with a result (COMPLETE and PRUNED) count towards `--trials`; FAIL
  trials (errors, interrupted or abandoned ones) do not, so a resumed study reaches the
  requested number of trials with a result even when trials were interrupted or re-run.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import signal
import socket
import threading
import warnings
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Iterator

import numpy as np
import optuna

from doctor.checks import Evidence
from doctor.checks.training import training_checks
from doctor.errors import InputError
from doctor.prepare import prepare
from doctor.probes import default_probes
from doctor.storage import RetryStale
from doctor.storage import grace_period
from doctor.storage import mask
from doctor.storage import mask_text
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
#: The user attribute naming the process that runs a trial.
OWNER = "doctor:worker"
TrialState = optuna.trial.TrialState
#: States of trials that have a result; with --resume they count towards --trials.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


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


# ----------------------------------------------------------------------------- workers
def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process from /proc, or None where unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], rest[19]
    except (OSError, IndexError, ValueError):
        return None


def worker_record(number: int) -> dict[str, Any]:
    """Who runs trial `number`: host, pid and the process's start time (against pid reuse)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    return {"host": socket.gethostname(), "pid": pid, "start": stat[1] if stat else None,
            "trial": int(number)}


def worker_alive(record: dict[str, Any]) -> bool:
    """Whether the process in a `worker_record` may still run. Another machine's process is
    assumed alive: only its heartbeat can tell."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return True
    if pid == os.getpid():
        return True
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
        return record.get("start") in (None, start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours, or the platform cannot tell
        return True
    return True


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail this study's trials abandoned by dead workers and queue their parameters again.

    Returns the numbers of the trials it failed. See the module docstring for the policy.
    """
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials (RDB storages)
    # The same storage calls Optuna's fail_stale_trials makes: the study's storage is shared.
    storage = study._storage
    grace = grace_period()
    now = datetime.now()
    retry = RetryStale()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rec = t.user_attrs.get(OWNER)
        if isinstance(rec, dict) and rec.get("trial") == t.number:
            if worker_alive(rec):
                continue
            why = f"its worker (process {rec.get('pid')} on {rec.get('host')}) stopped"
        else:
            started = t.datetime_start
            if started is None or (now - started).total_seconds() < grace:
                continue
            why = f"it ran for over {grace} s with no worker recorded"
        try:
            storage.set_trial_user_attr(t._trial_id, "reason", f"abandoned: {why} before it "
                                        "finished; its parameters were queued again")
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            continue  # another process got there first
        retry(study, storage.get_trial(t._trial_id))
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    failed = sorted(running - still)
    return failed


# ----------------------------------------------------------------------------- trial faults
def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    try:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                            or "not enough memory" in text)


def failure_reason(e: BaseException) -> str:
    """One line saying why a trial failed, for its `reason` user attribute and the report."""
    first = next((l.strip() for l in str(e).splitlines() if l.strip()), "")[:300]
    detail = f"{type(e).__name__}: {first}" if first else type(e).__name__
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C) before it finished"
    if _is_oom(e):
        return (f"ran out of memory ({mask_text(detail)}); this configuration needs more memory "
                "than the device has")
    return f"raised {mask_text(detail)}"


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


class _OneLineTrialFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; the doctor records the reason instead.

    Keeps Optuna's one-line warning (passwords masked), drops its traceback (unless
    DOCTOR_DEBUG is set) and its second line "failed with value None".
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if msg.startswith("Trial ") and msg.endswith("failed with value None."):
            return False
        if record.exc_info and not os.environ.get("DOCTOR_DEBUG"):
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = mask_text(msg), ()
        return True


@contextlib.contextmanager
def one_line_trial_failures() -> Iterator[None]:
    logger = logging.getLogger("optuna.study._optimize")
    flt = _OneLineTrialFailures()
    logger.addFilter(flt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        logger.removeFilter(flt)


# ----------------------------------------------------------------------------- Ctrl-C
#: Set by the first Ctrl-C during a search; the search stops at the next safe point.
_INTERRUPT = threading.Event()


def _check_interrupt(*_args) -> None:
    """A safe point (an epoch end inside training, a trial end): act on a pending Ctrl-C."""
    if _INTERRUPT.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Take Ctrl-C at safe points only while the search runs.

    A KeyboardInterrupt raised in the middle of a storage write can leave a SQLite
    transaction holding its lock, so recording the interrupted trial then waits on the lock
    and fails. The first Ctrl-C only sets a flag; training checks it at every epoch end and
    the study after every trial (both outside any storage write). A second Ctrl-C stops at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _INTERRUPT.clear()

    def handler(signum, frame):
        if _INTERRUPT.is_set():
            raise KeyboardInterrupt
        _INTERRUPT.set()

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    _check_interrupt()


# ----------------------------------------------------------------------------- objective
class Objective:
    """The function Optuna calls; picklable so worker processes can run it."""

    def __init__(self, table: Table, split: Split, recipe: Recipe, diagnosis: Diagnosis,
                 remedies: list, device: str, robust_eps: float | None = None) -> None:
        self.table, self.split, self.recipe = table, split, recipe
        self.diagnosis, self.remedies, self.device = diagnosis, remedies, device
        self.robust_eps = robust_eps

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER, worker_record(trial.number))
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, KeyboardInterrupt) as e:  # recorded, then Optuna marks it FAIL
            oom = _is_oom(e)
            if oom:
                _free_memory()
            with contextlib.suppress(Exception):
                trial.set_user_attr("reason", failure_reason(e))
                if isinstance(e, KeyboardInterrupt):
                    trial.set_user_attr("doctor:interrupted", True)
            raise

    def _run(self, trial: optuna.Trial) -> float:
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
            _check_interrupt()
            if epoch % every and epoch != recipe.epochs - 1:
                return
            value = record["val_score"]
            if not (math.isfinite(record["val_loss"]) and math.isfinite(value)):
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
            reason = "validation score is not finite"
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
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


# ----------------------------------------------------------------------------- the study
def make_sampler(seed: int, *, worker: int | None = None) -> optuna.samplers.BaseSampler:
    """TPE seeded by --seed. Workers get distinct seeds (the same seed would draw the same
    start-up trials in each) and the constant liar, so concurrent trials spread out."""
    if worker is None:
        return optuna.samplers.TPESampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed + 1000 * (worker + 1), constant_liar=True)


def make_pruner(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4))


def _check_same_data(user_attrs: dict, name: str, storage_url: str | None, table: Table,
                     fp: str) -> None:
    old = user_attrs.get("doctor:fingerprint")
    if old is None or old == fp:
        return
    where = mask(storage_url or "in-memory")
    target = user_attrs.get("doctor:target")
    if target is not None and target != table.target:
        raise InputError(f"study '{name}' in {where} was made for target '{target}', not "
                         f"'{table.target}'; pass --target {target}, or --study NEW to start a "
                         "study for this target")
    raise InputError(f"study '{name}' in {where} was made on other data (or another target than "
                     f"'{table.target}'): its data fingerprint is {old}, this data's is {fp}; "
                     "pass the same data, or --study NEW to start a study for this data")


def check_resume(storage_url: str, name: str, table: Table, *, resume: bool, join: bool) -> None:
    """Before any work: the storage opens, a --resume study exists and holds the same data."""
    storage = open_storage(storage_url)
    try:
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage=storage)}
    except Exception as e:  # noqa: BLE001 - a database without Optuna's tables, a driver error
        raise InputError(f"--storage '{mask(storage_url)}': cannot list its studies "
                         f"({mask_text(str(e).splitlines()[0] if str(e) else type(e).__name__)})"
                         "; check the URL") from None
    if resume and name not in summaries:
        known = ", ".join(sorted(summaries)[:8]) or "none"
        raise InputError(f"--resume: no study named '{name}' in {mask(storage_url)} (studies "
                         f"there: {known}); run without --resume to start it")
    if name in summaries and (resume or join):
        _check_same_data(summaries[name].user_attrs, name, storage_url, table, fingerprint(table))


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
        raise InputError(f"--resume: no study named '{name}' in {mask(storage_url or 'in-memory')}; "
                         "run without --resume to start it")
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                sampler=make_sampler(seed), pruner=make_pruner(epochs),
                                load_if_exists=True)
    old = study.user_attrs.get("doctor:fingerprint")
    if old is None:
        study.set_user_attr("doctor:fingerprint", fp)
        study.set_user_attr("doctor:target", table.target)
    else:
        _check_same_data(study.user_attrs, name, storage_url, table, fp)
    return study, name


def n_finished(study: optuna.Study) -> int:
    """Trials with a result (COMPLETE or PRUNED): what --resume counts towards --trials."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def _same_params(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, float) and isinstance(w, float):
            if not (v == w or (math.isnan(v) and math.isnan(w))):
                return False
        elif v != w:
            return False
    return True


def enqueue_prescription(study: optuna.Study, prescription: dict[str, Any]) -> bool:
    """Queue the prescription unless a trial has it already. An interrupted or abandoned
    prescription (FAIL) is queued again; one that failed on its own is not."""
    for t in study.get_trials(deepcopy=False):
        params = t.system_attrs.get("fixed_params", t.params)
        if not _same_params(params, prescription):
            continue
        if t.state != TrialState.FAIL:
            return False
        reason = str(t.user_attrs.get("reason", ""))
        if not (t.user_attrs.get("doctor:interrupted") or reason.startswith("abandoned")
                or "reason" not in t.user_attrs):
            return False
    study.enqueue_trial(prescription, user_attrs={"doctor:prescribed": True})
    return True


def tune(table: Table, split: Split, recipe: Recipe, diagnosis: Diagnosis, *,
         storage: str | None, study_name: str, trials: int = DEFAULT_TRIALS, timeout: float | None = None,
         resume: bool = False, join: bool = False, space: str = "guided", workers: int = 1,
         device: str = "cpu", callbacks: list[Callable] | None = None,
         robust_eps: float | None = None) -> TuneResult:
    """Run the remedy search and return the best recipe.

    Args:
        trials: trials to run in this call; with `resume`, the study's trials with a result
            (COMPLETE, PRUNED) count towards it, and the study stops once it has that many.
        space: "guided" (the diagnosis selects remedies; its prescription runs first) or
            "full" (every remedy family, nothing enqueued).
        workers: processes on this machine, all on the same study (needs a storage URL).
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
    if storage:
        failed = recover_stale_trials(study)
        if failed:
            log.warning("study '%s': trial(s) %s had been abandoned by workers that stopped; "
                        "marked failed, their parameters queued again",
                        study_name, ", ".join(map(str, failed)))
    prescription: dict[str, Any] = {}
    if space == "guided":
        prescription = search_spaces.prescription(diagnosis, remedies)
        enqueue_prescription(study, prescription)
        study.set_user_attr("doctor:prescription", json.dumps(prescription, default=str))
    study.set_user_attr("doctor:space", space)
    study.set_user_attr("doctor:remedies", [r.name for r in remedies])
    todo = trials - n_finished(study) if resume else trials
    if resume and todo <= 0:
        log.info("study '%s' has %d trial(s) with a result already; nothing to run for --trials %d",
                 study_name, n_finished(study), trials)
    objective = Objective(table, split, recipe, diagnosis, remedies, device, robust_eps)
    if todo > 0:
        if workers > 1 and not storage:
            log.warning("--workers %d needs a storage URL; running in this process", workers)
        if workers > 1 and storage:
            from doctor.workers import run_workers

            try:
                run_workers(storage, study_name, objective, todo, workers, timeout,
                            seed=recipe.seed, epochs=recipe.epochs,
                            stop_at=trials if resume else None, verbose=bool(callbacks))
            finally:
                # A worker that was killed left its trial RUNNING: fail it and queue it again
                # now (its process is gone), so the study and the report show no zombie.
                try:
                    failed = recover_stale_trials(study)
                except Exception as e:  # noqa: BLE001 - never hide the workers' own outcome
                    log.debug("could not check for abandoned trials: %s", mask_text(str(e)))
                    failed = []
                if failed:
                    log.warning("trial(s) %s were left by workers that stopped; marked failed "
                                "and queued again (run with --resume to finish them)",
                                ", ".join(map(str, failed)))
        else:
            cbs = list(callbacks or [])
            if resume:
                cbs.append(optuna.study.MaxTrialsCallback(trials, states=COUNTED))
            with one_line_trial_failures(), deferred_interrupt():
                study.optimize(objective, n_trials=todo, timeout=timeout, catch=(Exception,),
                               callbacks=cbs + [_check_interrupt], gc_after_trial=False)
    out = result(study, storage, recipe, diagnosis, remedies, prescription)
    out.diagnosis = diagnosis
    return out


def result(study: optuna.Study, storage: str | None, recipe: Recipe, diagnosis: Diagnosis,
           remedies: list, prescription: dict) -> TuneResult:
    from search_spaces import build_recipe

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if t.value is not None and math.isfinite(t.value)]
    if not done:
        return TuneResult(study, mask(storage or "in-memory"), {}, recipe, None, None, prescription,
                          [r.name for r in remedies])
    best = max(done, key=lambda t: t.value)
    fixed = optuna.trial.FixedTrial(best.params)
    best_recipe = build_recipe(fixed, recipe, diagnosis, remedies)
    return TuneResult(study, mask(storage or "in-memory"), dict(best.params), best_recipe, best.number,
                      float(best.value), prescription, [r.name for r in remedies])
