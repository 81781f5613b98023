"""The remedy families: one file per family, each defining one `doctor.remedy.Remedy` subclass.

A new remedy is one new file here, nothing else: `all_remedies()` finds it by listing this
folder (modules whose name starts with `_` are helpers and are skipped).

Besides the `Remedy` interface, every family in this folder has:

- `stage`: where it runs in `build_recipe` (see `STAGES`);
- `keep(recipe) -> dict`: the parameter values that leave `recipe` as given, so that a first
  trial can be "the recipe as given plus the prescribed changes" and never a random draw.

Parameter names are unique across families and most equal the `Recipe` field they set, so
`study.best_params` reads as a recipe diff.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING
from typing import Any

from doctor.remedy import Remedy

if TYPE_CHECKING:
    import optuna

    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe

#: The order in which `build_recipe` applies the families: the data first (what the network
#: sees), then the network (its shape, then module surgery), then how it is optimised, then how
#: it is regularised, and adversarial training last. Within a stage, families run by name.
#: Each family writes only its own recipe fields, so the order fixes the order of the Optuna
#: parameters (and thus replays), not the outcome.
STAGES = ("data", "architecture", "optimisation", "regularisation", "robustness")

SPACES = ("guided", "full")


def _remedy_classes() -> list[type[Remedy]]:
    classes = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found = [obj for obj in vars(module).values()
                 if inspect.isclass(obj) and issubclass(obj, Remedy) and obj is not Remedy
                 and obj.__module__ == module.__name__ and not inspect.isabstract(obj)]
        if len(found) > 1:
            raise TypeError(f"{module.__name__} defines {len(found)} remedies "
                            f"({', '.join(c.__name__ for c in found)}); put each in its own file")
        classes += found
    return classes


def all_remedies() -> list[Remedy]:
    """One instance of every family in this folder, sorted by name."""
    remedies = sorted((cls() for cls in _remedy_classes()), key=lambda r: r.name)
    names = [r.name for r in remedies]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TypeError(f"two remedies share the name {dupes[0]!r}")
    return remedies


def remedies_for(symptom_id: str) -> list[str]:
    """Names of the remedies whose `treats` contains `symptom_id` (by name)."""
    return [r.name for r in all_remedies() if symptom_id in r.treats]


def select(diagnosis: Diagnosis, space: str = "guided") -> list[Remedy]:
    """The remedies to search over.

    Args:
        space: "full" → every applicable remedy; "guided" → the applicable remedies that are
            `always` offered or treat a symptom the diagnosis found.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    ids = set(diagnosis.ids)
    chosen = []
    for r in all_remedies():
        if not r.applicable(diagnosis.recipe, diagnosis):
            continue
        if space == "full" or r.always or ids & set(r.treats):
            chosen.append(r)
    return chosen


def prescription(diagnosis: Diagnosis, remedies: list[Remedy], *, complete: bool = True) -> dict[str, Any]:
    """The parameters to enqueue as the first trial: the union of `prescribe(diagnosis)`.

    Args:
        complete: also give the as-given values (`keep`) of the remedies that prescribe
            nothing, so the first trial is exactly "the recipe as given plus the prescribed
            changes". In a guided search every selected remedy prescribes, so this only matters
            for the full space.
    """
    params: dict[str, Any] = {}
    for r in remedies:
        given = r.prescribe(diagnosis)
        if not given and complete and hasattr(r, "keep"):
            from search_spaces._common import settle

            given = settle(r, r.keep(diagnosis.recipe), diagnosis.recipe, diagnosis)
        clash = {k for k in given if k in params and params[k] != given[k]}
        if clash:
            raise ValueError(f"remedy {r.name!r} prescribes {sorted(clash)} differently from "
                             "another remedy; parameter names must be unique")
        params.update(given)
    return params


def _stage_rank(r: Remedy) -> tuple[int, str]:
    stage = getattr(r, "stage", STAGES[-1])
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), r.name)


def build_recipe(trial: optuna.trial.BaseTrial, recipe: Recipe, diagnosis: Diagnosis | None,
                 remedies: list[Remedy]) -> Recipe:
    """Apply each remedy's `apply` in the fixed `STAGES` order and return the final recipe.

    Works with a live `optuna.trial.Trial` (the search) and with
    `optuna.trial.FixedTrial(best_params)` (rebuilding the best recipe): every remedy asks for
    its parameters deterministically given the values already drawn.
    """
    for r in sorted(remedies, key=_stage_rank):
        recipe = r.apply(trial, recipe, diagnosis)
    return recipe
