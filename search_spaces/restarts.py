"""Restarts from several seeds: a run stuck in a poor start (dead units, a slow plateau) is
often a matter of its initial weights.

`restarts` = k trains k seeds (the recipe's seed, then the next ones) for a short warm-up in
the one training loop (`doctor.trainer.Trainer`), keeps the best on validation and continues
it for the rest of the budget; k = 1 is the recipe as given.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

CHOICES = (1, 3, 5)


class Restarts(Remedy):
    name = "restarts"
    stage = "optimisation"
    treats = ("underfitting", "slow_convergence", "dying_relu")

    def apply(self, trial, recipe, diagnosis):
        k = trial.suggest_categorical("restarts", with_value(CHOICES, int(recipe.restarts)))
        return replace(recipe, restarts=int(k))

    def keep(self, recipe) -> dict[str, Any]:
        return {"restarts": int(recipe.restarts)}

    def prescribe(self, diagnosis):
        # searched, not a first choice: the learning rate, activation and initialisation
        # repairs come first and cost nothing; restarts add (k - 1) warm-ups of training
        return prescribe_changes(self, diagnosis, {})
