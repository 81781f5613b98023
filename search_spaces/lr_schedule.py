"""A learning-rate schedule (see `doctor.trainer.make_schedule`)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

#: None keeps a constant learning rate, as given.
CHOICES = (None, "step", "cosine", "onecycle", "plateau", "warmup")


class LRSchedule(Remedy):
    name = "lr_schedule"
    stage = "optimisation"
    treats = ("loss_oscillation", "slow_convergence", "loss_divergence", "underfitting")

    def apply(self, trial, recipe, diagnosis):
        schedule = trial.suggest_categorical("schedule", list(CHOICES))
        return replace(recipe, schedule=schedule)

    def keep(self, recipe) -> dict[str, Any]:
        return {"schedule": recipe.schedule if recipe.schedule in CHOICES else None}

    def prescribe(self, diagnosis):
        # AUTOTRAINER's oscillation list: ReduceLROnPlateau(factor 0.2, patience 5), which is
        # what the trainer's "plateau" is
        seen = found(diagnosis, ("loss_oscillation",))
        return prescribe_changes(self, diagnosis, {"schedule": "plateau"} if seen else {})
