"""Adversarial training: a share of each batch replaced by FGSM or PGD perturbations.

Classification only. `adv_eps` is an L-infinity radius in standardised feature units (see
`doctor.robustness`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes

EPS_RANGE = (0.01, 0.5)
RATIO_RANGE = (0.25, 1.0)
#: The radius the robustness probe attacks at when the symptom does not say (PGD, 0.1 std).
DEFAULT_EPS = 0.1
DEFAULT_RATIO = 0.5  # half clean, half adversarial rows keeps clean accuracy


class Adversarial(Remedy):
    name = "adversarial"
    stage = "robustness"
    treats = ("adversarial_vulnerability",)

    def apply(self, trial, recipe, diagnosis):
        method = trial.suggest_categorical("adversarial", [None, "fgsm", "pgd"])
        if method is None:
            return replace(recipe, adversarial=None)
        eps = trial.suggest_float("adv_eps", *_range(EPS_RANGE, recipe.adv_eps), log=True)
        ratio = trial.suggest_float("adv_ratio", *_range(RATIO_RANGE, recipe.adv_ratio))
        return replace(recipe, adversarial=method, adv_eps=eps, adv_ratio=ratio)

    def keep(self, recipe) -> dict[str, Any]:
        if not recipe.adversarial or recipe.adv_eps <= 0:
            return {"adversarial": None}
        return {"adversarial": recipe.adversarial, "adv_eps": recipe.adv_eps,
                "adv_ratio": recipe.adv_ratio}

    def prescribe(self, diagnosis):
        symptom = diagnosis.get("adversarial_vulnerability")
        eps = DEFAULT_EPS
        if symptom is not None and isinstance(symptom.evidence.get("eps"), (int, float)):
            eps = float(symptom.evidence["eps"])  # train at the radius the probe attacked at
        eps = min(EPS_RANGE[1], max(EPS_RANGE[0], eps))
        return prescribe_changes(self, diagnosis, {"adversarial": "pgd", "adv_eps": eps,
                                                   "adv_ratio": DEFAULT_RATIO})

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)


def _range(bounds: tuple[float, float], given: float) -> tuple[float, float]:
    if given <= 0:
        return bounds
    return min(bounds[0], given), max(bounds[1], given)
