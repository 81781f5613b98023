"""Which original CSV columns the trained network relies on: Integrated Gradients, cross-checked.

`explain()` attributes the model's *logits* (never softmax outputs; captum#91) with Captum's
Integrated Gradients (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365) and, as an
independent check, with Feature Ablation over the same column groups. Attributions of the
model inputs fold back to the original columns (`groups[i]` is the column of input `i`, so
the one-hot inputs of a categorical column count as one), then

    global importance of a column = mean over rows of |sum of that column's attributions|,

normalised to sum to 1. With a zero baseline, the inactive one-hot inputs of a row carry no
attribution, so this equals the mean |attribution| summed over the column's inputs.

A third, model-agnostic view comes from scikit-learn's `permutation_importance` (Breiman
2001): how much the loss grows when one original column is shuffled across rows (a
categorical column's one-hot inputs move together). Its ranking is compared with integrated
gradients' (Spearman), and a disagreement is said in words.

The result is a plain JSON-able dict (the `explanations` key of report.json); the report only
renders it. Captum is imported inside the function so `import doctor` stays fast.
"""
from __future__ import annotations

import warnings
from typing import Any
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

#: Below this Spearman rank correlation the two methods are said to disagree.
DISAGREE_BELOW = 0.5
#: Integrated Gradients' Riemann/Gauss-Legendre steps (Captum's default).
N_STEPS = 50
#: How many individual rows the record explains, and how many columns per row.
N_ROWS = 5
TOP_COLUMNS = 5
#: Interpolated rows per Integrated Gradients forward pass: bounds memory for wide networks.
IG_CHUNK = 12_500


