"""From a `Table`, its `Split` and a `Recipe` to tensors the trainer can use.

Preprocessing is fitted on the training rows only; resampling and the handling of flagged
noisy rows touch the training rows only; validation and test rows are only transformed.
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
    pre = Preprocessor(scaler=recipe.scaler, imputer=recipe.imputer, clip=recipe.clip)
    return pre.fit(table.X.iloc[rows], table.numeric, table.categorical)


def prepare(table: Table, split: Split, recipe: Recipe, *, device: torch.device | str = "cpu",
            noisy: np.ndarray | None = None) -> Prepared:
    """Preprocess, resample and move to `device`.

    Args:
        noisy: positions (into `split.train`) of rows flagged as likely mislabelled; used when
            the recipe drops or down-weights them.
    """
    device = torch.device(device)
    pre = fit_preprocessor(table, split.train, recipe)
    y = table.y_codes()
    Xtr, ytr = pre.transform(table.X.iloc[split.train]), y[split.train]
    Xva, yva = pre.transform(table.X.iloc[split.val]), y[split.val]
    w = None
    if recipe.noisy_rows and noisy is not None and len(noisy):
        if recipe.noisy_rows == "drop":
            keep = np.setdiff1d(np.arange(len(ytr)), noisy)
            Xtr, ytr = Xtr[keep], ytr[keep]
        else:  # down-weight: flagged rows count a quarter of a clean row
            w = np.ones(len(ytr), dtype=np.float32)
            w[noisy] = 0.25
    if recipe.resample and table.task == "classification":
        from search_spaces.resampling import resample

        Xtr, ytr, w = resample(recipe.resample, Xtr, ytr, w, seed=recipe.seed)
    y_mean, y_std = 0.0, 1.0
    if table.task == "regression":
        y_mean, y_std = float(ytr.mean()), float(ytr.std() or 1.0)
        ytr = (ytr - y_mean) / y_std
        yva = (yva - y_mean) / y_std
    n_out = len(table.classes) if table.task == "classification" else 1
    cw = None
    if recipe.class_weight and table.task == "classification":
        counts = np.bincount(ytr, minlength=n_out).astype(np.float64)
        cw = torch.tensor(len(ytr) / (n_out * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    ydt = torch.long if table.task == "classification" else torch.float32

    def t(a, dt=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

    return Prepared(pre, t(Xtr), t(ytr, ydt), t(Xva), t(yva, ydt),
                    None if w is None else t(w), table.task, n_out, y_mean, y_std, cw)
