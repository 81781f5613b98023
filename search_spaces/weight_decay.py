"""Weight decay (L2 for SGD/Adam/RMSprop, decoupled for AdamW): off, or on a log range."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

WD_RANGE = (1e-6, 1e-1)
#: Overfitting: a moderate decay; a data profile of few rows per parameter: a strong one.
OVERFITTING_WD = 1e-3
SMALL_DATA_WD = 1e-2


def wd_range(recipe) -> tuple[float, float]:
    wd = recipe.weight_decay
    return (min(WD_RANGE[0], wd) if wd > 0 else WD_RANGE[0]), max(WD_RANGE[1], wd)


class WeightDecay(Remedy):
    name = "weight_decay"
    stage = "regularisation"
    treats = ("overfitting", "high_dimensionality", "limited_data", "adversarial_vulnerability")

    def apply(self, trial, recipe, diagnosis):
        if not trial.suggest_categorical("weight_decay_on", [False, True]):
            return replace(recipe, weight_decay=0.0)
        low, high = wd_range(recipe)
        return replace(recipe, weight_decay=trial.suggest_float("weight_decay", low, high, log=True))

    def keep(self, recipe) -> dict[str, Any]:
        if recipe.weight_decay <= 0:
            return {"weight_decay_on": False}
        return {"weight_decay_on": True, "weight_decay": recipe.weight_decay}

    def prescribe(self, diagnosis):
        seen = found(diagnosis, self.treats)
        target = SMALL_DATA_WD if seen & {"high_dimensionality", "limited_data"} else \
            OVERFITTING_WD if "overfitting" in seen else None
        changes: dict[str, Any] = {}
        if target is not None:
            given = diagnosis.recipe.weight_decay
            wd = target if given < target else min(given * 10, wd_range(diagnosis.recipe)[1])
            changes = {"weight_decay_on": True, "weight_decay": wd}
        return prescribe_changes(self, diagnosis, changes)
