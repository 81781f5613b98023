"""Early stopping on the validation loss, restoring the best epoch's weights.

The validation loss is the loss the model trains on, class weights included
(`doctor.trainer.Trainer.evaluate`).

Prescribed for overfitting and limited data, and switched *off* for a class with fewer than
`_common.RARE_CLASS_ROWS` rows: the validation rows then hold two to four rows of that class,
so the validation loss that decides when to stop is almost all the common classes', and it
stops while the rare class's boundary is still being learned. Weight decay 0.01
(weight_decay.py) is the regulariser there instead. Measured with logit adjustment (losses.py)
on eight rare-class tables, 20 draws each (`python benchmarks/prescriptions.py --part rare`):
without early stopping it averaged 0.900, with it 0.858 (iris 0.888 against 0.793, the
2-class synthetic table 0.821 against 0.671); class weights gained less from training to the
end (0.864 to 0.874).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes
from search_spaces._common import rare_class

PATIENCE = (3, 30)


def patience_for(epochs: int) -> int:
    """AUTOTRAINER's patience max(3, E/15), at least 5 here: small validation sets are noisy."""
    return int(min(PATIENCE[1], max(5, round(epochs / 15))))


class EarlyStopping(Remedy):
    name = "early_stopping"
    stage = "regularisation"
    treats = ("overfitting", "limited_data", "class_imbalance")

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
        if rare_class(diagnosis):  # see the module docstring
            return prescribe_changes(self, diagnosis, {"early_stopping_on": False})
        if not found(diagnosis, ("overfitting", "limited_data")):
            # other class imbalance: stopping is not what treats it, so it stays as given
            return prescribe_changes(self, diagnosis, {})
        patience = diagnosis.recipe.early_stopping or patience_for(diagnosis.recipe.epochs)
        return prescribe_changes(self, diagnosis,
                                 {"early_stopping_on": True, "early_stopping": int(patience)})

    def treated(self, params, symptom_id):
        if symptom_id == "class_imbalance":  # only training to the end treats a rare class
            return params.get("early_stopping_on") is False
        return symptom_id in self.treats
