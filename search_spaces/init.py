"""Re-initialise every linear/convolution layer (module surgery, works on a user's model too)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import prescribe_changes
from search_spaces.activation import first_choice

#: None keeps PyTorch's (or the user's) initialisation.
CHOICES = (None, "xavier", "kaiming", "orthogonal", "lecun")


class Init(Remedy):
    name = "init"
    stage = "architecture"
    treats = ("vanishing_gradient", "exploding_gradient", "dying_relu", "saturated_activations",
              "slow_convergence")

    def apply(self, trial, recipe, diagnosis):
        scheme = trial.suggest_categorical("init", list(CHOICES))
        return replace(recipe, init=scheme)

    def keep(self, recipe) -> dict[str, Any]:
        return {"init": recipe.init if recipe.init in CHOICES else None}

    def prescribe(self, diagnosis):
        # the init that matches the activation activation.py prescribes: He for the ReLU
        # family, LeCun for SELU (its self-normalisation assumes it)
        act = first_choice(diagnosis)
        changes = {} if act is None else {"init": "lecun" if act == "selu" else "kaiming"}
        return prescribe_changes(self, diagnosis, changes)
