"""Clip the global gradient norm before each optimiser step."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

CLIP_RANGE = (0.1, 10.0)  # log range of the maximum gradient norm
PRESCRIBED = 1.0


class GradClipping(Remedy):
    name = "grad_clipping"
    stage = "optimisation"
    treats = ("exploding_gradient", "loss_divergence")

    def apply(self, trial, recipe, diagnosis):
        if not trial.suggest_categorical("grad_clip_on", [False, True]):
            return replace(recipe, grad_clip=None)
        low, high = CLIP_RANGE[0], max(CLIP_RANGE[1], recipe.grad_clip or 0.0)
        low = min(low, recipe.grad_clip or low)
        return replace(recipe, grad_clip=trial.suggest_float("grad_clip", low, high, log=True))

    def keep(self, recipe) -> dict[str, Any]:
        if not recipe.grad_clip:
            return {"grad_clip_on": False}
        return {"grad_clip_on": True, "grad_clip": recipe.grad_clip}

    def prescribe(self, diagnosis):
        seen = found(diagnosis, self.treats)
        changes = {"grad_clip_on": True, "grad_clip": PRESCRIBED} if seen else {}
        if seen and diagnosis.recipe.grad_clip:  # already clipped: clip harder
            changes["grad_clip"] = max(CLIP_RANGE[0], min(PRESCRIBED, diagnosis.recipe.grad_clip / 10))
        return prescribe_changes(self, diagnosis, changes)
