"""Standard preprocessing: impute, clip, scale numeric columns; one-hot encode categorical ones.

Around that core, three optional steps that remedies switch on (`search_spaces/hygiene.py`,
`search_spaces/feature_selection.py`): leave out listed columns (e.g. leaking ones), leave out
columns that are constant on the training rows, and reduce a wide table to k inputs: keep the
k most informative output features (scikit-learn's `SelectKBest` with mutual information, or
an L1 model's k largest coefficients), or project onto the first k principal components
(scikit-learn's `PCA`). Selection keeps original features, so the explanations stay per
original column; a projection's inputs are components (`pc1`, `pc2`, …), and the explanations
are per component.

Fitted on training rows only. The fitted state is plain numbers and strings (`to_dict`), so a
model bundle can store it as JSON and nobody ever unpickles it.
"""
from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import logging
import math
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from doctor.errors import InputError
from doctor.errors import NotFittedError

SCALERS = ("standard", "robust", "minmax", "none")
IMPUTERS = ("median", "mean")
SELECTORS = ("mutual_info", "l1", "pca")
#: Inverse regularisation of the L1 logistic regression that ranks features for "l1": scikit-
#: learn's default. On standardised inputs it leaves a few dozen non-zero coefficients on a
#: hundred rows; the ranking (largest |coefficient| first) is what is used, not the zeros.
L1_C = 1.0

log = logging.getLogger(__name__)


