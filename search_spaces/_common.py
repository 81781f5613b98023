"""Small helpers shared by the remedy files (not a remedy: `all_remedies` skips `_` modules)."""
from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe
    from doctor.remedy import Remedy


def found(diagnosis: Diagnosis | None, ids: tuple[str, ...] | list[str]) -> set[str]:
    """The ids among `ids` that the diagnosis reports."""
    if diagnosis is None:
        return set()
    return {i for i in ids if diagnosis.has(i)}


def is_classification(diagnosis: Diagnosis | None) -> bool:
    """True for classification, and when the task is unknown (no diagnosis)."""
    return diagnosis is None or diagnosis.task == "classification"


def with_value(choices: list | tuple, value: Any) -> list:
    """`choices` plus `value` when it is missing, so the recipe as given stays reachable."""
    out = list(choices)
    if value not in out:
        out.append(value)
    return out


def settle(remedy: Remedy, params: dict[str, Any], recipe: Recipe,
           diagnosis: Diagnosis | None) -> dict[str, Any]:
    """Replay `params` through a `FixedTrial` and keep only those the remedy really asks for.

    A prescription is written as "the recipe as given, then these changes"; a change can turn a
    conditional parameter off (e.g. weight decay off drops `weight_decay`), and this replay
    removes what is left over. It also fails loudly when a needed parameter is missing.
    """
    import optuna

    trial = optuna.trial.FixedTrial(params)
    remedy.apply(trial, recipe, diagnosis)
    return {k: params[k] for k in trial.params}


def prescribe_changes(remedy: Remedy, diagnosis: Diagnosis, changes: dict[str, Any]) -> dict[str, Any]:
    """The usual `prescribe`: {} when none of `remedy.treats` was found (or the remedy is not
    `always`), else the remedy's as-given values (`keep`) overridden by `changes`."""
    if not found(diagnosis, remedy.treats) and not remedy.always:
        return {}
    recipe = diagnosis.recipe
    return settle(remedy, {**remedy.keep(recipe), **changes}, recipe, diagnosis)
