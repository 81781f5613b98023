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

#: The order in which `search_spaces.build_recipe` applies the families: the data first (what
#: the network sees), then the network (its shape, then module surgery), then how it is
#: optimised, then how it is regularised, and adversarial training last.
STAGES = ("data", "architecture", "optimisation", "regularisation", "robustness")

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
        stage: where `search_spaces.build_recipe` applies it, one of `STAGES`
            ("data", "architecture", "optimisation", "regularisation", "robustness"). The
            default is the last stage, so a family that forgets to say runs after the others
            rather than silently before them; `__init_subclass__` refuses any other value.
    """

    name: str = ""
    treats: tuple[str, ...] = ()
    always: bool = False
    stage: str = "robustness"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.stage not in STAGES:
            raise TypeError(f"{cls.__name__}.stage must be one of {STAGES}, got {cls.stage!r}")
        # A family (it has an `apply`) must say how to keep the recipe as given. Not an
        # abstractmethod: `search_spaces.all_remedies` skips abstract classes, which would
        # hide the omission instead of reporting it.
        concrete = not getattr(cls.apply, "__isabstractmethod__", False)
        if concrete and cls.keep is Remedy.keep:
            raise TypeError(f"{cls.__name__} must define keep(recipe): the parameter values "
                            "that leave the recipe as given")

    @abc.abstractmethod
    def apply(self, trial: optuna.trial.BaseTrial, recipe: Recipe, diagnosis: Diagnosis | None) -> Recipe:
        """Suggest this family's parameters on `trial` and return the changed recipe."""

    def keep(self, recipe: Recipe) -> dict[str, Any]:
        """The parameter values that leave `recipe` as given.

        A first trial is "the recipe as given plus the prescribed changes", never a random
        draw, so every family must say how to stand still; parameters the family would not
        ask for (a conditional one that is switched off) may be included, `search_spaces.
        _common.settle` drops them. Every family must define it (`__init_subclass__`).
        """
        raise NotImplementedError

    def prescribe(self, diagnosis: Diagnosis) -> dict[str, Any]:
        """Parameter values to try first for this diagnosis; {} when there is nothing to say."""
        return {}

    def compete(self, diagnosis: Diagnosis) -> list[dict[str, Any]]:
        """Other first choices for this family: where the literature names more than one
        treatment of what it prescribes, or where the objective itself calls for a second
        (class weights on unequal classes, scored by balanced accuracy). Each is a full set of
        this family's parameters (as `prescribe` gives), tried as its own enqueued trial, the
        prescription with this family's part swapped for it (`search_spaces.competing`). []
        when the prescription is the only one."""
        return []

    def applicable(self, recipe: Recipe, diagnosis: Diagnosis | None) -> bool:
        """False when this family cannot apply to the problem (e.g. resampling a regression)."""
        return True

    def treated(self, params: dict[str, Any], symptom_id: str) -> bool:
        """Whether a configuration (`params`) in which this family changed the recipe treats
        `symptom_id`. By default any change treats every symptom in `treats`; a family of
        independent switches (hygiene: duplicates, constant columns, leaks) names the one
        switch that treats each symptom, so the report does not call a symptom treated by a
        switch that stayed off."""
        return symptom_id in self.treats

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, treats={self.treats})"
