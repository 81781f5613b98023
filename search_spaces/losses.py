"""The classification loss: cross-entropy, focal, label smoothing or generalised CE.

Regression always trains on the mean squared error, so this family applies to
classification only.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

LOSSES = ("default", "focal", "smoothing", "gce")


class Losses(Remedy):
    name = "losses"
    stage = "optimisation"
    treats = ("class_imbalance", "label_noise", "poor_calibration")

    def apply(self, trial, recipe, diagnosis):
        loss = trial.suggest_categorical("loss", with_value(LOSSES, recipe.loss))
        return replace(recipe, loss=loss)

    def keep(self, recipe) -> dict[str, Any]:
        return {"loss": recipe.loss}

    def prescribe(self, diagnosis):
        seen = found(diagnosis, self.treats)
        changes = {}
        if "poor_calibration" in seen:
            changes["loss"] = "smoothing"  # softer targets curb over-confidence (Müller et al. 2019)
        if "label_noise" in seen and not _flagged_rows(diagnosis):
            # no rows to drop or down-weight (label_noise.py): a noise-robust loss instead
            changes["loss"] = "gce"
        # class_imbalance: class weights come first (class_weights.py); focal is searched
        return prescribe_changes(self, diagnosis, changes)

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)


def _flagged_rows(diagnosis) -> bool:
    return bool(diagnosis.profile is not None and len(diagnosis.profile.noisy_rows))
