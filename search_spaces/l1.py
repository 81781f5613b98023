"""L1 penalty on the weights: λ·Σ|w| added to the training loss (`doctor.trainer.l1_norm`:
linear matrices and convolution kernels; biases and normalisation scales are left out).

Weight decay (L2, weight_decay.py) shrinks every weight in proportion to its size; L1 pulls
each weight toward zero by the same amount and sets many of them exactly to zero, so a
first-layer column of zeros drops an input altogether: a regulariser for overfitting and for
tables with many columns per row. Searched, never prescribed: weight decay is the first
choice for both symptoms, and nothing here has measured L1 beating it on them.

The range of λ: the doctor's 64-64 MLP on 20-60 inputs starts with Σ|w| of a few hundred, so
λ = 1e-6 adds a negligible penalty and λ = 1e-3 one of the order of the cross-entropy itself
(strong enough to zero most weights).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes

L1_RANGE = (1e-6, 1e-3)


class L1(Remedy):
    name = "l1"
    stage = "regularisation"
    treats = ("overfitting", "high_dimensionality")

    def apply(self, trial, recipe, diagnosis):
        if not trial.suggest_categorical("l1_on", [False, True]):
            return replace(recipe, l1=0.0)
        low = min(L1_RANGE[0], recipe.l1) if recipe.l1 > 0 else L1_RANGE[0]
        high = max(L1_RANGE[1], recipe.l1)
        return replace(recipe, l1=trial.suggest_float("l1", low, high, log=True))

    def keep(self, recipe) -> dict[str, Any]:
        if recipe.l1 <= 0:
            return {"l1_on": False}
        return {"l1_on": True, "l1": recipe.l1}

    def prescribe(self, diagnosis):
        return prescribe_changes(self, diagnosis, {})  # searched, not prescribed (docstring)
