"""Scores: the validation objective (fast, in torch) and the reported metrics (scikit-learn)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm


def score_tensor(out: torch.Tensor, y: torch.Tensor, task: str) -> float:
    """Balanced accuracy (classification) or R² (regression), computed on the device.

    Balanced accuracy is the objective for every classification problem: it equals accuracy
    on balanced classes and does not reward ignoring a rare class on imbalanced ones.
    """
    if task == "classification":
        pred = torch.nan_to_num(out).argmax(1)
        n = out.shape[1]
        support = torch.bincount(y, minlength=n).float()
        hit = torch.bincount(y[pred == y], minlength=n).float()
        present = support > 0
        return float((hit[present] / support[present]).mean())
    pred = out.reshape(-1)
    if not torch.isfinite(pred).all():
        return float("-inf")
    ss_res = ((y - pred) ** 2).sum()
    ss_tot = ((y - y.mean()) ** 2).sum().clamp_min(1e-12)
    return float(1 - ss_res / ss_tot)


def chance_score(task: str, n_classes: int = 0) -> float:
    """The objective of a model that knows nothing: balanced accuracy 1/k, R² 0."""
    return 1.0 / n_classes if task == "classification" else 0.0


def report_metrics(y_true: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, task: str,
                   n_classes: int = 0) -> dict[str, float]:
    """The contract's metrics on held-out rows, with scikit-learn as the reference."""
    if task == "classification":
        out = {"balanced_accuracy": float(skm.balanced_accuracy_score(y_true, pred)),
               "accuracy": float(skm.accuracy_score(y_true, pred)),
               "macro_f1": float(skm.f1_score(y_true, pred, average="macro", zero_division=0))}
        if proba is not None and np.isfinite(proba).all():
            out["log_loss"] = float(skm.log_loss(y_true, np.clip(proba, 1e-7, 1),
                                                 labels=list(range(n_classes))))
        return out
    if not np.isfinite(pred).all():
        return {"r2": float("-inf"), "rmse": float("inf"), "mae": float("inf")}
    return {"r2": float(skm.r2_score(y_true, pred)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, pred))),
            "mae": float(skm.mean_absolute_error(y_true, pred))}
