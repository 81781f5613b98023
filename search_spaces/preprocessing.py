"""Preprocessing: the numeric scaler, the imputer and winsorising of extreme values.

The doctor already standardises and imputes by default; this family searches the robust
alternatives for heavy tails, outliers and missing values.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

SCALERS = ("standard", "robust", "minmax")
IMPUTERS = ("median", "mean")
CLIPS = (None, 0.01, 0.005)  # winsorise at this training quantile and its mirror


class Preprocessing(Remedy):
    name = "preprocessing"
    stage = "data"
    treats = ("missing_values", "unscaled_features", "outliers")

    def apply(self, trial, recipe, diagnosis):
        scaler = trial.suggest_categorical("scaler", with_value(SCALERS, recipe.scaler))
        imputer = trial.suggest_categorical("imputer", with_value(IMPUTERS, recipe.imputer))
        clip = trial.suggest_categorical("clip", with_value(CLIPS, recipe.clip))
        return replace(recipe, scaler=scaler, imputer=imputer, clip=clip)

    def keep(self, recipe) -> dict[str, Any]:
        return {"scaler": recipe.scaler, "imputer": recipe.imputer, "clip": recipe.clip}

    def prescribe(self, diagnosis):
        seen = found(diagnosis, self.treats)
        changes: dict[str, Any] = {}
        if seen & {"unscaled_features", "outliers"}:
            changes["scaler"] = "robust"  # median/IQR: heavy tails do not set the scale
        if "outliers" in seen:
            changes["clip"] = 0.01
        if "missing_values" in seen:
            changes["imputer"] = "median"
        return prescribe_changes(self, diagnosis, changes)
