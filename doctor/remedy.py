"""Remedies treat: one family of treatment per file in `search_spaces/`.

A remedy's `apply(trial, recipe, diagnosis)` calls `trial.suggest_*` and returns a changed
`Recipe`. The same method serves three uses (Optuna's define-by-run): the search passes a
live `Trial`; rebuilding the best recipe passes `optuna.trial.FixedTrial(best_params)`;
`prescribe(diagnosis)` gives the parameter values to enqueue as the first trial.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import optuna

    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe


class Remedy(abc.ABC):
    """Base of every remedy family.

    Attributes:
        name: short id used in reports and as the prefix of its Optuna parameters.
        treats: the symptom ids this family treats.
        always: offered in every guided search (e.g. the learning rate), not only when one
            of `treats` was found.
    """

    name: str = ""
    treats: tuple[str, ...] = ()
    always: bool = False

    @abc.abstractmethod
    def apply(self, trial: optuna.trial.BaseTrial, recipe: Recipe, diagnosis: Diagnosis | None) -> Recipe:
        """Suggest this family's parameters on `trial` and return the changed recipe."""

    def prescribe(self, diagnosis: Diagnosis) -> dict[str, Any]:
        """Parameter values to try first for this diagnosis; {} when there is nothing to say."""
        return {}

    def applicable(self, recipe: Recipe, diagnosis: Diagnosis | None) -> bool:
        """False when this family cannot apply to the problem (e.g. resampling a regression)."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, treats={self.treats})"
