"""Expected calibration error, reliability bins and temperature scaling."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reliability_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Equal-width bins of top-class confidence: count, mean confidence, observed accuracy."""
    conf = proba.max(1)
    correct = (proba.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            bins.append({"lo": float(lo), "hi": float(hi), "count": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
    return bins


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE (Guo et al. 2017): the count-weighted mean |accuracy − confidence| over bins."""
    bins = reliability_bins(proba, y, n_bins)
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / max(n, 1))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, steps: int = 200) -> float:
    """The temperature T > 0 that minimises the validation NLL of softmax(logits / T)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps)
    logits, y = logits.detach().float(), y.detach()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().clamp(0.05, 20.0))
