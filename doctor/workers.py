"""Several local worker processes on one study (`--workers N`).

The parent has already created the study (a schema race on a new SQLite file crashes
concurrent creators); each worker loads it by name and runs its share of the trials, so the
shares add up to exactly the requested count. Workers on SQLite take the database's write lock
at the start of each transaction (`storage._serialise_sqlite`), so a queued trial is run once.

Signals: the first SIGINT or SIGTERM a worker gets interrupts its running trial (Optuna marks
it FAIL with the reason "interrupted") and the worker exits with 130; later ones are ignored, so
a terminal's Ctrl-C (sent to every process of the group) and the parent's forwarded SIGINT do
not interrupt that clean-up. A worker killed outright (SIGKILL) leaves its trial RUNNING: the
heartbeat or the next `--resume` fails it and queues it again (see `doctor.search`).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time

from doctor.storage import mask_text

log = logging.getLogger(__name__)
#: Seconds the parent waits for interrupted workers to record their trials before killing them.
STOP_GRACE_S = 60


def _interrupt_once() -> None:
    def handler(signum, frame) -> None:  # noqa: ANN001
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _setup_logging(verbose: bool, index: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[worker {index}] %(message)s"))
    root = logging.getLogger("doctor")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _progress(study, trial) -> None:  # noqa: ANN001
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    log.info("trial %d %s value=%s %s", trial.number, trial.state.name.lower(), value,
             trial.user_attrs.get("reason", ""))


def _work(storage_url: str, study_name: str, objective, n_trials: int, timeout, threads: int,
          index: int = 0, seed: int = 0, epochs: int = 1, stop_at: int | None = None,
          verbose: bool = False) -> None:
    _interrupt_once()
    try:
        import optuna
        import torch
        from threadpoolctl import threadpool_limits

        from doctor.search import COUNTED
        from doctor.search import make_pruner
        from doctor.search import make_sampler
        from doctor.search import one_line_trial_failures
        from doctor.storage import open_storage

        _setup_logging(verbose, index)
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
        threadpool_limits(limits=threads)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url),
                                  sampler=make_sampler(seed, worker=index),
                                  pruner=make_pruner(epochs))
        callbacks = [_progress] if verbose else []
        if stop_at is not None:
            callbacks.append(optuna.study.MaxTrialsCallback(stop_at, states=COUNTED))
        with one_line_trial_failures():
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,),
                           callbacks=callbacks, gc_after_trial=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one line, the parent reports the worker failed
        if os.environ.get("DOCTOR_DEBUG"):
            raise
        first = mask_text(str(e).splitlines()[0]) if str(e) else ""
        print(f"doctor: worker {index}: {type(e).__name__}: {first}", file=sys.stderr)
        sys.exit(1)


def shares(n_trials: int, workers: int) -> list[int]:
    """Split `n_trials` into `workers` shares that add up to exactly `n_trials`."""
    return [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]


def run_workers(storage_url: str, study_name: str, objective, n_trials: int, workers: int,
                timeout: float | None, *, seed: int = 0, epochs: int = 1,
                stop_at: int | None = None, verbose: bool = False) -> None:
    """Run `n_trials` trials of `objective` in `workers` processes and wait for them.

    Args:
        stop_at: with --resume, every worker also stops once the study has this many trials
            with a result (workers on other machines count too).
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_work, name=f"doctor-worker-{i}",
                         args=(storage_url, study_name, objective, k, timeout, threads, i, seed,
                               epochs, stop_at, verbose))
             for i, k in enumerate(shares(n_trials, workers)) if k > 0]
    log.info("running %d trials in %d worker processes", n_trials, len(procs))
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        _stop(procs)
        raise
    codes = {p.name: p.exitcode for p in procs}
    if any(c == 130 for c in codes.values()):
        raise KeyboardInterrupt  # a worker was interrupted on its own (e.g. kill -INT)
    failed = [name for name, c in codes.items() if c not in (0, None)]
    if failed and len(failed) == len(procs):
        raise RuntimeError(f"every worker ended with an error ({', '.join(failed)}); see the "
                           "messages above")
    if failed:
        log.warning("worker(s) %s ended with an error; their finished trials are kept",
                    ", ".join(failed))


def _stop(procs: list) -> None:
    """Interrupt the workers (once each), give them time to record their trials, then kill."""
    for p in procs:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGINT)
            except OSError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        if p.pid is None:
            continue
        try:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            break
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
