"""The classification loss: cross-entropy, focal, label smoothing, generalised CE or
logit-adjusted CE.

Regression always trains on the mean squared error, so this family applies to
classification only.

Logit adjustment (Menon et al., ICLR 2021) trains on the logits plus the log of the training
class frequencies and predicts on the plain logits: the rare class gets a wider margin, and
the argmax becomes the rule that suits balanced accuracy. It is prescribed for a class with
fewer than `_common.RARE_CLASS_ROWS` rows, together with no early stopping
(early_stopping.py) and weight decay 0.01 (weight_decay.py), instead of class weights: a
network that separates a dozen rare rows soon reaches near-zero loss on them, and then a
class weight barely moves the boundary (Byrd & Lipton, ICML 2019), while the adjusted margin
stays. Measured on eight rare-class tables (20 draws each, test balanced accuracy,
`python benchmarks/prescriptions.py --part rare`), against class weights + weight decay:
mean 0.900 against 0.864, ahead by 0.011-0.111 on six and within 0.005 on two (digits with 15
rare rows, iris). With early stopping kept, logit adjustment was no better (0.932 / 0.668 /
0.793 against 0.899 / 0.675 / 0.888 on cancer, the 3-class synthetic table and iris). Through
the cure check's rule (`--part rare-check`: the prescription is kept when its mean validation
score over the check's three validation folds is not below the recipe as given's), what the
rule kept scored 0.889 against 0.860 with the old prescription: higher on six of the eight
tables, lower on wine and iris (by 0.015 and 0.004). For a larger minority class, class
weights stay the prescription and this loss is searched.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import rare_class
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
        if rare_class(diagnosis):
            # the decision rule balanced accuracy needs, kept where class weights fade (above);
            # it takes precedence because it decides which class a row goes to
            changes["loss"] = "logit_adjusted"
        # other class imbalance: class weights come first (class_weights.py); focal is searched
        return prescribe_changes(self, diagnosis, changes)

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)


def _flagged_rows(diagnosis) -> bool:
    return bool(diagnosis.profile is not None and len(diagnosis.profile.noisy_rows))
