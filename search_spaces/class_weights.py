"""Class weights: weigh each class's loss by the inverse of its training frequency."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes


class ClassWeights(Remedy):
    name = "class_weights"
    stage = "data"
    treats = ("class_imbalance",)

    def apply(self, trial, recipe, diagnosis):
        on = trial.suggest_categorical("class_weight", [False, True])
        return replace(recipe, class_weight=bool(on))

    def keep(self, recipe) -> dict[str, Any]:
        return {"class_weight": bool(recipe.class_weight)}

    def prescribe(self, diagnosis):
        # the first-choice repair for imbalance: cheap, keeps every row, no synthetic data
        return prescribe_changes(self, diagnosis, {"class_weight": True})

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)
