"""Dropout after each activation (module surgery, works on a user's model too)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

MAX_DROPOUT = 0.5
PRESCRIBED = 0.25  # AUTOTRAINER's overfitting repair: Dropout(0.25)


class Dropout(Remedy):
    name = "dropout"
    stage = "regularisation"
    treats = ("overfitting", "high_dimensionality", "limited_data")

    def apply(self, trial, recipe, diagnosis):
        p = trial.suggest_float("dropout", 0.0, max(MAX_DROPOUT, recipe.dropout))
        return replace(recipe, dropout=p)

    def keep(self, recipe) -> dict[str, Any]:
        return {"dropout": float(recipe.dropout)}

    def prescribe(self, diagnosis):
        seen = found(diagnosis, self.treats)
        p = max(PRESCRIBED, diagnosis.recipe.dropout)
        return prescribe_changes(self, diagnosis, {"dropout": p} if seen else {})
