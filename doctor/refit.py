"""Refit the chosen recipe on every row for the bundle that `doctor predict` uses.

The held-out numbers in the report come from the model trained on the training rows only;
once the recipe is chosen, the model users take away is refit on training, validation and
test rows together (AutoGluon's "refit_full"). Small tables gain the most: a class with a
dozen rows keeps all of them. Without validation rows to stop on, the refit trains for the
number of epochs the validated run used.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from doctor.api import Case
from doctor.data import Split
from doctor.prepare import Prepared
from doctor.prepare import prepare
from doctor.trainer import Run
from doctor.trainer import Trainer

log = logging.getLogger(__name__)


def epochs_used(run: Run) -> int:
    """Epochs of the validated run that produced its weights (the restored epoch if any)."""
    trace = run.trace
    if "restored_epoch" in trace.info:
        return int(trace.info["restored_epoch"]) + 1
    return max(1, len(trace.epochs))


def refit_all_rows(case: Case, recipe, validated: Run, *, noisy: np.ndarray | None = None,
                   on_epoch=None) -> tuple[Run, Prepared, dict]:
    """Train `recipe` on all rows for `epochs_used(validated)` epochs, without early stopping.

    Returns (run, prepared, info). Noisy-row positions index the training rows, which come
    first in the combined rows, so they stay valid.
    """
    sp = case.split
    everything = Split(np.concatenate([sp.train, sp.val, sp.test]), sp.val, sp.test)
    final = replace(recipe, epochs=epochs_used(validated), early_stopping=None)
    prepared = prepare(case.table, everything, final, device=case.device, noisy=noisy)
    run = Trainer(final, on_epoch=on_epoch).fit(prepared)
    info = {"rows": int(len(everything.train)), "epochs": final.epochs}
    return run, prepared, info
