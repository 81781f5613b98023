"""Preprocessing: the numeric scaler, the imputer and winsorising of extreme values.

The doctor already standardises and imputes by default; this family searches the robust
alternatives for heavy tails, outliers and missing values.

Columns on different scales alone (unscaled_features without outliers) are cured by any
scaler, so a recipe that already scales keeps its scaler in the prescription. Robust scaling
is prescribed for outliers only: on four tables with unscaled columns (wine, breast cancer,
diabetes and iris with every other column ×1e4; 8 splits each, the default recipe) the
standard scaler scored 0.985 / 0.977 / 0.426 / 0.950 on test rows against robust scaling's
0.988 / 0.968 / 0.427 / 0.950 (`python benchmarks/prescriptions.py --part scaler`).
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
        if "outliers" in seen:
            changes["scaler"] = "robust"  # median/IQR: heavy tails do not set the scale
            changes["clip"] = 0.01
        elif "unscaled_features" in seen and diagnosis.recipe.scaler == "none":
            changes["scaler"] = "standard"
        # unscaled_features alone, with a recipe that already scales: treated as given (module
        # docstring); the other scalers are searched
        if "missing_values" in seen:
            changes["imputer"] = "median"
        return prescribe_changes(self, diagnosis, changes)
