"""Resampling the training rows with imbalanced-learn (classification only).

`resample()` is also what `doctor.prepare.prepare` calls: it runs on the already-preprocessed
float32 training matrix only, never on validation or test rows. SMOTENC is the exception: it
is offered only for tables with categorical columns, and `resample_mixed()` runs it on the
columns before one-hot encoding (scaled numbers, category codes), with the categorical
positions given, as imbalanced-learn intends: a synthetic row takes the most frequent category
among its neighbours instead of a blend of one-hot columns.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from doctor.remedy import Remedy
from search_spaces._common import is_classification
from search_spaces._common import prescribe_changes
from search_spaces._common import with_value

log = logging.getLogger(__name__)

SAMPLERS = ("none", "random_over", "random_under", "smote", "borderline_smote", "adasyn",
            "smoteenn", "smotetomek")
#: imbalanced-learn's defaults; lowered when the smallest class to oversample is tiny.
K_NEIGHBORS = 5
M_NEIGHBORS = 10
#: For mixed tables only (see the module docstring); not in `SAMPLERS`, which `resample` runs.
MIXED = "smotenc"


def choices(recipe, diagnosis) -> list[str]:
    """`SAMPLERS`, plus SMOTENC when the table has categorical columns (or the recipe uses it)."""
    table = getattr(getattr(diagnosis, "profile", None), "table", None)
    out = list(SAMPLERS) + ([MIXED] if table is not None and table.categorical else [])
    return with_value(out, recipe.resample or "none")


class Resampling(Remedy):
    name = "resampling"
    stage = "data"
    treats = ("class_imbalance",)

    def apply(self, trial, recipe, diagnosis):
        choice = trial.suggest_categorical("resample", choices(recipe, diagnosis))
        return replace(recipe, resample=None if choice == "none" else choice)

    def keep(self, recipe) -> dict[str, Any]:
        return {"resample": recipe.resample or "none"}

    def prescribe(self, diagnosis):
        # class weights are the first-choice repair (class_weights.py); resampling is searched
        return prescribe_changes(self, diagnosis, {})

    def applicable(self, recipe, diagnosis):
        return is_classification(diagnosis)


def resample(name: str | None, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, *,
             seed: int, notes: list[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Resample training rows; returns (X, y, w) with `w` still aligned to the rows.

    Args:
        name: one of `SAMPLERS` (None or "none" returns the inputs).
        X: the preprocessed float32 training matrix; y: class indices.
        w: per-row weights or None; kept rows keep theirs, synthetic rows get 1.0.
        notes: where a fallback ran instead of `name`, a sentence saying so is appended (the
            trial and the report carry it, since the trial's parameters still name `name`).

    SMOTE-family samplers use fewer neighbours when the smallest class to oversample is tiny,
    and fall back to random oversampling when they cannot run at all.
    """
    if name is None or name == "none":
        return X, y, w
    if name not in SAMPLERS:
        raise ValueError(f"unknown resampling {name!r}; use one of {', '.join(SAMPLERS)}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return X, y, w
    w = None if w is None else np.asarray(w, dtype=np.float32)
    try:
        Xr, yr, wr = _run(name, X, y, w, seed)
    except _CannotRun as e:
        _fell_back(name, e, notes)
        Xr, yr, wr = _run("random_over", X, y, w, seed)
    return np.ascontiguousarray(Xr, dtype=np.float32), np.asarray(yr, dtype=y.dtype), wr


class _CannotRun(Exception):
    pass


def _fell_back(name: str, e: Exception, notes: list[str] | None) -> None:
    log.warning("%s cannot run here (%s); using random oversampling instead", name, e)
    if notes is not None:
        notes.append(f"resampling {name} could not run on these training rows ({e}); "
                     "random oversampling ran instead")


def _by_index(sampler, X, y, w):
    """Samplers that pick existing rows expose the picked positions in `sample_indices_`."""
    Xr, yr = sampler.fit_resample(X, y)
    idx = sampler.sample_indices_
    return Xr, yr, None if w is None else w[idx]


def _smote_k(y: np.ndarray) -> int:
    """Neighbours for SMOTE: below the size of the smallest class that will be oversampled."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    minority = counts[counts < counts.max()]
    if len(minority) == 0:
        return K_NEIGHBORS
    k = min(K_NEIGHBORS, int(minority.min()) - 1)
    if k < 1:
        raise _CannotRun(f"a class has only {int(minority.min())} training row")
    return k


def _oversample(name: str, X, y, w, seed: int):
    """SMOTE-family: the output is the input rows in order, then the synthetic rows."""
    from imblearn.over_sampling import ADASYN
    from imblearn.over_sampling import SMOTE
    from imblearn.over_sampling import BorderlineSMOTE

    k = _smote_k(y)
    if name == "adasyn":
        sampler = ADASYN(n_neighbors=k, random_state=seed)
    elif name == "borderline_smote":
        sampler = BorderlineSMOTE(k_neighbors=k, m_neighbors=max(1, min(M_NEIGHBORS, len(y) - 1)),
                                  random_state=seed)
    else:
        sampler = SMOTE(k_neighbors=k, random_state=seed)
    try:
        Xr, yr = sampler.fit_resample(X, y)
    except (ValueError, RuntimeError) as e:  # e.g. ADASYN finding no majority neighbours
        raise _CannotRun(str(e)) from None
    n = len(X)
    if len(Xr) < n or not np.array_equal(Xr[:n], X):
        raise _CannotRun("the sampler reordered the input rows, so weights cannot follow them")
    wr = None if w is None else np.concatenate([w, np.ones(len(Xr) - n, dtype=np.float32)])
    return Xr, yr, wr


def resample_mixed(num: np.ndarray, codes: np.ndarray, y: np.ndarray, w: np.ndarray | None, *,
                   seed: int, notes: list[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """SMOTENC on the scaled numeric columns `num` and the category codes `codes`.

    Returns (num, codes, y, w): the input rows in order, then the synthetic ones (weight 1.0).
    Without numeric columns SMOTEN (imbalanced-learn's all-categorical variant) runs instead;
    a class too small for any neighbour falls back to random oversampling (said in `notes`, as
    in `resample`).
    """
    from imblearn.over_sampling import SMOTEN
    from imblearn.over_sampling import SMOTENC

    num = np.asarray(num, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    y = np.asarray(y)
    w = None if w is None else np.asarray(w, dtype=np.float32)
    p = num.shape[1]
    both = np.hstack([num, codes.astype(np.float64)])
    if len(np.unique(y)) < 2:
        return num, codes, y, w
    try:
        k = _smote_k(y)
        sampler = (SMOTENC(categorical_features=list(range(p, both.shape[1])), k_neighbors=k,
                           random_state=seed) if p else SMOTEN(k_neighbors=k, random_state=seed))
        try:
            Xr, yr = sampler.fit_resample(both, y)
        except (ValueError, RuntimeError) as e:
            raise _CannotRun(str(e)) from None
        n = len(both)
        if len(Xr) < n or not np.array_equal(Xr[:n], both):
            raise _CannotRun("the sampler reordered the input rows, so weights cannot follow them")
        wr = None if w is None else np.concatenate([w, np.ones(len(Xr) - n, dtype=np.float32)])
    except _CannotRun as e:
        _fell_back("smotenc", e, notes)
        Xr, yr, wr = _run("random_over", both, y, w, seed)
    Xr = np.asarray(Xr, dtype=np.float64)
    return Xr[:, :p], np.rint(Xr[:, p:]).astype(np.int64), np.asarray(yr, dtype=y.dtype), wr


def _run(name: str, X, y, w, seed: int):
    from imblearn.under_sampling import EditedNearestNeighbours
    from imblearn.under_sampling import RandomUnderSampler
    from imblearn.under_sampling import TomekLinks
    from imblearn.over_sampling import RandomOverSampler

    if name == "random_over":
        return _by_index(RandomOverSampler(random_state=seed), X, y, w)
    if name == "random_under":
        return _by_index(RandomUnderSampler(random_state=seed), X, y, w)
    if name in ("smote", "borderline_smote", "adasyn"):
        return _oversample(name, X, y, w, seed)
    # SMOTE, then clean every class (as imbalanced-learn's SMOTEENN / SMOTETomek do)
    Xs, ys, ws = _oversample("smote", X, y, w, seed)
    cleaner = (EditedNearestNeighbours(sampling_strategy="all") if name == "smoteenn"
               else TomekLinks(sampling_strategy="all"))
    try:
        return _by_index(cleaner, Xs, ys, ws)
    except (ValueError, RuntimeError) as e:
        raise _CannotRun(str(e)) from None
