"""Insert batch or layer normalisation after each hidden linear/convolution layer (surgery)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

CHOICES = (None, "batch", "layer")


class Normalization(Remedy):
    name = "normalization"
    stage = "architecture"
    treats = ("vanishing_gradient", "exploding_gradient", "dying_relu", "saturated_activations")

    def apply(self, trial, recipe, diagnosis):
        norm = trial.suggest_categorical("norm", list(CHOICES))
        return replace(recipe, norm=norm)

    def keep(self, recipe) -> dict[str, Any]:
        return {"norm": recipe.norm if recipe.norm in CHOICES else None}

    def prescribe(self, diagnosis):
        # batch norm keeps pre-activations in the working range (AUTOTRAINER's third repair
        # for vanishing gradients; DeepDiagnosis's for saturation)
        seen = found(diagnosis, ("vanishing_gradient", "saturated_activations"))
        return prescribe_changes(self, diagnosis, {"norm": "batch"} if seen else {})
