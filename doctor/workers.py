"""Several local worker processes on one study (`--workers N`).

The parent has already created the study (a schema race on a new SQLite file crashes
concurrent creators); each worker loads it by name and runs its share of the trials, so the
shares add up to exactly the requested count.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import warnings

log = logging.getLogger(__name__)


def _work(storage_url: str, study_name: str, objective, n_trials: int, timeout, threads: int) -> None:
    import optuna
    import torch

    from doctor.storage import open_storage

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,))


def run_workers(storage_url: str, study_name: str, objective, n_trials: int, workers: int,
                timeout: float | None) -> None:
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_work, args=(storage_url, study_name, objective, k, timeout, threads),
                         name=f"doctor-worker-{i}") for i, k in enumerate(shares) if k > 0]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        log.warning("worker(s) %s ended with an error; their finished trials are kept", ", ".join(failed))
