"""Dimensionality reduction for wide tables: k inputs, k relative to the number of training
rows (`doctor.preprocess.Preprocessor.select`).

`select_rows_per_feature` = r keeps k = training rows / r inputs: at 5 the network sees the
5 rows per input that the high_dimensionality check asks for; 10 and 20 cut harder, 2 is a
mild cut. Three ways, all fitted on the training rows only: selection keeps original features
(scikit-learn `SelectKBest` with mutual information, or an L1 model's largest coefficients), so
the bundle stores the kept indices and the explanations stay per column; PCA projects onto the
first k principal components (for many correlated columns, where no few columns carry the
signal alone), and the explanations are per component. The prescription is selection (below);
PCA is searched.

Not for image input: its columns are pixels of a fixed shape (`applicable`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.preprocess import SELECTORS
from doctor.remedy import Remedy
from search_spaces._common import changes_columns_ok
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

ROWS_PER_FEATURE = (2.0, 5.0, 10.0, 20.0)
#: The high_dimensionality check's threshold (checks/data.py): k = rows / 5 cures the finding.
PRESCRIBED_ROWS_PER_FEATURE = 5.0


class FeatureSelection(Remedy):
    name = "feature_selection"
    stage = "data"
    treats = ("high_dimensionality",)

    def apply(self, trial, recipe, diagnosis):
        how = trial.suggest_categorical("select", with_value((None,) + SELECTORS, recipe.select))
        if how is None:
            return replace(recipe, select=None)
        r = trial.suggest_categorical("select_rows_per_feature",
                                      with_value(ROWS_PER_FEATURE, float(recipe.select_rows_per_feature)))
        return replace(recipe, select=how, select_rows_per_feature=float(r))

    def keep(self, recipe) -> dict[str, Any]:
        return {"select": recipe.select,
                "select_rows_per_feature": float(recipe.select_rows_per_feature)}

    def prescribe(self, diagnosis):
        # the L1 model first: on the few rows that make a table "wide", mutual information's
        # nearest-neighbour estimates are noisy (400 columns, 90 training rows, 3 informative:
        # mutual information kept 1-2 of the 3, L1 all 3, over 3 seeds); mutual information,
        # which also sees non-linear dependence, is searched
        return prescribe_changes(self, diagnosis, {"select": "l1",
                                                   "select_rows_per_feature": PRESCRIBED_ROWS_PER_FEATURE})

    def applicable(self, recipe, diagnosis):
        return changes_columns_ok(diagnosis)
