"""The optimiser and its learning rate: offered in every guided search (`always`).

The learning rate is searched on a log range around the user's (÷100 … ×100, at most 1.0
unless the user's is larger, always reaching 1e-4 … 0.1); with no symptom to treat, the prescription is the user's own
optimiser and learning rate.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.recipe import OPTIMIZERS
from doctor.remedy import Remedy
from search_spaces._common import found
from search_spaces._common import prescribe_changes
from search_spaces._common import settle

LR_SPAN = 100.0
MAX_LR = 1.0
MAX_MOMENTUM = 0.99
#: Symptoms of a step that is too large: the learning rate is divided by 10 (AUTOTRAINER,
#: DeepDiagnosis). They win over the ones below: stability first.
LOWER_LR = ("exploding_gradient", "loss_divergence", "dying_relu", "loss_oscillation")
#: Symptoms of a step that is too small: the learning rate is multiplied by 10, up to
#: `MAX_RAISED_LR` (AUTOTRAINER's slow-convergence repair).
RAISE_LR = ("slow_convergence", "underfitting")
MAX_RAISED_LR = {"sgd": 0.3, "adam": 0.03, "adamw": 0.03, "rmsprop": 0.01}
ADAM_LR = 1e-3  # Adam's default, used when slow convergence moves plain SGD to Adam


#: Learning rates known to train small networks stably with each optimiser (the torch
#: defaults for the adaptive ones, the customary 0.01 for SGD). The search range always
#: reaches this band, however far off the user's learning rate is.
SAFE_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}
SANE_BAND = (1e-4, 0.1)


def lr_range(lr: float) -> tuple[float, float]:
    """The user's learning rate ÷100 … ×100, widened to always include 1e-4 … 0.1."""
    return min(lr / LR_SPAN, SANE_BAND[0]), max(lr, min(lr * LR_SPAN, MAX_LR), SANE_BAND[1])


class Optimizer(Remedy):
    name = "optimizer"
    stage = "optimisation"
    always = True
    treats = ("exploding_gradient", "loss_divergence", "dying_relu", "loss_oscillation",
              "slow_convergence", "underfitting")

    def apply(self, trial, recipe, diagnosis):
        opt = trial.suggest_categorical("optimizer", list(OPTIMIZERS))
        low, high = lr_range(recipe.lr)
        lr = trial.suggest_float("lr", low, high, log=True)
        if opt == "sgd":  # plain SGD is searched with momentum (0 is in the range)
            momentum = trial.suggest_float("momentum", 0.0, max(MAX_MOMENTUM, recipe.momentum))
        elif opt == recipe.optimizer:
            momentum = recipe.momentum  # e.g. the user's RMSprop momentum
        else:
            momentum = 0.0
        return replace(recipe, optimizer=opt, lr=lr, momentum=momentum)

    def keep(self, recipe) -> dict[str, Any]:
        params: dict[str, Any] = {"optimizer": recipe.optimizer, "lr": recipe.lr}
        if recipe.optimizer == "sgd":
            params["momentum"] = recipe.momentum
        return params

    def prescribe(self, diagnosis):
        recipe = diagnosis.recipe
        seen = found(diagnosis, self.treats)
        opt, lr = recipe.optimizer, recipe.lr
        changes: dict[str, Any] = {}
        if seen & set(LOWER_LR):
            # a tenth (AUTOTRAINER), and no more than a learning rate known to be stable:
            # a tenth of a far too large rate (say 1000) still diverges
            lr = min(lr * 0.1, SAFE_LR[opt])
        elif "slow_convergence" in seen and opt == "sgd":
            opt, lr = "adam", ADAM_LR  # AUTOTRAINER: change the optimiser first
            changes["optimizer"] = opt
        elif seen & set(RAISE_LR):
            lr = max(lr, min(lr * 10, MAX_RAISED_LR[opt]))
        low, high = lr_range(recipe.lr)
        if lr != recipe.lr:
            changes["lr"] = float(min(high, max(low, lr)))
        return prescribe_changes(self, diagnosis, changes)

    def compete(self, diagnosis):
        """Plain SGD with a step too large (`LOWER_LR`): Adam at its default rate beside the
        smaller step. AUTOTRAINER's repair of an oscillating, unstable run tries Adam at its
        defaults first and a smaller learning rate second; the prescription keeps the user's
        optimiser (the smaller change), so Adam competes with it as the second trial."""
        recipe = diagnosis.recipe
        if recipe.optimizer != "sgd" or not found(diagnosis, LOWER_LR):
            return []
        return [settle(self, {**self.keep(recipe), "optimizer": "adam", "lr": ADAM_LR},
                       recipe, diagnosis)]
