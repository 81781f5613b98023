"""From a `Table`, its `Split` and a `Recipe` to tensors the trainer can use.

Preprocessing is fitted on the training rows only; dropping duplicate rows, resampling and the
handling of flagged noisy rows touch the training rows only; validation and test rows are only
transformed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from doctor.preprocess import Preprocessor

if TYPE_CHECKING:
    from doctor.data import Split
    from doctor.data import Table
    from doctor.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Tensors on the device, and what is needed to map outputs back to the table."""

    pre: Preprocessor
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    w_train: torch.Tensor | None
    task: str
    n_outputs: int
    y_mean: float = 0.0  # regression targets are standardised for training
    y_std: float = 1.0
    class_weights: torch.Tensor | None = None
    class_prior: torch.Tensor | None = None  # training class frequencies (after resampling)
    #: What ran other than the recipe says (a resampler that could not run and its fallback),
    #: one sentence each; the search records them on the trial and the report on the cure.
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def fit_preprocessor(table: Table, rows: np.ndarray, recipe: Recipe) -> Preprocessor:
    pre = Preprocessor(scaler=recipe.scaler, imputer=recipe.imputer, clip=recipe.clip,
                       drop=recipe.drop_columns, drop_constant=recipe.drop_constant,
                       select=recipe.select, select_rows_per_feature=recipe.select_rows_per_feature)
    return pre.fit(table.X.iloc[rows], table.numeric, table.categorical,
                   y=table.y_codes()[rows], task=table.task)


def first_copies(table: Table, rows: np.ndarray) -> np.ndarray:
    """Positions into `rows` of the rows that are not an exact copy (features and target) of
    an earlier one among `rows`; the same hashing as the duplicate_rows check."""
    import pandas as pd

    full = table.X.iloc[rows].copy()
    full["__target__"] = table.y.iloc[rows].to_numpy()
    h = pd.util.hash_pandas_object(full, index=False).to_numpy()
    return np.flatnonzero(~pd.Series(h).duplicated(keep="first").to_numpy())


def prepare(table: Table, split: Split, recipe: Recipe, *, device: torch.device | str = "cpu",
            noisy: np.ndarray | None = None) -> Prepared:
    """Preprocess, resample and move to `device`.

    Args:
        noisy: positions (into `split.train`) of rows flagged as likely mislabelled; used when
            the recipe drops or down-weights them.
    """
    device = torch.device(device)
    train = np.asarray(split.train)
    noisy = None if noisy is None else np.asarray(noisy, dtype=int)
    if recipe.drop_duplicates:
        kept = first_copies(table, train)
        if noisy is not None:  # re-index the flagged positions among the rows kept
            noisy = np.flatnonzero(np.isin(kept, noisy))
        train = train[kept]
    pre = fit_preprocessor(table, train, recipe)
    y = table.y_codes()
    num, codes = pre.transform_parts(table.X.iloc[train])
    ytr = y[train]
    Xva, yva = pre.transform(table.X.iloc[split.val]), y[split.val]
    w = None
    notes: list[str] = []
    if recipe.noisy_rows and noisy is not None and len(noisy):
        if recipe.noisy_rows == "drop":
            keep = np.setdiff1d(np.arange(len(ytr)), noisy)
            num, codes, ytr = num[keep], codes[keep], ytr[keep]
        else:  # down-weight: flagged rows count a quarter of a clean row
            w = np.ones(len(ytr), dtype=np.float32)
            w[noisy] = 0.25
    resampling = recipe.resample if table.task == "classification" else None
    if resampling == "smotenc" and pre.categorical_:
        from search_spaces.resampling import resample_mixed

        # on the columns as they are, before one-hot encoding, as imbalanced-learn intends
        num, codes, ytr, w = resample_mixed(num, codes, ytr, w, seed=recipe.seed, notes=notes)
        resampling = None
    elif resampling == "smotenc":  # no categorical column (left): plain SMOTE is the same thing
        resampling = "smote"
    Xtr = pre.assemble(num, codes)
    if resampling:
        from search_spaces.resampling import resample

        Xtr, ytr, w = resample(resampling, Xtr, ytr, w, seed=recipe.seed, notes=notes)
    y_mean, y_std = 0.0, 1.0
    if table.task == "regression":
        y_mean, y_std = float(ytr.mean()), float(ytr.std() or 1.0)
        ytr = (ytr - y_mean) / y_std
        yva = (yva - y_mean) / y_std
    n_out = len(table.classes) if table.task == "classification" else 1
    cw = prior = None
    if table.task == "classification":
        counts = np.bincount(ytr, minlength=n_out).astype(np.float64)
        prior = torch.tensor(np.maximum(counts, 1) / max(1, len(ytr)), dtype=torch.float32, device=device)
        if recipe.class_weight:
            cw = torch.tensor(len(ytr) / (n_out * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    ydt = torch.long if table.task == "classification" else torch.float32

    def t(a, dt=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

    return Prepared(pre, t(Xtr), t(ytr, ydt), t(Xva), t(yva, ydt),
                    None if w is None else t(w), table.task, n_out, y_mean, y_std, cw, prior,
                    tuple(notes))
