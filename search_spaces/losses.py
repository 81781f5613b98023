"""The classification loss: cross-entropy, focal, label smoothing, generalised CE or
logit-adjusted CE.

Regression always trains on the mean squared error, so this family applies to
classification only.

Logit adjustment (Menon et al., ICLR 2021) trains on the logits plus the log of the training
class frequencies and predicts on the plain logits: the rare class gets a wider margin, and
the argmax becomes the rule that suits balanced accuracy. It is searched, not prescribed:
against class weights (both with weight decay 0.01; test balanced accuracy over 12 draws of
four rare-class tables: breast cancer with 18 malignant rows, wine with 8, digits with one
digit cut to 15 rows, a 3-class synthetic table with 12) it scored 0.950 / 0.970 / 0.962 /
0.660 against 0.910 / 0.965 / 0.958 / 0.687: ahead on three tables and behind on one
(`python benchmarks/prescriptions.py --part rare`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

LOSSES = ("default", "focal", "smoothing", "gce", "logit_adjusted")


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