@dataclass
class Preprocessor:
    """Impute → clip → scale numeric columns; impute → one-hot categorical columns.

    Args:
        scaler: "standard" (mean/std), "robust" (median/IQR), "minmax" or "none".
        imputer: "median" or "mean" for numeric columns (categorical: the most frequent value).
        clip: winsorise numeric columns at this training quantile and its mirror (e.g. 0.01),
            or None.
        drop: columns to leave out (absent ones are ignored; the data may still hold them).
        drop_constant: leave out columns with at most one distinct non-missing value on the
            training rows (they carry nothing the network could use).
        select: reduce the output features to k: keep the k best, "mutual_info" (`SelectKBest`
            with mutual information) or "l1" (largest coefficients of an L1 model), or project
            onto the first k principal components, "pca"; None keeps every feature.
        select_rows_per_feature: k = training rows / this, so the network sees at least this
            many rows per input feature (the high_dimensionality check's 5 cures it).
    """

    scaler: str = "standard"
    imputer: str = "median"
    clip: float | None = None
    drop: tuple[str, ...] = ()
    drop_constant: bool = False
    select: str | None = None
    select_rows_per_feature: float = 5.0

    def __post_init__(self) -> None:
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {SCALERS}, got {self.scaler!r}")
        if self.imputer not in IMPUTERS:
            raise ValueError(f"imputer must be one of {IMPUTERS}, got {self.imputer!r}")
        if self.select is not None and self.select not in SELECTORS:
            raise ValueError(f"select must be one of {SELECTORS} or None, got {self.select!r}")
        if not self.select_rows_per_feature > 0:
            raise ValueError(f"select_rows_per_feature must be positive, got {self.select_rows_per_feature}")
        self.drop = tuple(str(c) for c in self.drop)

    def fit(self, X: pd.DataFrame, numeric: list[str], categorical: list[str],
            y: np.ndarray | None = None, task: str = "classification") -> Preprocessor:
        """Fit on the training rows `X`; `y` (their targets) is needed only by `select`."""
        numeric, categorical = self._columns(X, list(numeric), list(categorical))
        self.numeric_ = list(numeric)
        self.categorical_ = list(categorical)
        num = X[self.numeric_].to_numpy(dtype=np.float64) if numeric else np.zeros((len(X), 0))
        fill = (np.nanmedian if self.imputer == "median" else np.nanmean)(
            np.where(np.isnan(num).all(0, keepdims=True), 0.0, num), axis=0) if numeric else np.zeros(0)
        filled = np.where(np.isnan(num), fill, num)
        if self.clip is not None and numeric:
            lo, hi = np.quantile(filled, [self.clip, 1 - self.clip], axis=0)
        else:
            lo = np.full(filled.shape[1], -np.inf)
            hi = np.full(filled.shape[1], np.inf)
        clipped = np.clip(filled, lo, hi)
        if self.scaler == "standard":
            center, scale = clipped.mean(0), clipped.std(0)
        elif self.scaler == "robust":
            q1, med, q3 = np.quantile(clipped, [0.25, 0.5, 0.75], axis=0) if numeric else [np.zeros(0)] * 3
            center, scale = med, q3 - q1
        elif self.scaler == "minmax":
            center, scale = clipped.min(0) if numeric else np.zeros(0), np.ptp(clipped, 0) if numeric else np.zeros(0)
        else:
            center, scale = np.zeros(filled.shape[1]), np.ones(filled.shape[1])
        scale = np.where(np.asarray(scale) > 1e-12, scale, 1.0)
        self.fill_ = np.asarray(fill, dtype=float).tolist()
        self.lo_, self.hi_ = np.asarray(lo).tolist(), np.asarray(hi).tolist()
        self.center_, self.scale_ = np.asarray(center).tolist(), np.asarray(scale).tolist()
        self.categories_ = {}
        self.mode_ = {}
        for col in self.categorical_:
            counts = X[col].dropna().astype(str).value_counts()
            self.categories_[col] = counts.index.tolist()
            self.mode_[col] = counts.index[0] if len(counts) else ""
        self.kept_ = None
        self.pca_mean_ = self.pca_components_ = None
        if self.select == "pca":
            self._project(self.transform(X))
        elif self.select is not None:
            self.kept_ = self._select(self.transform(X), y, task)
        return self

    def _project(self, Z: np.ndarray) -> None:
        """Fit the projection onto the first k principal components of the training rows
        (k as for selection); none when k keeps every feature."""
        n, d = Z.shape
        k = min(n, max(1, int(math.floor(n / self.select_rows_per_feature))))
        if k >= d:
            return
        from sklearn.decomposition import PCA

        pca = PCA(n_components=k, random_state=0).fit(Z)
        self.pca_mean_ = pca.mean_.astype(float).tolist()
        self.pca_components_ = pca.components_.astype(float).tolist()

    def _columns(self, X: pd.DataFrame, numeric: list[str], categorical: list[str]) -> tuple[list, list]:
        """The columns to keep, recording the left-out ones in `dropped_` ({column: why})."""
        dropped = {c: "listed" for c in numeric + categorical if c in set(self.drop)}
        if self.drop_constant:
            for c in numeric + categorical:
                if c not in dropped and X[c].nunique(dropna=True) <= 1:
                    dropped[c] = "constant"
        if dropped and len(dropped) == len(numeric) + len(categorical):
            # nothing would be left to learn from: keep the table as it is, and say so
            log.warning("dropping %s would leave no feature; keeping every column", ", ".join(dropped))
            dropped = {}
        self.dropped_ = dropped
        return [c for c in numeric if c not in dropped], [c for c in categorical if c not in dropped]

    def _select(self, Z: np.ndarray, y: np.ndarray | None, task: str) -> list[int] | None:
        """Indices (ascending) of the k output features to keep, or None when k keeps all."""
        if y is None:
            raise ValueError("feature selection needs the training targets: pass y to fit")
        n, d = Z.shape
        k = max(1, int(math.floor(n / self.select_rows_per_feature)))
        if k >= d:
            return None
        from sklearn.feature_selection import SelectFromModel
        from sklearn.feature_selection import SelectKBest

        y = np.asarray(y)
        classify = task == "classification"
        if self.select == "mutual_info":
            from functools import partial

            from sklearn.feature_selection import mutual_info_classif
            from sklearn.feature_selection import mutual_info_regression

            score = partial(mutual_info_classif if classify else mutual_info_regression, random_state=0)
            selector = SelectKBest(score, k=k)
        else:
            from sklearn.linear_model import Lars

            # classification: L1 logistic regression; regression: LARS, which adds exactly
            # k features in the order they enter the L1 path
            model = _l1_logistic(len(np.unique(y)) > 2) if classify else Lars(n_nonzero_coefs=k)
            selector = SelectFromModel(model, max_features=k, threshold=-np.inf)
        with warnings.catch_warnings():  # saga may stop at max_iter: the ranking is what is used
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            selector.fit(Z, y)
        return np.flatnonzero(selector.get_support()).astype(int).tolist()

    # ------------------------------------------------------------------ transform
    def _check(self) -> None:
        if not hasattr(self, "center_"):
            raise NotFittedError("This Preprocessor instance is not fitted yet. Call 'fit' with "
                                 "the training rows before using it.")

    @property
    def feature_names_out_(self) -> list[str]:
        self._check()
        if getattr(self, "pca_components_", None) is not None:
            return [f"pc{i + 1}" for i in range(len(self.pca_components_))]
        out = list(self.numeric_)
        for col in self.categorical_:
            out += [f"{col}={v}" for v in self.categories_[col]]
        return self._kept(out)

    @property
    def groups_(self) -> list[str]:
        """The original column of each output feature (one-hot columns fold back to one); a
        principal component is a group of its own."""
        self._check()
        if getattr(self, "pca_components_", None) is not None:
            return self.feature_names_out_
        out = list(self.numeric_)
        for col in self.categorical_:
            out += [col] * len(self.categories_[col])
        return self._kept(out)

    def _kept(self, names: list[str]) -> list[str]:
        kept = getattr(self, "kept_", None)
        return names if kept is None else [names[i] for i in kept]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.assemble(*self.transform_parts(X))

    def transform_parts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(scaled numeric matrix, categorical codes): the columns before one-hot encoding.

        A code is the category's position in `categories_[col]`, -1 for a category never seen
        in training (it one-hot encodes to all zeros). Resampling that must see the columns as
        they are (SMOTENC) works on these; `assemble` finishes the transform.
        """
        self._check()
        missing = [c for c in self.numeric_ + self.categorical_ if c not in X.columns]
        if missing:
            raise InputError(f"the data lacks column(s) {', '.join(repr(c) for c in missing[:5])}"
                             f"{', …' if len(missing) > 5 else ''} that the model was trained on; "
                             "add them")
        num = np.zeros((len(X), 0))
        if self.numeric_:
            try:
                num = X[self.numeric_].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise InputError(f"a numeric column holds text that is not a number ({e}); fix it") from None
            num = np.where(np.isfinite(num), num, np.nan)
            num = np.where(np.isnan(num), np.asarray(self.fill_), num)
            num = np.clip(num, np.asarray(self.lo_), np.asarray(self.hi_))
            num = (num - np.asarray(self.center_)) / np.asarray(self.scale_)
        codes = np.zeros((len(X), len(self.categorical_)), dtype=np.int64)
        for j, col in enumerate(self.categorical_):
            values = X[col].astype(object).where(X[col].notna(), self.mode_[col]).astype(str)
            index = {v: i for i, v in enumerate(self.categories_[col])}
            codes[:, j] = [index.get(v, -1) for v in values]
        return num, codes

    def assemble(self, num: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """One-hot encode `codes`, place them after `num`, keep the selected features."""
        parts = [np.asarray(num, dtype=np.float64)]
        codes = np.asarray(codes).astype(np.int64)
        for j, col in enumerate(self.categorical_):
            width = len(self.categories_[col])
            parts.append((codes[:, j:j + 1] == np.arange(width)[None, :]).astype(np.float64))
        out = np.hstack(parts).astype(np.float32) if parts else np.zeros((len(num), 0), np.float32)
        components = getattr(self, "pca_components_", None)
        if components is not None:
            return ((out - np.asarray(self.pca_mean_)) @ np.asarray(components).T).astype(np.float32)
        kept = getattr(self, "kept_", None)
        return out if kept is None else np.ascontiguousarray(out[:, kept])

    def fit_transform(self, X: pd.DataFrame, numeric: list[str], categorical: list[str]) -> np.ndarray:
        return self.fit(X, numeric, categorical).transform(X)

    # ------------------------------------------------------------------ JSON state
    def to_dict(self) -> dict[str, Any]:
        self._check()
        state = {k: getattr(self, k) for k in ("numeric_", "categorical_", "fill_", "lo_", "hi_",
                                                "center_", "scale_", "categories_", "mode_")}
        state = {k: _json_floats(v) for k, v in state.items()}
        state["dropped_"] = dict(getattr(self, "dropped_", {}))
        state["kept_"] = getattr(self, "kept_", None)
        state["pca_mean_"] = getattr(self, "pca_mean_", None)
        state["pca_components_"] = getattr(self, "pca_components_", None)
        params = asdict(self)
        params["drop"] = list(self.drop)
        return {"params": params, "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        pre = cls(**d["params"])
        pre.dropped_, pre.kept_ = {}, None  # bundles written before these steps existed
        pre.pca_mean_ = pre.pca_components_ = None
        for k, v in d["state"].items():
            setattr(pre, k, v)
        pre.lo_ = [-np.inf if x is None else x for x in pre.lo_]
        pre.hi_ = [np.inf if x is None else x for x in pre.hi_]
        return pre


def _l1_logistic(multiclass: bool = False):
    """An L1-penalised logistic regression, spelled for the installed scikit-learn (1.8
    deprecates `penalty` in favour of `l1_ratio`). liblinear is fast but binary only (recent
    scikit-learn no longer wraps it one-vs-rest); three or more classes use saga, which fits
    the multinomial L1 model on the already scaled features."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    solver = "saga" if multiclass else "liblinear"
    extra = {"max_iter": 2000} if multiclass else {}
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, solver=solver, C=L1_C, **extra)
    return LogisticRegression(penalty="l1", solver=solver, C=L1_C, **extra)


def _json_floats(v: Any) -> Any:
    """Infinite clip bounds become None in JSON (restored on load)."""
    if isinstance(v, list):
        return [None if isinstance(x, float) and not np.isfinite(x) else x for x in v]
    return v
