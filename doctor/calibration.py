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
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def nll(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (cross-entropy) of softmax(logits / temperature)."""
    logits = torch.nan_to_num(logits.detach().float())
    return float(F.cross_entropy(logits / temperature, y.detach().long()))


#: Relative drop of the validation NLL a temperature must bring to be shipped: on a hundred or
#: so validation rows smaller gains are within noise and can worsen calibration on new rows.
MIN_NLL_GAIN = 0.02


def temperature_scaling(val_logits: torch.Tensor, val_y: torch.Tensor, *,
                        min_gain: float = MIN_NLL_GAIN) -> dict:
    """Fit a temperature on validation rows (Guo et al. 2017) and say whether it helps.

    Returns ``{"temperature", "val_nll_before", "val_nll_after", "improves"}``; `improves` is
    True when scaling lowers the validation NLL by at least `min_gain` (relative), i.e. the
    temperature is worth shipping. Scaling all logits by one number never changes a predicted
    class, so accuracy is untouched.
    """
    logits, y = val_logits.detach().float().cpu(), val_y.detach().long().cpu()
    finite = torch.isfinite(logits).all(1)
    logits, y = logits[finite], y[finite]
    if len(y) == 0:
        return {"temperature": 1.0, "val_nll_before": None, "val_nll_after": None,
                "improves": False}
    t = fit_temperature(logits, y)
    before, after = nll(logits, y), nll(logits, y, t)
    improves = bool(np.isfinite(after) and after <= before * (1 - min_gain))
    return {"temperature": float(t), "val_nll_before": before, "val_nll_after": after,
            "improves": improves}
