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


def table_of(diagnosis: Diagnosis | None):
    """The diagnosed `Table`, or None (no diagnosis, or one without a data profile)."""
    profile = getattr(diagnosis, "profile", None)
    return getattr(profile, "table", None)


def changes_columns_ok(diagnosis: Diagnosis | None) -> bool:
    """False for image input (a table with an `input_shape`): its flat columns are pixels the
    network is handed back in their original shape, so a remedy that drops, selects or adds
    columns would break that shape."""
    table = table_of(diagnosis)
    return getattr(table, "input_shape", None) is None


#: A class with fewer rows than this (in the whole table) is "rare" for the small-data priors
#: (architecture.py, weight_decay.py) and the rare-class prescription (losses.py,
#: class_weights.py, early_stopping.py): the usual 10-20 events per parameter of a logistic
#: model (Peduzzi et al. 1996) means such a class supports about one linear decision, not the
#: thousands of weights of a hidden layer. On ~13 rare rows a class-weighted logistic
#: regression beats a class-weighted 64x64 MLP (NOTES.md, repair benchmark).
RARE_CLASS_ROWS = 20


def rare_class(diagnosis: Diagnosis | None) -> bool:
    """True when class_imbalance was found and its smallest class has < RARE_CLASS_ROWS rows."""
    symptom = diagnosis.get("class_imbalance") if diagnosis is not None else None
    if symptom is None:
        return False
    counts = symptom.evidence.get("counts") or {}
    return bool(counts) and min(int(v) for v in counts.values()) < RARE_CLASS_ROWS


def small_data(diagnosis: Diagnosis | None) -> bool:
    """Few rows to fit weights from: limited_data found, or a rare class."""
    return bool(found(diagnosis, ("limited_data",))) or rare_class(diagnosis)
