"""Refit the chosen recipe on every row for the bundle that `doctor predict` uses.

The held-out numbers in the report come from the model trained on the training rows only;
once the recipe is chosen, the model users take away is refit on training, validation and
test rows together (AutoGluon's "refit_full"). Small tables gain the most: a class with a
dozen rows keeps all of them. Without validation rows to stop on, the refit trains for the
number of epochs the validated run used.

On tables of at most `ENSEMBLE_MAX_ROWS` training rows the model is a `SeedEnsemble`: the
chosen recipe trained from `ENSEMBLE_MEMBERS` seeds, its probabilities (or outputs) averaged.
Small tables are where one network's seed decides most: on diabetes (331 rows, the repair
benchmark's split) the same chosen recipe, refit from seeds 0-4, scored test R² 0.313, 0.363,
0.389, 0.311 and 0.263; the average of the first three scored 0.369. The held-out numbers of
the report are those of the same ensemble trained on the training rows, and the member
networks are trained on the same prepared rows (one preprocessing, one resampling), so the
ensemble is one bundle.
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

#: Networks in the shipped model (module docstring); the seeds are the recipe's seed + 1000 × i
#: so that members never share a seed with one another's restarts (restarts.py uses seed + k).
ENSEMBLE_MEMBERS = 3
SEED_STRIDE = 1000
#: Tables with more training rows than this ship one network. A cost choice: each extra
#: member costs two more trainings of the whole table. The seed spread was measured only on
#: small tables (diabetes, module docstring), not above this bound.
ENSEMBLE_MAX_ROWS = 20_000


def ensemble_size(n_train: int) -> int:
    """How many networks the shipped model averages for a table of `n_train` training rows."""
    return ENSEMBLE_MEMBERS if n_train <= ENSEMBLE_MAX_ROWS else 1


def add_members(recipe, first: Run, prepared: Prepared, members: int, *, evaluate: bool = True,
                on_epoch=None) -> tuple[Run, dict]:
    """`first` and `members - 1` more networks of `recipe` trained on `prepared` from other
    seeds, as one `SeedEnsemble` run (its trace is `first`'s). A member whose training
    diverges is left out. Returns (run, info); `first` unchanged when no member was added."""
    from doctor.models import SeedEnsemble

    nets, seeds = [first.model], [int(recipe.seed)]
    for i in range(1, members):
        r = replace(recipe, seed=int(recipe.seed) + SEED_STRIDE * i)
        run = Trainer(r, on_epoch=on_epoch, train_scores=False).fit(prepared)
        if run.trace.diverged is None:
            nets.append(run.model)
            seeds.append(r.seed)
    info = {"members": len(nets), "seeds": seeds}
    if len(nets) == 1:
        return first, info
    model = SeedEnsemble(nets, prepared.task).to(prepared.X_train.device)
    model.eval()
    val_loss, val_score = first.val_loss, first.val_score
    if evaluate and len(prepared.X_val):
        val_loss, val_score = Trainer(recipe).evaluate(model, prepared.X_val, prepared.y_val, prepared)
    return Run(model, first.trace, val_score, val_loss), info


def epochs_used(run: Run) -> int:
    """Epochs of the validated run that produced its weights (the restored epoch if any)."""
    trace = run.trace
    if "restored_epoch" in trace.info:
        return int(trace.info["restored_epoch"]) + 1
    return max(1, len(trace.epochs))


def refit_all_rows(case: Case, recipe, validated: Run, *, noisy: np.ndarray | None = None,
                   on_epoch=None, members: int = 1) -> tuple[Run, Prepared, dict]:
    """Train `recipe` on all rows for `epochs_used(validated)` epochs, without early stopping,
    from `members` seeds (`add_members`).

    Returns (run, prepared, info). Noisy-row positions index the training rows, which come
    first in the combined rows, so they stay valid.
    """
    sp = case.split
    everything = Split(np.concatenate([sp.train, sp.val, sp.test]), sp.val, sp.test)
    final = replace(recipe, epochs=epochs_used(validated), early_stopping=None)
    prepared = prepare(case.table, everything, final, device=case.device, noisy=noisy)
    run = Trainer(final, on_epoch=on_epoch).fit(prepared)
    info = {"rows": int(len(everything.train)), "epochs": final.epochs}
    if members > 1 and run.trace.diverged is None:
        run, more = add_members(final, run, prepared, members, evaluate=False, on_epoch=on_epoch)
        info.update(more)
    return run, prepared, info
