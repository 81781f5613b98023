"""Class weights: weigh each class's loss by the inverse of its training frequency.

The first-choice repair for imbalance, except for a class with fewer than
`_common.RARE_CLASS_ROWS` rows: there the prescription is logit-adjusted cross-entropy
(losses.py, which says why and what was measured), and class weights are off in it, since
both together would correct the class prior twice. They stay in the search either way.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import rare_class


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
        # the first-choice repair for imbalance: cheap, keeps every row, no synthetic data;
        # a rare class gets logit adjustment instead (module docstring)
        return prescribe_changes(self, diagnosis, {"class_weight": not rare_class(diagnosis)})

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)