def explain(model: nn.Module, X: Any, *, feature_names: Sequence[str] | None = None,
            groups: Sequence[str] | None = None, task: str = "classification", n_classes: int = 0,
            class_names: Sequence[str] | None = None, background: Any = None,
            max_rows: int = 500, seed: int = 0, y: Any = None,
            row_ids: Sequence[Any] | None = None,
            permutation: bool = True) -> dict[str, Any]:
    """Explain a trained network on held-out rows, per original column.

    Args:
        model: any `nn.Module` mapping a float tensor (batch, n_features) to logits
            (batch, n_classes) or (batch, 1) for regression; it must live on X's device.
        X: preprocessed held-out rows (the model's inputs): a tensor, an array or a
            DataFrame of numbers.
        feature_names: the name of each model input (e.g. ``"colour=red"``); default: the
            DataFrame's columns, else ``x0, x1, …``.
        groups: the original CSV column of each model input; one-hot inputs share one;
            default: every input is its own column.
        task: "classification" or "regression".
        n_classes: number of classes (classification).
        class_names: labels of the classes, in class-index order.
        background: training rows; when given, the baseline is their mean instead of zeros.
        max_rows: explain at most this many rows (a seeded random subset).
        seed: seeds the row subset.
        y: optional true targets of X (class indices, or values in the model's output units).
        row_ids: optional identifiers of X's rows (e.g. their CSV row numbers) reported as each
            explained row's `index`; default: the position in X.
        permutation: also compute scikit-learn's permutation importance per column and its
            agreement with integrated gradients (against `y`, or the model's own predictions
            when `y` is not given).

    Returns:
        The record described in the module docstring; see `_record` for its keys.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> rec = explain(net, torch.randn(40, 3), feature_names=["a", "b", "c"],
        ...               groups=["a", "b", "c"], task="classification", n_classes=2)
        >>> sorted(rec["global_importance"]) == ["a", "b", "c"]
        True
    """
    from captum.attr import FeatureAblation
    from captum.attr import IntegratedGradients

    if isinstance(X, pd.DataFrame):
        if feature_names is None:
            feature_names = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=np.float32)
    if feature_names is None:
        n_in = int(np.shape(X)[1]) if len(np.shape(X)) == 2 else 0
        feature_names = [f"x{i}" for i in range(n_in)]
    feature_names = [str(f) for f in feature_names]
    groups = list(feature_names) if groups is None else [str(g) for g in groups]
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if len(groups) != len(feature_names):
        raise ValueError(f"groups has {len(groups)} entries but feature_names has "
                         f"{len(feature_names)}; give one original column per model input")
    if not isinstance(X, torch.Tensor):
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        X = torch.as_tensor(np.array(X, dtype=np.float32), device=device)
    X = X.detach().clone().float()  # a plain tensor even from inference mode
    if X.dim() != 2 or X.shape[1] != len(groups):
        raise ValueError(f"X must have shape (rows, {len(groups)}), got {tuple(X.shape)}")
    columns = list(dict.fromkeys(groups))  # original columns, first-seen order
    y_np = None if y is None else np.asarray(torch.as_tensor(y).detach().cpu()).reshape(-1)
    index = _subset(len(X), max_rows, seed)
    ids = np.asarray(row_ids, dtype=object) if row_ids is not None else np.arange(len(X))
    if len(ids) != len(X):
        raise ValueError(f"row_ids has {len(ids)} entries but X has {len(X)} rows")
    X = X[torch.as_tensor(index, device=X.device)]
    if y_np is not None:
        y_np = y_np[index]
    if len(X) == 0 or not columns:
        return _empty(columns, task)
    mask = torch.as_tensor([columns.index(g) for g in groups], device=X.device)
    if background is not None and len(background):
        base = torch.as_tensor(background).detach().float().to(X.device).mean(0, keepdim=True)
        baseline_text = ("the mean of the background (training) rows; one-hot inputs sit at "
                         "their category shares")
    else:
        base = torch.zeros(1, X.shape[1], device=X.device)
        baseline_text = ("zeros: the training mean of every standardised numeric feature, and "
                         "no category for one-hot columns")
    baselines = base.expand_as(X).contiguous()

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out.reshape(len(x), -1)

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's per-call UserWarnings (requires_grad, hooks)
            with torch.no_grad():
                out = forward(X)
                out_base = forward(baselines)
            target = out.argmax(1) if task == "classification" else torch.zeros(
                len(X), dtype=torch.long, device=X.device)
            ig, delta = IntegratedGradients(forward).attribute(
                X, baselines=baselines, target=target, n_steps=N_STEPS,
                internal_batch_size=max(N_STEPS, IG_CHUNK), return_convergence_delta=True)
            fa = FeatureAblation(forward).attribute(
                X, baselines=baselines, target=target, feature_mask=mask.unsqueeze(0),
                perturbations_per_eval=max(1, min(len(columns), 32, 20000 // max(len(X), 1))))
    finally:
        model.train(was_training)
    out_np, tgt = out.detach().cpu().double().numpy(), target.cpu().numpy()
    rows = np.arange(len(X))
    gap = out_np[rows, tgt] - out_base.detach().cpu().double().numpy()[rows, tgt]
    ig_cols = _fold(ig.detach().cpu().numpy(), mask.cpu().numpy(), len(columns))
    first = [groups.index(c) for c in columns]  # ablation repeats a group's value on each input
    fa_cols = np.nan_to_num(fa.detach().cpu().numpy()[:, first].astype(np.float64))
    rec = _record(
        columns=columns, task=task, n_classes=n_classes, class_names=class_names,
        baseline_text=baseline_text, ig_cols=ig_cols, fa_cols=fa_cols,
        delta=delta.detach().cpu().double().numpy(), gap=gap, out=out_np,
        index=ids[index], y=y_np)
    if permutation:
        try:
            perm = permutation_record(model, X, mask.cpu().numpy(), columns, task, out_np, y_np,
                                      seed=seed)
        except Exception as e:  # an extra view: never worth losing the explanation
            perm = {"method": "permutation_importance", "error": f"{type(e).__name__}: {e}"}
        perm["rank_correlation_with_ig"] = spearman(rec["global_importance"],
                                                    perm.get("global_importance") or {})
        if not perm.get("error"):
            perm["comparison"] = compare(rec["global_importance"], perm["global_importance"])
        rec["permutation"] = perm
        rec["agreement"] += " " + _permutation_agreement(rec["global_importance"], perm)
    return rec


#: Shuffles per column for permutation importance (scikit-learn's default).
N_REPEATS = 5


class _TorchPredictor:
    """A minimal scikit-learn-style estimator over a torch network, for permutation_importance.

    Its X holds one *row index* per original column: column j of a row says which row's values
    the inputs of column j take. Shuffling that column (what permutation_importance does)
    therefore moves all one-hot inputs of a categorical column together.
    """

    def __init__(self, forward, X: torch.Tensor, mask: np.ndarray) -> None:
        self.forward, self.X = forward, X
        self.mask = torch.as_tensor(mask, device=X.device)

    def fit(self, X, y=None) -> _TorchPredictor:  # already trained; sklearn asks for fit
        return self

    def logits(self, idx: np.ndarray) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.X.device)
        rows = idx[:, self.mask]  # (n, inputs): the source row of each input
        x = torch.gather(self.X, 0, rows)
        with torch.no_grad():
            return self.forward(x).double()


def _neg_loss(task: str):
    def score(est: _TorchPredictor, idx: np.ndarray, y: np.ndarray) -> float:
        out = est.logits(idx)
        target = torch.as_tensor(y, device=out.device)
        if task == "classification":
            loss = torch.nn.functional.cross_entropy(out, target.long())
        else:
            loss = torch.nn.functional.mse_loss(out[:, 0], target.double())
        return -float(torch.nan_to_num(loss, nan=1e6, posinf=1e6))
    return score


def permutation_record(model: nn.Module, X: torch.Tensor, mask: np.ndarray, columns: list[str],
                       task: str, out: np.ndarray, y: np.ndarray | None, *,
                       seed: int = 0) -> dict[str, Any]:
    """scikit-learn's permutation importance of each original column on the explained rows."""
    from sklearn.inspection import permutation_importance

    if y is None:  # no labels: how much the model's own predictions depend on each column
        target = out.argmax(1) if task == "classification" else out[:, 0]
        against = "the model's own predictions (no labels were given)"
    else:
        target = y.astype(int) if task == "classification" else y.astype(float)
        against = "the true labels" if task == "classification" else "the true values"
    was = model.training
    model.eval()
    try:
        est = _TorchPredictor(lambda x: model(x).reshape(len(x), -1), X, mask)
        idx = np.tile(np.arange(len(X))[:, None], (1, len(columns)))
        res = permutation_importance(est, idx, target, scoring=_neg_loss(task),
                                     n_repeats=N_REPEATS, random_state=seed)
    finally:
        model.train(was)
    mean, std = np.nan_to_num(res.importances_mean), np.nan_to_num(res.importances_std)
    shares = np.clip(mean, 0, None)
    order = sorted(range(len(columns)), key=lambda i: (-mean[i], i))
    total = shares.sum()
    return {
        "method": "permutation_importance",
        "scoring": ("increase in cross-entropy (log loss)" if task == "classification"
                    else "increase in mean squared error (standardised target)"),
        "against": against,
        "n_repeats": N_REPEATS,
        "global_importance": {columns[i]: float(shares[i] / total) if total > 0 else 0.0
                              for i in order},
        "loss_increase": {columns[i]: float(mean[i]) for i in order},
        "loss_increase_std": {columns[i]: float(std[i]) for i in order},
    }


def _permutation_agreement(ig: dict[str, float], perm: dict[str, Any]) -> str:
    if perm.get("error"):
        return f"Permutation importance could not be computed ({perm['error']})."
    cmp = perm.get("comparison") or compare(ig, perm.get("global_importance") or {})
    return _agree_text("integrated gradients", "permutation importance (scikit-learn)", ig,
                       perm.get("global_importance") or {}, cmp)


# ----------------------------------------------------------------------------- helpers
def _subset(n: int, max_rows: int, seed: int) -> np.ndarray:
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _fold(attr: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    """(rows, inputs) → (rows, columns): the signed sum of each column's inputs."""
    out = np.zeros((attr.shape[0], n_groups))
    np.add.at(out.T, mask, np.nan_to_num(attr.astype(np.float64)).T)
    return out


def _importance(cols: np.ndarray, names: list[str]) -> dict[str, float]:
    """Mean |attribution| per column, normalised to sum 1, sorted descending."""
    if len(cols) == 0:
        return {n: 0.0 for n in names}
    m = np.abs(cols).mean(0)
    total = m.sum()
    m = m / total if total > 0 and np.isfinite(total) else np.zeros_like(m)
    order = sorted(range(len(names)), key=lambda i: (-m[i], i))
    return {names[i]: float(m[i]) for i in order}


def spearman(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Spearman rank correlation of two importance dicts over their shared keys (ties averaged)."""
    keys = [k for k in a if k in b]
    if len(keys) < 2:
        return None
    ra = pd.Series([a[k] for k in keys]).rank().to_numpy()
    rb = pd.Series([b[k] for k in keys]).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _label(task: str, value: Any, class_names: Sequence[str] | None) -> Any:
    if task == "classification":
        i = int(value)
        return str(class_names[i]) if class_names is not None and 0 <= i < len(class_names) else i
    return float(value)


def _explained_rows(out: np.ndarray, ig_cols: np.ndarray, columns: list[str], task: str,
                    class_names: Sequence[str] | None, index: np.ndarray,
                    y: np.ndarray | None) -> tuple[str, list[dict]]:
    """The most confident mistakes if any (else the most confident predictions), explained."""
    if task == "classification":
        z = out - out.max(1, keepdims=True)
        proba = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        pred, score = out.argmax(1), proba.max(1)
        wrong = (pred != y.astype(int)) if y is not None else np.zeros(len(out), bool)
    else:
        pred = out[:, 0]
        score = np.abs(pred - y.astype(float)) if y is not None else np.abs(pred)
        wrong = np.ones(len(out), bool) if y is not None else np.zeros(len(out), bool)
    pool = np.flatnonzero(wrong) if wrong.any() else np.arange(len(out))
    which = ("most confident mistakes" if task == "classification" and wrong.any() else
             "largest errors" if wrong.any() else
             "most confident predictions" if task == "classification" else "most extreme predictions")
    pick = pool[np.argsort(-np.nan_to_num(score[pool]), kind="stable")][:N_ROWS]
    rows = []
    for r in pick:
        top = np.argsort(-np.abs(ig_cols[r]), kind="stable")[:TOP_COLUMNS]
        rid = index[r]
        row = {"index": int(rid) if isinstance(rid, (int, np.integer)) else str(rid),
               "predicted": _label(task, pred[r], class_names)}
        if y is not None:
            row["true"] = _label(task, y[r], class_names)
        row["confidence" if task == "classification" else "score"] = float(score[r])
        row["attributions"] = {columns[j]: float(ig_cols[r, j]) for j in top}
        rows.append(row)
    return which, rows


#: A column "matters" to a method when its share reaches this fraction of an even split: the
#: rankings are compared over such columns, since the order of columns that all sit at ~0 is
#: noise for any method.
RELEVANT_SHARE = 0.5


def compare(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """How two importance rankings relate: Spearman over all columns and over those that matter.

    `disagree` is True when the rankings of the columns that matter to either method correlate
    below DISAGREE_BELOW, or (with fewer than two such columns) when the top columns differ.
    """
    keys = [k for k in a if k in b]
    floor = RELEVANT_SHARE / max(len(keys), 1)
    relevant = [k for k in keys if max(a[k], b[k]) >= floor]
    rho_all = spearman(a, b)
    rho_rel = spearman({k: a[k] for k in relevant}, {k: b[k] for k in relevant})
    top_a, top_b = next(iter(a), None), next(iter(b), None)
    if rho_rel is not None:
        disagree = rho_rel < DISAGREE_BELOW
    elif len(relevant) >= 2:  # no variation among them in one method: judge by the top column
        disagree = top_a != top_b
    else:
        disagree = top_a != top_b and len(relevant) == 1 and relevant[0] != top_a
    return {"rank_correlation": rho_all, "rank_correlation_relevant": rho_rel,
            "relevant_columns": relevant, "same_top": top_a == top_b, "disagree": bool(disagree)}


def _agree_text(name_a: str, name_b: str, a: dict[str, float], b: dict[str, float],
                cmp: dict[str, Any]) -> str:
    top_a, top_b = next(iter(a), None), next(iter(b), None)
    rho, rho_rel, n_rel = cmp["rank_correlation"], cmp["rank_correlation_relevant"], \
        len(cmp["relevant_columns"])
    nums = []
    if rho_rel is not None:
        nums.append(f"Spearman rank correlation {rho_rel:.2f} over the {n_rel} columns that matter")
    elif n_rel == 1:
        nums.append(f"only '{cmp['relevant_columns'][0]}' carries a real share for either")
    if rho is not None and (rho_rel is None or abs(rho - rho_rel) > 1e-9):
        nums.append(f"Spearman {rho:.2f} over all columns, most of them near zero"
                    if rho_rel is None else f"{rho:.2f} over all columns")
    how = "; ".join(nums)
    if rho is None and rho_rel is None and not cmp["disagree"] and top_a is None:
        return (f"There are too few columns (or too little variation) to compare the rankings "
                f"of {name_a} and {name_b}.")
    if cmp["disagree"]:
        return (f"{name_a[:1].upper() + name_a[1:]} and {name_b} disagree"
                + (f" ({how})" if how else "")
                + f": {name_a} puts '{top_a}' first, {name_b} '{top_b}'. Treat these importances "
                "with caution: the model may rely on interactions or on correlated columns, or "
                "behave differently far from the baseline.")
    strong = rho_rel is not None and rho_rel >= 0.8 or (rho_rel is None and cmp["same_top"])
    tops = (f"both put '{top_a}' first" if cmp["same_top"] else
            f"{name_a} puts '{top_a}' first, {name_b} '{top_b}'")
    return (f"{name_a[:1].upper() + name_a[1:]} and {name_b} {'agree' if strong else 'broadly agree'}"
            + (f" ({how})" if how else "") + f"; {tops}.")


def _agreement(ig: dict[str, float], fa: dict[str, float], rho: float | None,
               rel_delta: float | None) -> str:
    """The sentence comparing integrated gradients with feature ablation (rho: over all columns)."""
    cmp = compare(ig, fa)
    if rho is None and cmp["rank_correlation_relevant"] is None and len(ig) < 2:
        text = ("There are too few columns (or too little variation) to compare the rankings "
                "of integrated gradients and feature ablation.")
    else:
        text = _agree_text("integrated gradients", "feature ablation", ig, fa, cmp)
    if rel_delta is not None and rel_delta > 0.05:
        text += (f" Integrated gradients' completeness check is loose (median relative "
                 f"convergence delta {rel_delta:.2f}), so its numbers are approximate.")
    return text


def _record(*, columns: list[str], task: str, n_classes: int, class_names: Sequence[str] | None,
            baseline_text: str, ig_cols: np.ndarray, fa_cols: np.ndarray, delta: np.ndarray,
            gap: np.ndarray, out: np.ndarray, index: np.ndarray, y: np.ndarray | None) -> dict:
    ig_imp, fa_imp = _importance(ig_cols, columns), _importance(fa_cols, columns)
    rho = spearman(ig_imp, fa_imp)
    ok = np.isfinite(delta) & np.isfinite(gap) & (np.abs(gap) > 1e-6)
    rel = float(np.median(np.abs(delta[ok]) / np.abs(gap[ok]))) if ok.any() else None
    which, rows = _explained_rows(out, ig_cols, columns, task, class_names, index, y)
    rec: dict[str, Any] = {
        "method": "integrated_gradients",
        "baseline": baseline_text,
        "target": ("the logit of the predicted class" if task == "classification"
                   else "the model output (regression)"),
        "n_rows": int(len(out)),
        "n_steps": N_STEPS,
        "global_importance": ig_imp,
        "convergence_delta": rel,
        "convergence_delta_abs": float(np.median(np.abs(delta[np.isfinite(delta)])))
        if np.isfinite(delta).any() else None,
        "cross_check": {"method": "feature_ablation", "global_importance": fa_imp,
                        **compare(ig_imp, fa_imp)},
        "rows_selection": which,
        "rows": rows,
        "agreement": _agreement(ig_imp, fa_imp, rho, rel),
    }
    if task == "classification":
        pred = out.argmax(1)
        k = max(int(n_classes), int(pred.max()) + 1 if len(pred) else 0)
        rec["per_class"] = {str(_label(task, c, class_names)): _importance(ig_cols[pred == c], columns)
                            for c in range(k) if (pred == c).any()}
    return rec


def _empty(columns: list[str], task: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"method": "integrated_gradients", "baseline": "none: nothing to explain",
           "global_importance": {c: 0.0 for c in columns}, "convergence_delta": None,
           "cross_check": {"method": "feature_ablation",
                           "global_importance": {c: 0.0 for c in columns}, "rank_correlation": None},
           "rows": [], "agreement": "There were no rows or no columns to explain."}
    if task == "classification":
        rec["per_class"] = {}
    return rec
