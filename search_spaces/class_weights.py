"""Class weights: weigh each class's loss by the inverse of its training frequency.

The first-choice repair for imbalance, except for a class with fewer than
`_common.RARE_CLASS_ROWS` rows: there the prescription is logit-adjusted cross-entropy
(losses.py, which says why and what was measured), and class weights are off in it, since
both together would correct the class prior twice. They stay in the search either way.

Below `class_imbalance`'s 1:5 they are not prescribed (no symptom asks for them), but every
classification is scored by balanced accuracy, which an unweighted loss does not aim at when
the classes differ in size. So where the largest training class has at least
`COMPETE_RATIO` times the rows of the smallest, the prescription with class weights on
competes with it as an enqueued trial (`compete`). Part 2b of the repair benchmark showed the
gap (session 17): on fair (1:2.1) and flchain (1:2.6) every full-space winner weighted its
classes, while the prescription did not.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import rare_class


#: Offer the weighted trial from this ratio of the largest to the smallest training class.
#: Below it the weights n / (k · count) lie within about ±20 % of 1 (for two classes at 1.5:1,
#: 0.83 and 1.25), and the weighted trial would be a near-copy of the prescription.
COMPETE_RATIO = 1.5


def class_ratio(diagnosis) -> float:
    """The largest training class's rows over the smallest's (1.0 when unknown)."""
    profile = getattr(diagnosis, "profile", None)
    if profile is None or diagnosis.task != "classification":
        return 1.0
    counts = profile.table.y.iloc[profile.split.train].value_counts()
    return float(counts.max() / counts.min()) if len(counts) >= 2 and counts.min() > 0 else 1.0


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

    def compete(self, diagnosis):
        """The prescription with class weights on, where classes differ in size but no
        imbalance was found (module docstring)."""
        if (found(diagnosis, self.treats) or diagnosis.recipe.class_weight
                or class_ratio(diagnosis) < COMPETE_RATIO):
            return []
        return [{"class_weight": True}]

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)
