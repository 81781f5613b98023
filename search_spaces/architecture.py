"""The doctor's own MLP: width, depth and residual connections.

Applies only when the recipe's model is the doctor's `MLPSpec`. A user's model (`--model
FILE.py:FUNC` or a callable) is kept as written: only module surgery (activation, init,
normalisation, dropout) applies to it, never a different network.

Width and depth are relative to the given spec, so "as given" is always one point of the
space: `arch_width` multiplies every hidden width, `arch_depth` adds layers (repeating the
last width) or removes trailing ones.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.models import MLPSpec
from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

WIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
DEPTH_CHANGE = (-2, 2)
MIN_WIDTH, MAX_WIDTH = 4, 2048
MAX_DEPTH = 8


def resize(spec: MLPSpec, width: float, depth: int, residual: bool) -> MLPSpec:
    hidden = [int(min(MAX_WIDTH, max(MIN_WIDTH, round(h * width)))) for h in spec.hidden]
    n = min(MAX_DEPTH, max(1, len(hidden) + depth))
    hidden = hidden[:n] + [hidden[-1]] * (n - len(hidden))
    return MLPSpec(hidden=tuple(hidden), activation=spec.activation, residual=residual)


class Architecture(Remedy):
    name = "architecture"
    stage = "architecture"
    treats = ("underfitting", "overfitting", "high_dimensionality", "limited_data",
              "vanishing_gradient")

    def apply(self, trial, recipe, diagnosis):
        if not isinstance(recipe.model, MLPSpec):
            return recipe  # a user's model is kept (see the module docstring)
        width = trial.suggest_categorical("arch_width", list(WIDTH_FACTORS))
        depth = trial.suggest_int("arch_depth", DEPTH_CHANGE[0], DEPTH_CHANGE[1])
        residual = trial.suggest_categorical("arch_residual", [False, True])
        return replace(recipe, model=resize(recipe.model, width, depth, residual))

    def keep(self, recipe) -> dict[str, Any]:
        if not isinstance(recipe.model, MLPSpec):
            return {}
        return {"arch_width": 1.0, "arch_depth": 0, "arch_residual": bool(recipe.model.residual)}

    def prescribe(self, diagnosis):
        if not isinstance(diagnosis.recipe.model, MLPSpec):
            return {}
        seen = found(diagnosis, self.treats)
        changes: dict[str, Any] = {}
        if "underfitting" in seen:  # more capacity; a measured symptom outranks a data profile
            changes.update(arch_width=2.0, arch_depth=1)
        elif seen & {"high_dimensionality", "limited_data"}:
            changes.update(arch_width=0.5)  # fewer parameters per training row
        if "vanishing_gradient" in seen:
            changes.update(arch_residual=True)  # identity paths carry the gradient back
        # overfitting: regularisation comes first (weight_decay, dropout, early_stopping)
        return prescribe_changes(self, diagnosis, changes)

    def applicable(self, recipe, diagnosis):
        return isinstance(recipe.model, MLPSpec)
