"""Early stopping on the validation loss, restoring the best epoch's weights.

The validation loss is the loss the model trains on, class weights included
(`doctor.trainer.Trainer.evaluate`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes

PATIENCE = (3, 30)


def patience_for(epochs: int) -> int:
    """AUTOTRAINER's patience max(3, E/15), at least 5 here: small validation sets are noisy."""
    return int(min(PATIENCE[1], max(5, round(epochs / 15))))


class EarlyStopping(Remedy):
    name = "early_stopping"
    stage = "regularisation"
    treats = ("overfitting", "limited_data")

    def apply(self, trial, recipe, diagnosis):
        if not trial.suggest_categorical("early_stopping_on", [False, True]):
            return replace(recipe, early_stopping=None)
        low = min(PATIENCE[0], recipe.early_stopping or PATIENCE[0])
        high = max(PATIENCE[1], recipe.early_stopping or 0)
        return replace(recipe, early_stopping=trial.suggest_int("early_stopping", low, high))

    def keep(self, recipe) -> dict[str, Any]:
        if not recipe.early_stopping:
            return {"early_stopping_on": False}
        return {"early_stopping_on": True, "early_stopping": int(recipe.early_stopping)}

    def prescribe(self, diagnosis):
        patience = diagnosis.recipe.early_stopping or patience_for(diagnosis.recipe.epochs)
        return prescribe_changes(self, diagnosis,
                                 {"early_stopping_on": True, "early_stopping": int(patience)})
