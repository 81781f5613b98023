"""The doctor's own MLP: width, depth and residual connections.

Applies only when the recipe's model is the doctor's `MLPSpec`. A user's model (`--model
FILE.py:FUNC` or a callable) is kept as written: only module surgery (activation, init,
normalisation, dropout) applies to it, never a different network.

Width and depth are relative to the given spec, so "as given" is always one point of the
space: `arch_width` multiplies every hidden width, `arch_depth` adds layers (repeating the
last width) or removes trailing ones.

Small data (limited_data, or a class with fewer than `_common.RARE_CLASS_ROWS` rows) also
offers very small networks: width factors down to 1/16 (the doctor's 64 units become 4) and a
single hidden layer, close to the logistic regression that won on a dozen rare rows. They
are searched, not prescribed: measured on two rare-class tables (12 and 8 rare rows, 4 splits
each, class-weighted, test balanced accuracy), one hidden layer of 8 units averaged 0.669 and
0.902 against 0.692 and 0.938 for the 64x64 network, so the first trial keeps the shape and
takes the strong weight decay instead (weight_decay.py: 0.696 and 0.980).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.models import MLPSpec
from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes
from search_spaces._common import small_data

WIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Added for small data (module docstring): 64 → 8 and 4 units.
SMALL_WIDTH_FACTORS = (0.0625, 0.125)
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
              "vanishing_gradient", "class_imbalance")

    def apply(self, trial, recipe, diagnosis):
        if not isinstance(recipe.model, MLPSpec):
            return recipe  # a user's model is kept (see the module docstring)
        factors = (SMALL_WIDTH_FACTORS if small_data(diagnosis) else ()) + WIDTH_FACTORS
        width = trial.suggest_categorical("arch_width", list(factors))
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
        # overfitting: regularisation comes first (weight_decay, dropout, early_stopping);
        # class imbalance, even with a rare class: class weights (class_weights.py) and, for a
        # rare class, strong weight decay; the small networks are searched (module docstring)
        return prescribe_changes(self, diagnosis, changes)

    def applicable(self, recipe, diagnosis):
        return isinstance(recipe.model, MLPSpec)
