"""Rows flagged as likely mislabelled (`DataProfile.noisy_rows`): keep, drop or down-weight.

Applies only when the diagnosis found label noise and flagged the rows; `prepare` receives
those positions as `noisy=` and acts on the training rows only.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

CHOICES = (None, "drop", "downweight")


class LabelNoise(Remedy):
    name = "label_noise"
    stage = "data"
    treats = ("label_noise",)

    def apply(self, trial, recipe, diagnosis):
        how = trial.suggest_categorical("noisy_rows", with_value(CHOICES, recipe.noisy_rows))
        return replace(recipe, noisy_rows=how)

    def keep(self, recipe) -> dict[str, Any]:
        return {"noisy_rows": recipe.noisy_rows}

    def prescribe(self, diagnosis):
        # down-weighting keeps the rows (a flag can be wrong) but lets them count a quarter
        return prescribe_changes(self, diagnosis, {"noisy_rows": "downweight"})

    def applicable(self, recipe, diagnosis):
        # without flagged rows there is nothing to drop; losses.py prescribes a robust loss
        return bool(diagnosis is not None and diagnosis.has("label_noise")
                    and diagnosis.profile is not None and len(diagnosis.profile.noisy_rows))
