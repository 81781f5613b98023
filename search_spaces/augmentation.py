"""Data augmentation on the scaled features: Gaussian input noise and mixup."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes

NOISE_RANGE = (0.01, 0.3)  # standard deviation, in training standard deviations
MIXUP_RANGE = (0.1, 1.0)  # Beta(alpha, alpha) mixing


def _range(bounds: tuple[float, float], given: float) -> tuple[float, float]:
    if given <= 0:
        return bounds
    return min(bounds[0], given), max(bounds[1], given)


class Augmentation(Remedy):
    name = "augmentation"
    stage = "regularisation"
    treats = ("overfitting", "limited_data", "adversarial_vulnerability")

    def apply(self, trial, recipe, diagnosis):
        noise = mixup = 0.0
        if trial.suggest_categorical("input_noise_on", [False, True]):
            noise = trial.suggest_float("input_noise", *_range(NOISE_RANGE, recipe.input_noise), log=True)
        if trial.suggest_categorical("mixup_on", [False, True]):
            mixup = trial.suggest_float("mixup", *_range(MIXUP_RANGE, recipe.mixup), log=True)
        return replace(recipe, input_noise=noise, mixup=mixup)

    def keep(self, recipe) -> dict[str, Any]:
        params: dict[str, Any] = {"input_noise_on": recipe.input_noise > 0, "mixup_on": recipe.mixup > 0}
        if recipe.input_noise > 0:
            params["input_noise"] = recipe.input_noise
        if recipe.mixup > 0:
            params["mixup"] = recipe.mixup
        return params

    def prescribe(self, diagnosis):
        # searched, not a first choice: weight decay, dropout and early stopping come first
        # (AUTOTRAINER tries GaussianNoise(0.1) last), adversarial training for robustness
        return prescribe_changes(self, diagnosis, {})
