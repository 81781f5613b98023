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

#: Generic regularisers and optimisation knobs a guided search always offers besides what the
#: diagnosis calls for: once the prescription works, what limits the best trial is usually
#: variance and optimisation detail, and a guided space without these knobs ended below the
#: full space in 6 of 10 scenarios of the repair benchmark (docs/benchmarks.md "## Repair").
#: All are cheap per trial; the slow families (adversarial training, augmentation's mixup,
#: wide networks) stay for the symptoms that call for them.
#: `class_weights` (classification only, its `applicable`) is here because the objective of
#: every classification is balanced accuracy, and unweighted cross-entropy aims at plain
#: accuracy whenever the classes are unequal, also above class_imbalance's 1:5. In part 2b of
#: the repair benchmark (real tables of a few thousand rows), at search seed 0, the guided
#: search without it never reached the reference on fair (1:2.1) or flchain (1:2.6), where the
#: full-space winners weighted their classes; with it, fair's best validation went from 0.643
#: to 0.707-0.712 (seeds 0-2). It is searched, and prescribed only for class_imbalance; on
#: balanced classes it changes nothing.
GENERIC = ("weight_decay", "dropout", "early_stopping", "lr_schedule", "normalization",
           "batch_size", "class_weights")
#: The generic families the regularised prior (`regularised`) takes from: the ones whose own
#: `prescribe` for overfitting is a mild, standard setting (weight decay 1e-3, dropout 0.25,
#: early stopping with the AUTOTRAINER patience).
PRIOR_FAMILIES = ("weight_decay", "dropout", "early_stopping")


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
            `always` offered, treat a symptom the diagnosis found, or are one of the `GENERIC`
            regularisers and optimisation knobs.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    ids = set(diagnosis.ids)
    chosen = []
    for r in all_remedies():
        if not r.applicable(diagnosis.recipe, diagnosis):
            continue
        if space == "full" or r.always or ids & set(r.treats) or r.name in GENERIC:
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


def regularised(diagnosis: Diagnosis, remedies: list[Remedy], prescription: dict[str, Any]) -> dict[str, Any]:
    """The guided search's second enqueued trial, its informed prior: the prescription plus
    the standard regularisation of the `PRIOR_FAMILIES` the diagnosis did not already set.

    The values are each family's own `prescribe` for overfitting (nothing is typed here), on
    the recipe as given. Returns {} when that changes nothing (e.g. the diagnosis found
    overfitting, so the prescription is already regularised).
    """
    from dataclasses import replace

    from doctor.checks import Symptom
    from search_spaces._common import found
    from search_spaces._common import settle

    if diagnosis.has("overfitting"):
        return {}
    hypothetical = replace(diagnosis, symptoms=list(diagnosis.symptoms) + [Symptom(
        "overfitting", 0.5, "hypothetical: the prior that a working recipe next meets variance")])
    params = dict(prescription)
    changed = False
    for r in remedies:
        if r.name not in PRIOR_FAMILIES or found(diagnosis, r.treats):
            continue  # a family the diagnosis itself prescribed keeps its prescription
        given = r.prescribe(hypothetical)
        if not given:
            continue
        own = set(settle(r, r.keep(diagnosis.recipe), diagnosis.recipe, diagnosis))
        before = {k: params[k] for k in own if k in params}
        for k in own:
            params.pop(k, None)
        params.update(given)
        changed = changed or before != given
    return params if changed else {}


#: At most this many competing treatments are enqueued after the prescription (`competing`):
#: each costs one trial of the budget that TPE would otherwise spend exploring.
MAX_COMPETING = 2


def competing(diagnosis: Diagnosis, remedies: list[Remedy],
              prescription: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The trials to enqueue after the prescription when treatments compete, as (family,
    parameters): for each family's `compete` alternative, the prescription with that family's
    parameters replaced by it (the other families' prescribed changes stay). At most
    `MAX_COMPETING`, in family order, none equal to the prescription or to one another."""
    from search_spaces._common import settle

    out: list[tuple[str, dict[str, Any]]] = []
    for r in remedies:
        for alternative in r.compete(diagnosis):
            own = set(settle(r, r.keep(diagnosis.recipe), diagnosis.recipe, diagnosis))
            own |= set(r.prescribe(diagnosis))
            params = {k: v for k, v in prescription.items() if k not in own}
            params.update(alternative)
            if params != prescription and all(params != p for _, p in out):
                out.append((r.name, params))
    return out[:MAX_COMPETING]


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


def replay(params: dict[str, Any], recipe: Recipe, diagnosis: Diagnosis | None,
           remedies: list[Remedy]) -> Recipe:
    """The recipe of a finished trial, rebuilt from its parameters through a `FixedTrial`.

    A study that is resumed or joined may hold trials made with another set of families (an
    earlier version of the doctor, or another machine whose diagnosis differed): a family a
    trial has no parameters for was not part of its search, so it is replayed as given (its
    `keep` values) instead of failing the whole visit.
    """
    import optuna

    full: dict[str, Any] = {}
    for r in remedies:
        full.update(r.keep(recipe))
    full.update(params)
    return build_recipe(optuna.trial.FixedTrial(full), recipe, diagnosis, remedies)
