"""The mini-batch size (the user's is always one of the choices)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes

SIZES = (16, 32, 64, 128, 256, 512)


def choices(recipe) -> list[int]:
    return sorted(set(SIZES) | {int(recipe.batch_size)})


class BatchSize(Remedy):
    name = "batch_size"
    stage = "optimisation"
    treats = ("loss_oscillation", "slow_convergence")

    def apply(self, trial, recipe, diagnosis):
        return replace(recipe, batch_size=trial.suggest_categorical("batch_size", choices(recipe)))

    def keep(self, recipe) -> dict[str, Any]:
        return {"batch_size": int(recipe.batch_size)}

    def prescribe(self, diagnosis):
        # searched, not a first choice: a larger batch is AUTOTRAINER's fourth repair for
        # oscillation (after the learning rate and a plateau schedule); keep the user's size
        return prescribe_changes(self, diagnosis, {})
