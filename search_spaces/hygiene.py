"""Row and column hygiene: drop exact duplicate training rows, constant columns and the
columns the diagnosis flagged as leaking the target.

Each switch is asked only when its symptom was found (with no diagnosis, all three are asked),
so a search does not spend trials on a no-op. Duplicates are dropped among the training rows
only (`doctor.prepare.first_copies`): validation and test rows are what the cure is measured
on and stay as they are. Columns are left out by the fitted `Preprocessor` (its `drop` and
`drop_constant`), which the model bundle stores, so `doctor predict` accepts a CSV that still
has them and ignores them.

Not for image input: its columns are pixels of a fixed shape (`applicable`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from doctor.remedy import Remedy
from search_spaces._common import changes_columns_ok
from search_spaces._common import prescribe_changes


#: The switch that treats each symptom.
SWITCHES = {"duplicate_rows": "drop_duplicates", "constant_features": "drop_constant",
            "target_leakage": "drop_leaking"}


def leaking_columns(diagnosis) -> tuple[str, ...]:
    """The columns the target_leakage symptom names (its evidence's "columns"), in its order."""
    symptom = diagnosis.get("target_leakage") if diagnosis is not None else None
    if symptom is None:
        return ()
    return tuple(str(c) for c in (symptom.evidence.get("columns") or {}))


def _asks(diagnosis, symptom_id: str) -> bool:
    return diagnosis is None or diagnosis.has(symptom_id)


class Hygiene(Remedy):
    name = "hygiene"
    stage = "data"
    treats = ("duplicate_rows", "constant_features", "target_leakage")

    def apply(self, trial, recipe, diagnosis):
        changes: dict[str, Any] = {}
        if _asks(diagnosis, "duplicate_rows"):
            changes["drop_duplicates"] = bool(
                trial.suggest_categorical("drop_duplicates", [False, True]))
        if _asks(diagnosis, "constant_features"):
            changes["drop_constant"] = bool(trial.suggest_categorical("drop_constant", [False, True]))
        leaking = leaking_columns(diagnosis)
        if leaking and trial.suggest_categorical("drop_leaking", [False, True]):
            given = recipe.drop_columns
            changes["drop_columns"] = given + tuple(c for c in leaking if c not in given)
        return replace(recipe, **changes)

    def keep(self, recipe) -> dict[str, Any]:
        # "drop_leaking" off keeps the recipe's own drop_columns
        return {"drop_duplicates": bool(recipe.drop_duplicates),
                "drop_constant": bool(recipe.drop_constant), "drop_leaking": False}

    def prescribe(self, diagnosis):
        # each is the textbook repair of its finding; a leak is dropped even though it will
        # look worse on validation rows (they leak too): the search still sees both
        return prescribe_changes(self, diagnosis, {"drop_duplicates": True, "drop_constant": True,
                                                   "drop_leaking": True})

    def applicable(self, recipe, diagnosis):
        return changes_columns_ok(diagnosis)

    def treated(self, params, symptom_id):
        return bool(params.get(SWITCHES.get(symptom_id, ""), False))
