"""Train longer: the recipe's epochs are the user's budget; this raises them at most 3×."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes

FACTORS = (1.0, 1.5, 2.0, 3.0)
MAX_FACTOR = 3.0


class Epochs(Remedy):
    name = "epochs"
    stage = "optimisation"
    treats = ("underfitting", "slow_convergence")

    def apply(self, trial, recipe, diagnosis):
        factor = trial.suggest_categorical("epochs_factor", list(FACTORS))
        given = diagnosis.recipe.epochs if diagnosis is not None else recipe.epochs
        epochs = min(int(round(recipe.epochs * factor)), int(MAX_FACTOR * given))
        return replace(recipe, epochs=max(1, epochs))

    def keep(self, recipe) -> dict[str, Any]:
        return {"epochs_factor": 1.0}

    def prescribe(self, diagnosis):
        # a model that is still improving when the budget ends needs more of it
        return prescribe_changes(self, diagnosis, {"epochs_factor": 2.0})
