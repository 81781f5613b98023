"""Swap every activation module of the network (module surgery, works on a user's model too).

A network that calls its activations as functions cannot be edited; building it then raises
`doctor.surgery.SurgeryError` and the search records this remedy as not applicable.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.models import MLPSpec
from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes

#: None keeps the network's own activations.
CHOICES = (None, "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "tanh")


class Activation(Remedy):
    name = "activation"
    stage = "architecture"
    treats = ("vanishing_gradient", "exploding_gradient", "dying_relu", "saturated_activations")

    def apply(self, trial, recipe, diagnosis):
        act = trial.suggest_categorical("activation", list(CHOICES))
        return replace(recipe, activation=act)

    def keep(self, recipe) -> dict[str, Any]:
        return {"activation": recipe.activation if recipe.activation in CHOICES else None}

    def prescribe(self, diagnosis):
        act = first_choice(diagnosis)
        return prescribe_changes(self, diagnosis, {} if act is None else {"activation": act})


def current(recipe) -> str | None:
    """The activation the recipe trains with, when known (None for a user's own network)."""
    if recipe.activation:
        return recipe.activation
    return recipe.model.activation if isinstance(recipe.model, MLPSpec) else None


def first_choice(diagnosis) -> str | None:
    """The activation to try first (AUTOTRAINER's repairs), or None to keep the network's.

    - dying ReLU → LeakyReLU: negative inputs keep a gradient;
    - vanishing gradient or saturated sigmoid/tanh → ReLU (with He init, init.py); when the
      network already uses ReLU, SELU (with LeCun init), AUTOTRAINER's first choice.
    """
    seen = found(diagnosis, ("vanishing_gradient", "dying_relu", "saturated_activations"))
    if "dying_relu" in seen:
        return "leaky_relu"
    if seen:
        return "selu" if current(diagnosis.recipe) == "relu" else "relu"
    return None
