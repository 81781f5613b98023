"""Weight decay (L2 for SGD/Adam/RMSprop, decoupled for AdamW): off, or on a log range.

Few rows per weight (high_dimensionality, limited_data, or a class with fewer than
`_common.RARE_CLASS_ROWS` rows) prescribe the strong decay; overfitting a moderate one. For
a rare class it was measured on two tables (12 and 8 rare rows, 4 splits each, class-weighted
64x64 MLP, test balanced accuracy): 1e-2 gave 0.696 and 0.980 against 0.692 and 0.938 without.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes
from search_spaces._common import rare_class

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
    treats = ("overfitting", "high_dimensionality", "limited_data", "adversarial_vulnerability",
              "class_imbalance")

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
        few_rows = seen & {"high_dimensionality", "limited_data"} or rare_class(diagnosis)
        target = SMALL_DATA_WD if few_rows else \
            OVERFITTING_WD if "overfitting" in seen else None
        changes: dict[str, Any] = {}
        if target is not None:
            given = diagnosis.recipe.weight_decay
            wd = target if given < target else min(given * 10, wd_range(diagnosis.recipe)[1])
            changes = {"weight_decay_on": True, "weight_decay": wd}
        return prescribe_changes(self, diagnosis, changes)
