"""Standard preprocessing: impute, clip, scale numeric columns; one-hot encode categorical ones.

Fitted on training rows only. The fitted state is plain numbers and strings (`to_dict`), so a
model bundle can store it as JSON and nobody ever unpickles it.
"""
from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from doctor.errors import InputError
from doctor.errors import NotFittedError

SCALERS = ("standard", "robust", "minmax", "none")
IMPUTERS = ("median", "mean")


@dataclass
class Preprocessor:
    """Impute → clip → scale numeric columns; impute → one-hot categorical columns.

    Args:
        scaler: "standard" (mean/std), "robust" (median/IQR), "minmax" or "none".
        imputer: "median" or "mean" for numeric columns (categorical: the most frequent value).
        clip: winsorise numeric columns at this training quantile and its mirror (e.g. 0.01),
            or None.
    """

    scaler: str = "standard"
    imputer: str = "median"
    clip: float | None = None

    def __post_init__(self) -> None:
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {SCALERS}, got {self.scaler!r}")
        if self.imputer not in IMPUTERS:
            raise ValueError(f"imputer must be one of {IMPUTERS}, got {self.imputer!r}")

    def fit(self, X: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessor:
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
        return self

    # ------------------------------------------------------------------ transform
    def _check(self) -> None:
        if not hasattr(self, "center_"):
            raise NotFittedError("This Preprocessor instance is not fitted yet. Call 'fit' with "
                                 "the training rows before using it.")

    @property
    def feature_names_out_(self) -> list[str]:
        self._check()
        out = list(self.numeric_)
        for col in self.categorical_:
            out += [f"{col}={v}" for v in self.categories_[col]]
        return out

    @property
    def groups_(self) -> list[str]:
        """The original column of each output feature (one-hot columns fold back to one)."""
        self._check()
        out = list(self.numeric_)
        for col in self.categorical_:
            out += [col] * len(self.categories_[col])
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        self._check()
        missing = [c for c in self.numeric_ + self.categorical_ if c not in X.columns]
        if missing:
            raise InputError(f"the data lacks column(s) {', '.join(repr(c) for c in missing[:5])}"
                             f"{', …' if len(missing) > 5 else ''} that the model was trained on; "
                             "add them")
        parts = []
        if self.numeric_:
            try:
                num = X[self.numeric_].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise InputError(f"a numeric column holds text that is not a number ({e}); fix it") from None
            num = np.where(np.isfinite(num), num, np.nan)
            num = np.where(np.isnan(num), np.asarray(self.fill_), num)
            num = np.clip(num, np.asarray(self.lo_), np.asarray(self.hi_))
            parts.append((num - np.asarray(self.center_)) / np.asarray(self.scale_))
        for col in self.categorical_:
            values = X[col].astype(object).where(X[col].notna(), self.mode_[col]).astype(str)
            cats = self.categories_[col]
            parts.append((values.to_numpy()[:, None] == np.asarray(cats, dtype=object)[None, :])
                         .astype(np.float64))
        if not parts:
            return np.zeros((len(X), 0), dtype=np.float32)
        return np.hstack(parts).astype(np.float32)

    def fit_transform(self, X: pd.DataFrame, numeric: list[str], categorical: list[str]) -> np.ndarray:
        return self.fit(X, numeric, categorical).transform(X)

    # ------------------------------------------------------------------ JSON state
    def to_dict(self) -> dict[str, Any]:
        self._check()
        state = {k: getattr(self, k) for k in ("numeric_", "categorical_", "fill_", "lo_", "hi_",
                                                "center_", "scale_", "categories_", "mode_")}
        state = {k: _json_floats(v) for k, v in state.items()}
        return {"params": asdict(self), "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        pre = cls(**d["params"])
        for k, v in d["state"].items():
            setattr(pre, k, v)
        pre.lo_ = [-np.inf if x is None else x for x in pre.lo_]
        pre.hi_ = [np.inf if x is None else x for x in pre.hi_]
        return pre


def _json_floats(v: Any) -> Any:
    """Infinite clip bounds become None in JSON (restored on load)."""
    if isinstance(v, list):
        return [None if isinstance(x, float) and not np.isfinite(x) else x for x in v]
    return v
