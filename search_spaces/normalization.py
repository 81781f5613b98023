"""Insert batch or layer normalisation after each hidden linear/convolution layer (surgery)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

CHOICES = (None, "batch", "layer")
#: Layer norm divides each row's hidden pre-activations by their own spread, so a row and the
#: same row scaled by c > 0 give nearly the same hidden layer (exactly, without biases): the
#: network loses the input's magnitude, which a regression target often grows with. Measured
#: (`benchmarks/prescriptions.py --part norm`), it scored below no normalisation on the test
#: rows of six of seven regression tables (by 0.003-0.056) and level on the seventh (+0.005),
#: while its validation score could still come out highest (diabetes): the search picked it
#: there and lost on the held-out rows. For classification it was level or better.
#: For regression it is offered only when the recipe as given already uses it.
REGRESSION_CHOICES = (None, "batch")


def given(recipe) -> str | None:
    """The recipe's normalisation, as one of `CHOICES`."""
    return recipe.norm if recipe.norm in CHOICES else None


def choices(recipe, diagnosis) -> list:
    base = CHOICES if is_classification(diagnosis) else REGRESSION_CHOICES
    return with_value(base, given(recipe))


class Normalization(Remedy):
    name = "normalization"
    stage = "architecture"
    treats = ("vanishing_gradient", "exploding_gradient", "dying_relu", "saturated_activations")

    def apply(self, trial, recipe, diagnosis):
        norm = trial.suggest_categorical("norm", choices(recipe, diagnosis))
        return replace(recipe, norm=norm)

    def keep(self, recipe) -> dict[str, Any]:
        return {"norm": given(recipe)}

    def prescribe(self, diagnosis):
        # batch norm keeps pre-activations in the working range (AUTOTRAINER's third repair
        # for vanishing gradients; DeepDiagnosis's for saturation)
        seen = found(diagnosis, ("vanishing_gradient", "saturated_activations"))
        return prescribe_changes(self, diagnosis, {"norm": "batch"} if seen else {})
