"""Fault-injection benchmark of the diagnosis (issue #3): does `diagnose_table` name what was planted?

    python benchmarks/diagnosis.py [--quick] [--only NAME,...] [--json OUT] [--no-memory]

The suite is built here, in code, from data that ships with scikit-learn or is generated:

* every one of the 21 contract symptoms is injected in at least two different ways, on more
  than one dataset, mostly at two strengths (label noise 10 % / 25 %, missing cells 5 % / 30 %,
  imbalance 1:8 / 1:30, …);
* healthy controls: real tables (breast cancer and wine standardised, digits, iris, diabetes)
  and synthetic ones (moons, make_classification, make_regression) with healthy recipes (the
  doctor's default recipe as `doctor.api.make_case` builds it, and Adam 1e-3 with fixed epochs).

Ground truth is measured when a scenario is made, never assumed:

* data faults record the planted quantity (share of flipped labels, of missing cells, of
  duplicate rows, the spread ratio, …); limited data is measured: the same plain MLP with twice
  the rows from the same generator must score clearly better on fresh rows;
* every scenario's recipe is also trained once by `plain_train` below, a plain torch loop
  written here, independent of `doctor.trainer`, which records the classic indicators: the
  first/last-layer gradient-norm ratio early in training (AUTOTRAINER's beta_1/beta_3), the
  largest gradient norm, non-finite losses, the share of dead ReLU units and of saturated
  tanh/sigmoid outputs, train/validation losses and scores per epoch. A training fault whose
  indicator does not show the fault is reported as "injection failed" and left out of the
  scores; so is a healthy control whose indicators show a fault;
* model faults (adversarial vulnerability, calibration) measure their own PGD robust accuracy
  and expected calibration error here.

Each scenario names `must` (the injected symptom) and `may` (symptoms the injection
legitimately brings with it; each `may` says why). Counting: a hit when `must` is found, a miss
when not. A symptom found outside must ∪ may is a false alarm, unless the plain loop's own
indicator measures that symptom on the same recipe too: then the ground truth, measured as
everywhere else, says it is there, and it is a measured co-symptom (printed `+id+`, counted
apart; the summary also prints the precision with them counted as false alarms). Misses print
what the check measured (the check re-run with its thresholds relaxed), false alarms and
co-symptoms their evidence.

Printed: one line per scenario, per-symptom precision and recall, overall precision and recall,
false alarms on the healthy controls, the diagnosis time as a ratio to plainly training the same
recipe (median over the suite, both timed side by side in one process), and the peak memory of
the data profile on a 100,000 × 50 table against one float64 copy of it.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch import nn  # noqa: E402

from doctor.api import configure_torch  # noqa: E402
from doctor.checks import Evidence  # noqa: E402
from doctor.checks import SYMPTOMS  # noqa: E402
from doctor.data import from_frame  # noqa: E402
from doctor.data import split as split_table  # noqa: E402
from doctor.models import MLPSpec  # noqa: E402
from doctor.recipe import Recipe  # noqa: E402
from doctor.recipe import default_budget  # noqa: E402

SEED = 0
PROBE_ROWS = 512

# ============================================================================ datasets
# Every dataset is a DataFrame of features f0..fk plus a "target" column, and its task.


def _frame(X: np.ndarray, y: np.ndarray, prefix: str = "f") -> pd.DataFrame:
    df = pd.DataFrame(np.asarray(X, dtype=float), columns=[f"{prefix}{i}" for i in range(X.shape[1])])
    df["target"] = y
    return df


def _std(X: np.ndarray) -> np.ndarray:
    return StandardScaler().fit_transform(X)


def breast_cancer(standardised: bool = True) -> tuple[pd.DataFrame, str]:
    d = datasets.load_breast_cancer()
    return _frame(_std(d.data) if standardised else d.data, d.target), "classification"


def wine(standardised: bool = True) -> tuple[pd.DataFrame, str]:
    d = datasets.load_wine()
    return _frame(_std(d.data) if standardised else d.data, d.target), "classification"


def digits() -> tuple[pd.DataFrame, str]:
    """8×8 digits (0–16 per pixel) without the pixels that are 0 in every image: those are
    constant columns, a real data fault that a healthy control must not carry."""
    d = datasets.load_digits()
    X = d.data[:, d.data.std(0) > 0]
    return _frame(X, d.target), "classification"


def iris() -> tuple[pd.DataFrame, str]:
    d = datasets.load_iris()
    return _frame(d.data, d.target), "classification"


def diabetes() -> tuple[pd.DataFrame, str]:
    d = datasets.load_diabetes()
    return _frame(d.data, d.target), "regression"


def moons(n: int = 1000, noise: float = 0.2, seed: int = SEED) -> tuple[pd.DataFrame, str]:
    X, y = datasets.make_moons(n, noise=noise, random_state=seed)
    return _frame(X, y), "classification"


def circles(n: int = 1000, seed: int = SEED) -> tuple[pd.DataFrame, str]:
    X, y = datasets.make_circles(n, noise=0.08, factor=0.5, random_state=seed)
    return _frame(X, y), "classification"


def classification(n: int = 2000, d: int = 10, informative: int = 5, classes: int = 2,
                   sep: float = 1.5, weights=None, redundant: int = 0,
                   seed: int = SEED) -> tuple[pd.DataFrame, str]:
    X, y = datasets.make_classification(n, d, n_informative=informative, n_redundant=redundant,
                                        n_classes=classes, class_sep=sep, flip_y=0.0,
                                        weights=weights, random_state=seed)
    return _frame(X, y), "classification"


def regression(n: int = 1000, d: int = 8, noise: float = 10.0, seed: int = SEED) -> tuple[pd.DataFrame, str]:
    X, y = datasets.make_regression(n, d, n_informative=min(d, 6), noise=noise, random_state=seed)
    return _frame(X, y), "regression"


def friedman(n: int = 1000, noise: float = 1.0, seed: int = SEED) -> tuple[pd.DataFrame, str]:
    X, y = datasets.make_friedman1(n, 8, noise=noise, random_state=seed)
    return _frame(X, y), "regression"


# ============================================================================ networks
# Factories f(n_features, n_outputs) -> nn.Module with the injected architecture or init.


def relu_mlp(width: int = 64, depth: int = 2) -> Callable[[int, int], nn.Module]:
    def build(n_in: int, n_out: int) -> nn.Module:
        layers, w = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(w, width), nn.ReLU()]
            w = width
        return nn.Sequential(*layers, nn.Linear(w, n_out))
    build.__qualname__ = f"relu_mlp_{depth}x{width}"
    return build


def deep_net(act: type[nn.Module], depth: int, width: int, init_std: float | None = None,
             init_gain: float | None = None, bias: float | None = None,
             name: str = "deep") -> Callable[[int, int], nn.Module]:
    """`depth` hidden layers of `act`; weights N(0, init_std) or kaiming-normal × init_gain;
    hidden biases set to `bias` when given."""
    def build(n_in: int, n_out: int) -> nn.Module:
        layers, w = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(w, width), act()]
            w = width
        net = nn.Sequential(*layers, nn.Linear(w, n_out))
        lin = [m for m in net.modules() if isinstance(m, nn.Linear)]
        for i, m in enumerate(lin):
            if init_std is not None:
                nn.init.normal_(m.weight, std=init_std)
                nn.init.zeros_(m.bias)
            elif init_gain is not None:
                nn.init.normal_(m.weight, std=init_gain * math.sqrt(2.0 / m.in_features))
                nn.init.zeros_(m.bias)
            if bias is not None and i < len(lin) - 1:
                nn.init.constant_(m.bias, bias)
        return net
    build.__qualname__ = name
    return build


class Rescale(nn.Module):
    """Multiplies by a constant: a stray unit conversion left between layers."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * x


def rescaled_mlp(k: float) -> Callable[[int, int], nn.Module]:
    """3 ReLU layers of 64, each output multiplied by k: activations and gradients grow by k
    per layer."""
    def build(n_in: int, n_out: int) -> nn.Module:
        layers, w = [], n_in
        for _ in range(3):
            layers += [nn.Linear(w, 64), nn.ReLU(), Rescale(k)]
            w = 64
        return nn.Sequential(*layers, nn.Linear(w, n_out))
    build.__qualname__ = f"relu3_rescale{k:g}"
    return build


def linear_model(n_in: int, n_out: int) -> nn.Module:
    return nn.Linear(n_in, n_out)


class OffManifold(nn.Module):
    """A network plus a steep term along a direction the data never vary in.

    On clean rows the term is zero (so clean predictions are the inner network's); a small
    perturbation along `direction` moves the logits by `slope` per unit and flips classes.
    """

    def __init__(self, inner: nn.Module, direction: torch.Tensor, slope: float, n_out: int) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("direction", direction.float())
        signs = torch.ones(n_out)
        signs[::2] = -1.0
        self.register_buffer("signs", signs)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = (x @ self.direction).unsqueeze(1)
        return self.inner(x) + self.slope * off * self.signs


class Tempered(nn.Module):
    """Logits multiplied by `factor`: > 1 overconfident, < 1 underconfident; same argmax."""

    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.inner(x)


# ============================================================================ the plain loop
@dataclass
class Plain:
    """What the independent torch loop measured."""

    seconds: float = 0.0
    epochs_run: int = 0
    nonfinite: bool = False
    first_loss: float = math.nan
    max_loss: float = math.nan
    min_loss: float = math.nan
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_score: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    best_epoch: int = -1
    final_val_score: float = math.nan
    final_train_score: float = math.nan
    first_last_grad: float = math.nan  # median over the first 20 % of steps
    first_grad: float = math.nan  # median ||g_1|| over the first 20 % of steps
    max_grad: float = math.nan
    max_grad_to_weight: float = math.nan
    dead_share: float = 0.0  # largest share of dead units in a ReLU layer, at the end
    saturated_share: float = 0.0  # largest share of saturated outputs in a tanh/sigmoid layer
    accuracy_swings: int = 0  # AUTOTRAINER's oscillation count on the train score curve

    def summary(self) -> dict[str, Any]:
        def r(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else \
                (round(x, 4) if isinstance(x, float) else x)
        return {"epochs": self.epochs_run, "nonfinite_loss": self.nonfinite,
                "loss_first/min/max": [r(self.first_loss), r(self.min_loss), r(self.max_loss)],
                "train_score": r(self.final_train_score), "val_score": r(self.final_val_score),
                "first/last_grad": r(self.first_last_grad), "first_grad": r(self.first_grad),
                "max_grad": r(self.max_grad), "max_grad/weight": r(self.max_grad_to_weight),
                "dead_share": r(self.dead_share), "saturated_share": r(self.saturated_share),
                "acc_swings": self.accuracy_swings, "best_epoch": self.best_epoch,
                "train_loss_end": r(self.train_loss[-1]) if self.train_loss else None,
                "val_loss_min/end": [r(min(self.val_loss)) if self.val_loss else None,
                                     r(self.val_loss[-1]) if self.val_loss else None]}


def plain_tensors(table, sp) -> dict[str, Any]:
    """Median imputation, standardisation and one-hot encoding fitted on the training rows;
    regression targets standardised. Written here, independent of `doctor.preprocess`."""
    X = table.X
    tr = np.asarray(sp.train)
    parts_tr, parts_va = [], []
    for c in X.columns:
        if c in table.numeric:
            col = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float64)
            med = np.nanmedian(col[tr]) if np.isfinite(col[tr]).any() else 0.0
            col = np.where(np.isfinite(col), col, med)
            mu, sd = col[tr].mean(), col[tr].std()
            col = (col - mu) / (sd if sd > 1e-12 else 1.0)
            parts_tr.append(col[tr, None])
            parts_va.append(col[np.asarray(sp.val), None])
        else:
            v = X[c].astype(object).where(X[c].notna(), "(missing)").astype(str).to_numpy()
            cats = sorted(set(v[tr]))
            oh = (v[:, None] == np.array(cats, dtype=object)[None, :]).astype(np.float64)
            parts_tr.append(oh[tr])
            parts_va.append(oh[np.asarray(sp.val)])
    Xtr = np.hstack(parts_tr).astype(np.float32)
    Xva = np.hstack(parts_va).astype(np.float32)
    if table.task == "classification":
        lookup = {c: i for i, c in enumerate(table.classes)}
        y = np.array([lookup[v] for v in table.y], dtype=np.int64)
        ytr, yva = torch.as_tensor(y[tr]), torch.as_tensor(y[np.asarray(sp.val)])
        n_out = len(table.classes)
    else:
        y = table.y.to_numpy(dtype=np.float64)
        mu, sd = y[tr].mean(), y[tr].std() or 1.0
        ytr = torch.as_tensor(((y[tr] - mu) / sd).astype(np.float32))
        yva = torch.as_tensor(((y[np.asarray(sp.val)] - mu) / sd).astype(np.float32))
        n_out = 1
    return {"X_train": torch.as_tensor(Xtr), "y_train": ytr, "X_val": torch.as_tensor(Xva),
            "y_val": yva, "task": table.task, "n_out": n_out}


def plain_model(recipe: Recipe, n_in: int, n_out: int) -> nn.Module:
    m = recipe.model
    if isinstance(m, MLPSpec):
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
                "elu": nn.ELU, "selu": nn.SELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}
        layers, w = [], n_in
        for h in m.hidden:
            layers += [nn.Linear(w, h), acts[m.activation]()]
            w = h
        return nn.Sequential(*layers, nn.Linear(w, n_out))
    return m(n_in, n_out)


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.reshape(-1), y)


def _score(out: torch.Tensor, y: torch.Tensor, task: str) -> float:
    """Balanced accuracy or R²; written here (numpy), not `doctor.metrics`."""
    o = out.detach().float().cpu().numpy()
    t = y.cpu().numpy()
    if task == "classification":
        if not np.isfinite(o).all():
            o = np.nan_to_num(o)
        pred = o.argmax(1)
        recalls = [(pred[t == k] == k).mean() for k in np.unique(t)]
        return float(np.mean(recalls))
    o = o.reshape(-1)
    if not np.isfinite(o).all():
        return -math.inf
    return float(1 - ((t - o) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12))


def _optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    kw = {"lr": recipe.lr, "weight_decay": recipe.weight_decay}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=recipe.momentum, **kw)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.RMSprop(params, momentum=recipe.momentum, **kw)


def _unit_shares(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(largest dead-unit share over ReLU layers, largest saturated-output share over
    tanh/sigmoid layers) on x."""
    got: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: got.append((mod, o.detach())))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid))]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(x)
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    dead, sat = 0.0, 0.0
    for mod, o in got:
        if isinstance(mod, nn.ReLU):
            dead = max(dead, float((o <= 0).all(0).float().mean()))
        elif isinstance(mod, nn.Tanh):
            sat = max(sat, float((o.abs() > 0.99).float().mean()))
        else:
            sat = max(sat, float(((o < 0.01) | (o > 0.99)).float().mean()))
    return dead, sat


def _swings(curve: list[float], amplitude: float = 0.03) -> int:
    """AUTOTRAINER's oscillation count: local maxima and minima of the curve paired in order,
    pairs whose gap is at least `amplitude`."""
    a = np.asarray(curve, dtype=float)
    if len(a) < 3:
        return 0
    mx = [a[i] for i in range(1, len(a) - 1) if a[i] >= a[i - 1] and a[i] >= a[i + 1]]
    mn = [a[i] for i in range(1, len(a) - 1) if a[i] <= a[i - 1] and a[i] <= a[i + 1]]
    return int(sum(1 for M, m in zip(mx, mn) if M - m >= amplitude))


def plain_train(recipe: Recipe, tensors: dict[str, Any], *, instrument: bool = True) -> Plain:
    """Train `recipe` with a plain loop: same rows, optimiser, lr, epochs, batch size, seed and
    early stopping (patience, best weights restored) as the recipe says. With `instrument`,
    record the classic indicators; without, only what the loop itself needs (for timing)."""
    X, y, Xv, yv = tensors["X_train"], tensors["y_train"], tensors["X_val"], tensors["y_val"]
    task = tensors["task"]
    torch.manual_seed(recipe.seed)
    model = plain_model(recipe, X.shape[1], tensors["n_out"])
    opt = _optimizer(recipe, model.parameters())
    n, bs = len(X), min(int(recipe.batch_size), len(X))
    gen = torch.Generator().manual_seed(recipe.seed)
    probe = torch.randperm(n, generator=gen)[:PROBE_ROWS]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    res = Plain()
    grads: list[list[float]] = []
    ratios: list[float] = []
    best = (math.inf, None, -1)
    started = time.perf_counter()
    losses_seen: list[float] = []
    for epoch in range(recipe.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, stop = 0.0, False
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if len(idx) < 2:
                continue
            loss = _loss(model(X[idx]), y[idx], task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            value = float(loss.detach())
            if instrument:
                g = [float(m.weight.grad.norm()) if m.weight.grad is not None else 0.0 for m in linears]
                w = [float(m.weight.norm()) for m in linears]
                grads.append(g)
                if all(math.isfinite(v) for v in g):
                    ratios.append(max(gi / max(wi, 1e-12) for gi, wi in zip(g, w)))
                losses_seen.append(value)
            if not math.isfinite(value):
                res.nonfinite, stop = True, True
                break
            opt.step()
            total += value * len(idx)
        if stop:
            break
        model.eval()
        with torch.no_grad():
            vo = model(Xv)
            vl = float(_loss(vo, yv, task))
            res.val_loss.append(vl)
            res.train_loss.append(total / n)
            if instrument:
                res.val_score.append(_score(vo, yv, task))
                res.train_score.append(_score(model(X[probe]), y[probe], task))
        res.epochs_run = epoch + 1
        if recipe.early_stopping:
            if vl < best[0]:
                best = (vl, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
            elif epoch - best[2] >= recipe.early_stopping:
                break
    if best[1] is not None:
        model.load_state_dict(best[1])
        res.best_epoch = best[2]
    res.seconds = time.perf_counter() - started
    if not instrument:
        return res
    res.model = model  # type: ignore[attr-defined]
    model.eval()
    with torch.no_grad():
        res.final_val_score = _score(model(Xv), yv, task)
        res.final_train_score = _score(model(X[probe]), y[probe], task)
    fin = [v for v in losses_seen if math.isfinite(v)]
    if fin:
        res.first_loss, res.max_loss, res.min_loss = fin[0], max(fin), min(fin)
    if grads:
        g = np.array(grads, dtype=float)
        early = g[: max(1, len(g) // 5)]
        ok = np.isfinite(early).all(1)
        if ok.any():
            e = early[ok]
            res.first_last_grad = float(np.median(e[:, 0] / np.maximum(e[:, -1], 1e-30)))
            res.first_grad = float(np.median(e[:, 0]))
        fin_g = g[np.isfinite(g)]
        res.max_grad = float(fin_g.max()) if fin_g.size else math.inf
        if (~np.isfinite(g)).any():
            res.max_grad = math.inf
    res.max_grad_to_weight = max(ratios) if ratios else math.nan
    res.dead_share, res.saturated_share = _unit_shares(model, X[probe])
    res.accuracy_swings = _swings(res.train_score)
    return res


# ============================================================================ indicators
# Each returns (shows the fault, a short reading). `p` is the faulty run, `tw` the healthy twin
# (the doctor's default recipe trained by the same plain loop on the same table).
VANISH_RATIO = 1e-3  # AUTOTRAINER beta_1: ||g_first|| / ||g_last||
UPDATE_RATIO = 100.0  # DeepDiagnosis: lr·||g||/||W|| > 0.1 at lr 1e-3
DEAD_SHARE = 0.5  # SageMaker Debugger DeadRelu: over half of a layer
SATURATED_SHARE = 0.5  # DeepDiagnosis / SageMaker: over half of a layer's outputs
DIVERGE_GROWTH = 1e3  # three orders of magnitude above the first loss
POOR = 0.85  # share of the healthy twin's gain over chance


def _chance(task: str, n_out: int) -> float:
    return 1.0 / n_out if task == "classification" else 0.0


def attained(score: float, tw: Plain, task: str, n_out: int) -> float:
    c = _chance(task, n_out)
    if not math.isfinite(score):
        return -math.inf
    return (score - c) / max(tw.final_val_score - c, 1e-6)


def ind_vanishing(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    a = attained(p.final_val_score, tw, task, k)
    return (p.first_last_grad < VANISH_RATIO and a < POOR,
            f"first/last grad {p.first_last_grad:.2g}, attained {a:.2f}")


def ind_exploding(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    a = attained(p.final_val_score, tw, task, k)
    big = not math.isfinite(p.max_grad) or p.max_grad_to_weight > UPDATE_RATIO
    return big and a < POOR, f"max |g|/|W| {p.max_grad_to_weight:.3g}, max |g| {p.max_grad:.3g}, attained {a:.2f}"


def ind_dying(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    return p.dead_share >= DEAD_SHARE, f"dead units {p.dead_share:.0%}"


def ind_saturated(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    return p.saturated_share >= SATURATED_SHARE, f"saturated outputs {p.saturated_share:.0%}"


def ind_divergence(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    growth = p.max_loss / max(p.first_loss, 1e-12) if math.isfinite(p.first_loss) else math.nan
    return (p.nonfinite or growth >= DIVERGE_GROWTH,
            f"non-finite loss {p.nonfinite}, max/first loss {growth:.3g}")


def ind_oscillation(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    need = math.ceil(0.2 * max(p.epochs_run, 1))
    return (not p.nonfinite and p.accuracy_swings >= need,
            f"train-score swings ≥0.03: {p.accuracy_swings} in {p.epochs_run} epochs (need {need})")


def ind_slow(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    a = attained(p.final_val_score, tw, task, k)
    tl = p.train_loss
    if p.nonfinite or len(tl) < 3:
        return False, "no loss curve"
    drop = (tl[0] - tl[-1]) / max(abs(tl[0]), 1e-12)
    j = max(1, len(tl) // 3)
    tail = (tl[-j - 1] - tl[-1]) / max(abs(tl[-j - 1]), 1e-12)
    return (a < POOR and (drop < 0.2 or tail > 0.05),
            f"loss drop {drop:.0%} over {len(tl)} epochs, last third {tail:.0%}, attained {a:.2f}")


def ind_overfitting(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    gap = p.final_train_score - p.final_val_score
    need = 0.07 if p.final_train_score > 0.9 else 0.1  # AUTOTRAINER's gap rule
    vl, tl = p.val_loss, p.train_loss
    u = False
    if len(vl) >= 5 and all(math.isfinite(v) for v in vl):
        b = int(np.argmin(vl))
        u = vl[-1] > 1.25 * vl[b] and tl[-1] < 0.9 * tl[b] and len(vl) - 1 - b >= 3
    return gap >= need or u, (f"train−val score {gap:.3f}, val loss min {min(vl):.3g} → end {vl[-1]:.3g}"
                              if vl else "no curve")


def ind_underfitting(p: Plain, tw: Plain, task: str, k: int) -> tuple[bool, str]:
    a = attained(p.final_val_score, tw, task, k)
    at = attained(p.final_train_score, tw, task, k)
    return a < POOR and at < POOR + 0.05, f"attained val {a:.2f}, train {at:.2f} of the healthy twin"


INDICATORS: dict[str, Callable[[Plain, Plain, str, int], tuple[bool, str]]] = {
    "vanishing_gradient": ind_vanishing, "exploding_gradient": ind_exploding,
    "dying_relu": ind_dying, "saturated_activations": ind_saturated,
    "loss_divergence": ind_divergence, "loss_oscillation": ind_oscillation,
    "slow_convergence": ind_slow, "overfitting": ind_overfitting, "underfitting": ind_underfitting,
}


def ece(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error, equal-width bins of top-class confidence (Guo et al. 2017)."""
    conf, pred = proba.max(1), proba.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.sum() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total / len(y))


def pgd_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, eps: float,
                 steps: int = 20) -> tuple[float, float]:
    """(clean accuracy, accuracy under an L-inf PGD attack of radius eps); written here."""
    model.eval()
    with torch.no_grad():
        clean = float((model(X).argmax(1) == y).float().mean())
    adv = X.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        g, = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + (eps / 4) * g.sign(), X - eps), X + eps)
    with torch.no_grad():
        robust = float((model(adv).argmax(1) == y).float().mean())
    return clean, robust


# ============================================================================ injections
# Each takes a frame and returns (new frame, planted quantities measured on the new frame).


def _rng(seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


def _feats(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c != "target"]


def missing_mcar(df: pd.DataFrame, share: float, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    cols = _feats(df)
    mask = _rng(seed).random((len(df), len(cols))) < share
    vals = np.array(df[cols].to_numpy(dtype=float), copy=True)
    vals[mask] = np.nan
    df[cols] = vals
    return df, {"missing_cell_share": round(float(np.isnan(vals).mean()), 4),
                "rows_with_missing": round(float(np.isnan(vals).any(1).mean()), 4)}


def missing_mnar(df: pd.DataFrame, cols: list[str], q: float) -> tuple[pd.DataFrame, dict]:
    """Values above the column's q-quantile go missing (a sensor that saturates)."""
    df = df.copy()
    for c in cols:
        df.loc[df[c] > df[c].quantile(q), c] = np.nan
    return df, {"missing_share_in_columns": round(float(df[cols].isna().to_numpy().mean()), 4),
                "columns": cols}


def blank_text_column(df: pd.DataFrame, share: float, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    r = _rng(seed)
    site = r.choice(["north", "south", "east"], len(df)).astype(object)
    site[r.random(len(df)) < share] = ""
    df.insert(0, "site", site)
    return df, {"blank_share_in_text_column": round(float((site == "").mean()), 4)}


def _spread_ratio(df: pd.DataFrame) -> float:
    sd = df[_feats(df)].select_dtypes("number").std()
    sd = sd[sd > 0]
    return float(sd.max() / sd.min())


def scale_columns(df: pd.DataFrame, cols: list[str], factor: float) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    df[cols] = df[cols] * factor
    return df, {"factor": factor, "columns": cols, "std_ratio": round(_spread_ratio(df), 1)}


def offset_column(df: pd.DataFrame, col: str, offset: float) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    df[col] = df[col] + offset
    return df, {"column": col, "offset_over_std": round(float(df[col].median() / df[col].std()), 1)}


def plant_outliers(df: pd.DataFrame, share: float, cols: list[str], seed: int = SEED,
                   lo: float = 20.0, hi: float = 50.0) -> tuple[pd.DataFrame, dict]:
    """`share` of the rows get one value at median ± U(lo, hi) robust standard deviations."""
    df = df.copy()
    r = _rng(seed)
    n = max(len(cols) * 3, int(round(share * len(df))))
    rows = r.choice(len(df), n, replace=False)
    for i, row in enumerate(rows):
        c = cols[i % len(cols)]
        x = df[c].to_numpy(dtype=float)
        q1, med, q3 = np.nanquantile(x, [0.25, 0.5, 0.75])
        s = (q3 - q1) / 1.349 or np.nanstd(x)
        df.iloc[row, df.columns.get_loc(c)] = med + r.choice([-1, 1]) * r.uniform(lo, hi) * s
    return df, {"planted_values": int(n), "row_share": round(n / len(df), 4), "columns": cols,
                "robust_z": [lo, hi]}


def plant_sentinel(df: pd.DataFrame, cols: list[str], share: float, value: float = -999.0,
                   seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """A missing-value code (-999) written into numeric columns."""
    df = df.copy()
    r = _rng(seed)
    for c in cols:
        rows = r.choice(len(df), max(3, int(round(share * len(df)))), replace=False)
        df.iloc[rows, df.columns.get_loc(c)] = value
    return df, {"sentinel": value, "share_per_column": share, "columns": cols}


def imbalance(df: pd.DataFrame, ratio: float, minority, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    counts = df["target"].value_counts()
    keep = max(3, int(round(ratio * counts.max())))
    r = _rng(seed)
    idx_min = np.flatnonzero(df["target"].to_numpy() == minority)
    drop = r.choice(idx_min, max(0, len(idx_min) - keep), replace=False)
    df = df.drop(index=df.index[drop]).reset_index(drop=True)
    c = df["target"].value_counts()
    return df, {"min_over_max_class": round(float(c.min() / c.max()), 4), "counts": c.to_dict()}


def flip_labels(df: pd.DataFrame, share: float, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """Uniform label noise: `share` of the rows get another class, drawn uniformly."""
    df = df.copy()
    r = _rng(seed)
    classes = np.sort(df["target"].unique())
    y = df["target"].to_numpy().copy()
    rows = r.choice(len(df), int(round(share * len(df))), replace=False)
    for i in rows:
        y[i] = r.choice(classes[classes != y[i]])
    flipped = float((y != df["target"].to_numpy()).mean())
    df["target"] = y
    return df, {"flipped_share": round(flipped, 4)}


def flip_one_way(df: pd.DataFrame, src, dst, share: float, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """Systematic noise: `share` of class src relabelled dst (an annotator's confusion)."""
    df = df.copy()
    r = _rng(seed)
    idx = np.flatnonzero(df["target"].to_numpy() == src)
    rows = r.choice(idx, int(round(share * len(idx))), replace=False)
    y = df["target"].to_numpy().copy()
    y[rows] = dst
    flipped = float((y != df["target"].to_numpy()).mean())
    df["target"] = y
    return df, {"flipped_share": round(flipped, 4), "of_class": round(share, 2)}


def duplicate(df: pd.DataFrame, share: float, sources: int | None = None,
              seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """Append exact copies so that `share` of the final rows are copies; of `sources` rows
    only (a logging loop) or of random rows."""
    r = _rng(seed)
    k = int(round(share * len(df) / (1 - share)))
    pool = r.choice(len(df), sources, replace=False) if sources else np.arange(len(df))
    extra = df.iloc[r.choice(pool, k, replace=True)]
    out = pd.concat([df, extra]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return out, {"duplicate_share": round(float(out.duplicated().mean()), 4),
                 "source_rows": int(sources or len(df))}


def add_constant(df: pd.DataFrame, columns: dict[str, Any], missing: float = 0.0,
                 seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    r = _rng(seed)
    for name, v in columns.items():
        col = pd.Series([v] * len(df), dtype=object if isinstance(v, str) else float)
        if missing:
            col[r.random(len(df)) < missing] = np.nan
        df.insert(0, name, col)
    n_const = int(sum(df[c].nunique(dropna=True) <= 1 for c in _feats(df)))
    return df, {"constant_columns": n_const, "missing_in_them": missing}


def leak(df: pd.DataFrame, kind: str, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """A column derived from the target: a 2 %-noisy copy, a string code of the class, a
    numeric proxy (target + small noise) or a linear function of a regression target."""
    df = df.copy()
    r = _rng(seed)
    y = df["target"].to_numpy()
    if kind == "noisy_copy":
        col = y.astype(float).copy()
        rows = r.choice(len(y), int(0.02 * len(y)), replace=False)
        col[rows] = 1 - col[rows]
        agree = float((col == y).mean())
    elif kind == "encoded":
        names = {k: f"code_{chr(97 + i)}" for i, k in enumerate(np.sort(np.unique(y)))}
        col = np.array([names[v] for v in y], dtype=object)
        agree = 1.0
    elif kind == "proxy":
        col = y + r.normal(0, 0.1, len(y))
        agree = float((np.round(col) == y).mean())
    else:  # linear function of a regression target, plus 1 % noise
        col = 3.0 * y + r.normal(0, 0.01 * y.std(), len(y))
        agree = float(np.corrcoef(col, y)[0, 1] ** 2)
    df.insert(len(df.columns) - 1, "audit_code", col)
    return df, {"kind": kind, "agreement_or_r2": round(agree, 4)}


def add_noise_columns(df: pd.DataFrame, k: int, seed: int = SEED) -> pd.DataFrame:
    r = _rng(seed)
    noise = pd.DataFrame(r.normal(size=(len(df), k)), columns=[f"n{i}" for i in range(k)])
    return pd.concat([df.drop(columns="target"), noise, df[["target"]]], axis=1)


def subsample(df: pd.DataFrame, n: int, seed: int = SEED) -> pd.DataFrame:
    return df.sample(n, random_state=seed).reset_index(drop=True)


def drop_constant(df: pd.DataFrame) -> pd.DataFrame:
    """Drop feature columns a subsample left constant (a fault this scenario does not plant)."""
    return df[[c for c in df.columns if c == "target" or df[c].nunique() > 1]]


def xor(n: int = 1000, seed: int = SEED) -> tuple[pd.DataFrame, str]:
    r = _rng(seed)
    X = r.uniform(-1, 1, (n, 2))
    y = ((X[:, 0] * X[:, 1]) > 0).astype(int)
    return _frame(X, y), "classification"


def null_direction(X: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The unit direction along which the training rows vary least, and their std along it."""
    Xc = X.double() - X.double().mean(0)
    _, s, vt = torch.linalg.svd(Xc, full_matrices=False)
    v = vt[-1]
    return v.float(), float((Xc @ v).std())


def off_manifold(slope: float) -> Callable[[nn.Module, torch.Tensor, int], nn.Module]:
    def wrap(model: nn.Module, X_train: torch.Tensor, n_out: int) -> nn.Module:
        v, _ = null_direction(X_train)
        return OffManifold(model, v, slope, n_out)
    return wrap


def tempered(factor: float) -> Callable[[nn.Module, torch.Tensor, int], nn.Module]:
    def wrap(model: nn.Module, X_train: torch.Tensor, n_out: int) -> nn.Module:
        return Tempered(model, factor)
    return wrap


def off_manifold_factory(slope: float) -> Callable[[torch.Tensor, int], Recipe]:
    """A recipe whose network carries the off-manifold term while it trains (full pipeline)."""
    def recipe_for(X_train: torch.Tensor, n_train: int) -> Recipe:
        v, _ = null_direction(X_train)

        def build(n_in: int, n_out: int) -> nn.Module:
            return OffManifold(relu_mlp(64)(n_in, n_out), v, slope, n_out)
        build.__qualname__ = f"off_manifold_mlp_slope{slope:g}"
        epochs, bs = default_budget(n_train)
        return Recipe(model=build, epochs=epochs, batch_size=bs, seed=SEED, early_stopping=10)
    return recipe_for


# ============================================================================ scenarios
@dataclass
class Made:
    """A scenario's data and recipe, and what was planted (measured on the result)."""

    frame: pd.DataFrame
    task: str
    recipe: Recipe | None = None  # None: the doctor's default recipe, as `make_case` builds it
    planted: dict[str, Any] = field(default_factory=dict)
    #: Model-stage, direct: wrap the trained network (`wrap(model, X_train, n_out)`) and run
    #: `model_checks()` on it with the diagnosis' evidence.
    wrap: Callable[[nn.Module, torch.Tensor, int], nn.Module] | None = None
    #: Model-stage, full pipeline: the recipe depends on the training rows (a null direction).
    recipe_from_data: Callable[[torch.Tensor, int], Recipe] | None = None
    #: Data faults whose presence must be measured (limited data): () -> (shows, reading).
    measure: Callable[[], tuple[bool, str]] | None = None


@dataclass
class Scenario:
    name: str
    must: str | None  # None: a healthy control
    may: dict[str, str]  # symptom -> why the injection legitimately brings it
    how: str
    make: Callable[[], Made]
    quick: bool = False

    @property
    def stage(self) -> str:
        return "control" if self.must is None else SYMPTOMS[self.must]


# Reasons reused across scenarios, so that every `may` says why.
WHY_DIVERGE = {
    "exploding_gradient": "a blown-up loss comes with huge or non-finite gradients",
    "dying_relu": "one huge step pushes ReLU pre-activations negative for every row",
    "loss_oscillation": "too-large steps that do not blow up bounce the loss",
    "underfitting": "a diverged run learns nothing usable",
    "slow_convergence": "the loss that survives does not fall",
    "saturated_activations": "huge weights push tanh/sigmoid units to their flat ends",
    "poor_calibration": "a broken network's probabilities mean nothing",
}
WHY_DEAD_NET = {
    "underfitting": "a network whose units are dead cannot fit",
    "slow_convergence": "with most units dead the loss barely moves",
}
WHY_TINY_TABLE = {
    "overfitting": "a network memorises a handful of rows",
    "underfitting": "the default budget gives a few dozen rows only ~100 optimiser steps",
    "slow_convergence": "same: ~100 optimiser steps on a few dozen rows",
}
WHY_OVERFIT = {
    "poor_calibration": "a memorising network is overconfident on new rows (Guo et al. 2017)",
}


def S(name, must, make, how, may=None, quick=False) -> Scenario:  # noqa: N802 - a table row
    return Scenario(name, must, dict(may or {}), how, make, quick)


def _data(fn: Callable[[], tuple[pd.DataFrame, str]],
          inject: Callable[[pd.DataFrame], tuple[pd.DataFrame, dict]] | None = None) -> Callable[[], Made]:
    def make() -> Made:
        df, task = fn()
        planted: dict[str, Any] = {}
        if inject is not None:
            df, planted = inject(df)
        return Made(df, task, planted=planted)
    return make


def _train(fn: Callable[[], tuple[pd.DataFrame, str]], recipe: Recipe) -> Callable[[], Made]:
    def make() -> Made:
        df, task = fn()
        return Made(df, task, recipe=recipe)
    return make


def _wrap(fn: Callable[[], tuple[pd.DataFrame, str]], wrap, planted: dict) -> Callable[[], Made]:
    def make() -> Made:
        df, task = fn()
        return Made(df, task, planted=planted, wrap=wrap)
    return make


def _limited(gen: Callable[[int], tuple[pd.DataFrame, str]], n: int) -> Callable[[], Made]:
    """A tiny table: the first n rows drawn from a generator. Ground truth: does the same plain
    MLP, given twice the training rows from the same draw, score clearly better on 2,000
    further rows of it?"""
    def make() -> Made:
        big, task = gen(_pool_size(n))
        return Made(big.iloc[:n].reset_index(drop=True), task, planted={"rows": n},
                    measure=lambda: more_data_gain(gen, n, task))
    return make


def _pool_size(n: int) -> int:
    return n + int(0.6 * n) + 2000


def more_data_gain(gen, n: int, task: str) -> tuple[bool, str]:
    from doctor.data import Split

    big, _ = gen(_pool_size(n))
    table = from_frame(big, target="target", task=task)
    sp = split_table(from_frame(big.iloc[:n].reset_index(drop=True), target="target", task=task),
                     seed=SEED)
    more = np.arange(n, n + int(0.6 * n))
    fresh = np.arange(n + int(0.6 * n), len(big))
    small, large = np.asarray(sp.train), np.concatenate([sp.train, more])
    # "More rows help", not "more optimiser steps help": with the doctor's budget the larger
    # set also gets more steps (the same epochs over more batches), so the smaller set is
    # trained for its own budget and for the larger set's number of steps, and keeps the better.
    e_large, b_large = default_budget(len(large))
    steps_large = e_large * int(np.ceil(len(large) / min(b_large, len(large))))
    e_small, b_small = default_budget(len(small))
    e_same_steps = int(np.ceil(steps_large / np.ceil(len(small) / min(b_small, len(small)))))
    scores = []
    for train, budgets in ((small, sorted({e_small, max(e_small, e_same_steps)})),
                           (large, [e_large])):
        t = plain_tensors(table, Split(train, fresh, np.asarray(sp.val)))  # scored on fresh rows
        bs = b_small if train is small else b_large
        scores.append(max(plain_train(Recipe(model=MLPSpec(), epochs=e, batch_size=bs, seed=SEED),
                                      t).final_val_score for e in budgets))
    c = _chance(task, len(table.classes) if table.classes else 1)
    gain = (scores[1] - scores[0]) / (1 - c)
    return gain >= 0.05, (f"plain MLP scored on 2,000 fresh rows: {scores[0]:.3f} with the table's "
                          f"{len(sp.train)} training rows (the better of {e_small} epochs and as "
                          f"many steps as the larger set), {scores[1]:.3f} with twice as many "
                          f"(gain {gain:+.3f}, confirmed at ≥0.05)")


def _gen_classification(n: int) -> tuple[pd.DataFrame, str]:
    return classification(n=n, d=6, informative=4, sep=1.0)


def _gen_8class(n: int) -> tuple[pd.DataFrame, str]:
    return classification(n=n, d=8, informative=6, classes=8, sep=1.5)


def _gen_moons(n: int) -> tuple[pd.DataFrame, str]:
    return moons(n=n, noise=0.25)


def _gen_friedman(n: int) -> tuple[pd.DataFrame, str]:
    return friedman(n=n, noise=1.0)


def _adam(epochs: int, batch: int = 64, **kw) -> dict:
    return dict(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=batch, seed=SEED, **kw)


def suite() -> list[Scenario]:
    """The scenarios, grouped by the symptom they plant; healthy controls last."""
    bc, wn, dg, ir, db = breast_cancer, wine, digits, iris, diabetes
    cl = classification
    M = MLPSpec()
    out: list[Scenario] = []
    add = out.append

    # ------------------------------------------------------------------ data faults
    add(S("missing-mcar-5pct/breast_cancer", "missing_values",
          _data(bc, lambda d: missing_mcar(d, 0.05)), "5 % of cells emptied at random", quick=True))
    add(S("missing-mcar-30pct/wine", "missing_values",
          _data(wn, lambda d: missing_mcar(d, 0.30)), "30 % of cells emptied at random"))
    add(S("missing-mnar-30pct/diabetes", "missing_values",
          _data(db, lambda d: missing_mnar(d, ["f2", "f3", "f8"], 0.7)),
          "the top 30 % of three columns emptied (a sensor that saturates)",
          may={"underfitting": "the missingness carries the signal; median imputation erases "
                               "it while the reference (gradient boosting, native NaN) keeps it"}))
    add(S("missing-blank-text/classification", "missing_values",
          _data(lambda: cl(n=1000), lambda d: blank_text_column(d, 0.10)),
          "a text column with 10 % blank cells"))

    add(S("unscaled-x1e4/wine", "unscaled_features",
          _data(wn, lambda d: scale_columns(d, ["f0", "f1", "f2"], 1e4)),
          "three columns ×1e4", quick=True))
    add(S("unscaled-x1e4/diabetes", "unscaled_features",
          _data(db, lambda d: scale_columns(d, ["f2"], 1e4)), "one column ×1e4"))
    add(S("unscaled-raw/breast_cancer", "unscaled_features",
          _data(lambda: breast_cancer(standardised=False)),
          "the raw table: areas ~1e3 next to fractal dimensions ~1e-3"))
    add(S("unscaled-offset/moons", "unscaled_features",
          _data(moons, lambda d: offset_column(d, "f0", 1e5)), "one column offset by 1e5"))

    add(S("outliers-0.5pct/classification", "outliers",
          _data(cl, lambda d: plant_outliers(d, 0.005, ["f0", "f1"])),
          "0.5 % of rows: one value at 20–50 robust sd", quick=True))
    add(S("outliers-2pct/breast_cancer", "outliers",
          _data(bc, lambda d: plant_outliers(d, 0.02, ["f1", "f5", "f9"])),
          "2 % of rows: one value at 20–50 robust sd"))
    add(S("outliers-1pct/regression", "outliers",
          _data(regression, lambda d: plant_outliers(d, 0.01, ["f0", "f3"])),
          "1 % of rows: one value at 20–50 robust sd"))
    add(S("outliers-sentinel/diabetes", "outliers",
          _data(db, lambda d: plant_sentinel(d, ["f4", "f6"], 0.02)),
          "a -999 missing-value code in 2 % of two columns"))

    WHY_IMB = {"underfitting": "an unweighted network trades the rare class away, so its balanced "
                               "accuracy trails the reference",
               "limited_data": "the rare class has few rows, so the learning curve still climbs"}
    add(S("imbalance-1to8/classification", "class_imbalance",
          _data(cl, lambda d: imbalance(d, 1 / 8, 1)), "class 1 cut to 1:8", may=WHY_IMB, quick=True))
    add(S("imbalance-1to30/classification", "class_imbalance",
          _data(lambda: cl(n=4000), lambda d: imbalance(d, 1 / 30, 1)), "class 1 cut to 1:30",
          may=WHY_IMB))
    add(S("imbalance-1to8/breast_cancer", "class_imbalance",
          _data(bc, lambda d: imbalance(d, 1 / 8, 0)), "malignant cut to 1:8", may=WHY_IMB))
    add(S("imbalance-prior-1to30/classification3", "class_imbalance",
          _data(lambda: cl(n=3000, classes=3, weights=[0.9, 0.07, 0.03]),
                lambda d: (d, {"min_over_max_class": round(float(
                    d.target.value_counts().min() / d.target.value_counts().max()), 4)})),
          "generated with class priors 0.90/0.07/0.03", may=WHY_IMB))

    WHY_NOISE = {"overfitting": "the network memorises the flipped labels",
                 "poor_calibration": "confidence learned on wrong labels disagrees with the "
                                     "(equally noisy) validation labels"}
    add(S("labelnoise-10pct/breast_cancer", "label_noise",
          _data(bc, lambda d: flip_labels(d, 0.10)), "10 % of labels flipped", may=WHY_NOISE, quick=True))
    add(S("labelnoise-25pct/classification", "label_noise",
          _data(cl, lambda d: flip_labels(d, 0.25)), "25 % of labels flipped", may=WHY_NOISE))
    add(S("labelnoise-10pct/digits", "label_noise",
          _data(dg, lambda d: flip_labels(d, 0.10)), "10 % of labels set to another digit",
          may=WHY_NOISE))
    add(S("labelnoise-oneway-30pct/classification3", "label_noise",
          _data(lambda: cl(n=1500, classes=3), lambda d: flip_one_way(d, 0, 1, 0.30)),
          "30 % of class 0 relabelled 1 (systematic)", may=WHY_NOISE))

    WHY_DUP = {"limited_data": "copies of held-out rows land in the training folds more often as "
                               "the reference's training share grows: its learning curve climbs"}
    add(S("duplicates-20pct/wine", "duplicate_rows",
          _data(wn, lambda d: duplicate(d, 0.20)), "20 % of rows are copies", may=WHY_DUP, quick=True))
    add(S("duplicates-40pct/classification", "duplicate_rows",
          _data(lambda: cl(n=1000), lambda d: duplicate(d, 0.40)), "40 % of rows are copies",
          may=WHY_DUP))
    add(S("duplicates-20pct/diabetes", "duplicate_rows",
          _data(db, lambda d: duplicate(d, 0.20)), "20 % of rows are copies", may=WHY_DUP))
    add(S("duplicates-5sources-25pct/moons", "duplicate_rows",
          _data(moons, lambda d: duplicate(d, 0.25, sources=5)),
          "25 % of rows are copies of 5 rows (a logging loop)", may=WHY_DUP))

    add(S("constant-3cols/iris", "constant_features",
          _data(ir, lambda d: add_constant(d, {"c0": 0.0, "c1": 1.0, "c2": 7.5})),
          "three constant numeric columns", quick=True))
    add(S("constant-text/moons", "constant_features",
          _data(moons, lambda d: add_constant(d, {"country": "NZ"})), "a constant text column"))
    add(S("constant-with-missing/breast_cancer", "constant_features",
          _data(bc, lambda d: add_constant(d, {"version": 1.0}, missing=0.03)),
          "a constant column with 3 % empty cells",
          may={"missing_values": "the constant column's empty cells are real missing cells"}))

    add(S("leakage-noisy-copy/breast_cancer", "target_leakage",
          _data(bc, lambda d: leak(d, "noisy_copy")), "the label with 2 % flips as a column",
          quick=True))
    add(S("leakage-encoded/wine", "target_leakage",
          _data(wn, lambda d: leak(d, "encoded")), "the class as a text code"))
    add(S("leakage-proxy/classification", "target_leakage",
          _data(cl, lambda d: leak(d, "proxy")), "the label + N(0, 0.1) as a column"))
    add(S("leakage-linear/diabetes", "target_leakage",
          _data(db, lambda d: leak(d, "linear")), "3·target + 1 % noise as a column",
          may={"unscaled_features": "the planted column is on the target's scale (spread ~280) "
                                    "next to features of ~0.05: the table really is unscaled"}))

    WHY_WIDE = {"overfitting": "a network with more inputs than rows memorises them",
                "limited_data": "with few rows per feature more rows still help a lot",
                "adversarial_vulnerability": "an overfitted net on many inputs is fragile in many "
                                             "directions (Goodfellow et al. 2015)",
                "poor_calibration": WHY_OVERFIT["poor_calibration"]}
    add(S("highdim-400x130/classification", "high_dimensionality",
          _data(lambda: cl(n=217, d=400, informative=10),
                lambda d: (d, {"features": 400, "train_rows": 130})),
          "400 features, 130 training rows", may=WHY_WIDE, quick=True))
    add(S("highdim-noise-cols/breast_cancer", "high_dimensionality",
          _data(lambda: (add_noise_columns(subsample(bc()[0], 200), 300), "classification"),
                lambda d: (d, {"features": 330, "train_rows": 120})),
          "200 rows + 300 noise columns", may=WHY_WIDE))
    add(S("highdim-small/digits", "high_dimensionality",
          _data(lambda: (drop_constant(subsample(dg()[0], 200)), "classification"),
                lambda d: (d, {"features": d.shape[1] - 1, "train_rows": 120})),
          "200 rows of the pixels that vary in them", may=WHY_WIDE))

    add(S("limited-60/classification", "limited_data", _limited(_gen_classification, 60),
          "60 rows of a 6-feature problem", may=WHY_TINY_TABLE, quick=True))
    add(S("limited-150/classification", "limited_data", _limited(_gen_classification, 150),
          "150 rows of a 6-feature problem", may=WHY_TINY_TABLE))
    add(S("limited-60/moons", "limited_data", _limited(_gen_moons, 60),
          "60 rows of noisy moons", may=WHY_TINY_TABLE))
    add(S("limited-100/friedman", "limited_data", _limited(_gen_friedman, 100),
          "100 rows of Friedman #1 (regression)", may=WHY_TINY_TABLE))
    add(S("limited-8class-240/classification8", "limited_data", _limited(_gen_8class, 240),
          "240 rows for 8 classes (18 training rows per class)", may=WHY_TINY_TABLE))

    # ------------------------------------------------------------------ training faults
    WHY_VAN = {"slow_convergence": "the loss barely moves while early layers do not learn",
               "underfitting": "a network whose early layers do not learn cannot fit",
               "saturated_activations": "sigmoid outputs sit in a narrow band when nothing learns"}
    tanh10 = deep_net(nn.Tanh, 10, 48, init_std=0.02, name="tanh10_init0.02")
    sig8 = deep_net(nn.Sigmoid, 8, 64, name="sigmoid8")
    add(S("vanishing-tanh10-tiny-init/breast_cancer", "vanishing_gradient",
          _train(bc, Recipe(model=tanh10, optimizer="sgd", lr=0.01, epochs=20)),
          "10 tanh layers, N(0, 0.02) init, SGD 0.01", may=WHY_VAN, quick=True))
    add(S("vanishing-tanh10-tiny-init/classification", "vanishing_gradient",
          _train(cl, Recipe(model=tanh10, optimizer="sgd", lr=0.01, epochs=20)),
          "10 tanh layers, N(0, 0.02) init, SGD 0.01", may=WHY_VAN))
    add(S("vanishing-sigmoid8/wine", "vanishing_gradient",
          _train(wn, Recipe(model=sig8, optimizer="sgd", lr=0.1, epochs=20)),
          "8 sigmoid layers, default init, SGD 0.1", may=WHY_VAN))
    add(S("vanishing-sigmoid8/moons", "vanishing_gradient",
          _train(moons, Recipe(model=sig8, optimizer="sgd", lr=0.1, epochs=20)),
          "8 sigmoid layers, default init, SGD 0.1", may=WHY_VAN))

    WHY_EXP = {"loss_divergence": "huge gradients can blow the loss up",
               "loss_oscillation": "overshooting steps bounce the loss",
               "underfitting": "the run ends far below what the data allows",
               "slow_convergence": "the loss starts orders of magnitude too high and is still falling",
               "overfitting": "huge-weight networks fit the training rows but not new ones",
               "dying_relu": "huge updates push ReLU units negative for good"}
    add(S("exploding-relu8-gain3-adam/breast_cancer", "exploding_gradient",
          _train(bc, Recipe(model=deep_net(nn.ReLU, 8, 64, init_gain=3.0, name="relu8_gain3"),
                            optimizer="adam", lr=1e-3, epochs=15)),
          "8 ReLU layers, He init ×3, Adam 1e-3", may=WHY_EXP, quick=True))
    add(S("exploding-relu8-gain3-adam/classification", "exploding_gradient",
          _train(cl, Recipe(model=deep_net(nn.ReLU, 8, 64, init_gain=3.0, name="relu8_gain3"),
                            optimizer="adam", lr=1e-3, epochs=15)),
          "8 ReLU layers, He init ×3, Adam 1e-3", may=WHY_EXP))
    add(S("exploding-relu8-gain2-adam/wine", "exploding_gradient",
          _train(wn, Recipe(model=deep_net(nn.ReLU, 8, 64, init_gain=2.0, name="relu8_gain2"),
                            optimizer="adam", lr=1e-3, epochs=15)),
          "8 ReLU layers, He init ×2, Adam 1e-3", may=WHY_EXP))
    add(S("exploding-relu8-gain2-adam/diabetes", "exploding_gradient",
          _train(db, Recipe(model=deep_net(nn.ReLU, 8, 64, init_gain=2.0, name="relu8_gain2"),
                            optimizer="adam", lr=1e-3, epochs=15)),
          "8 ReLU layers, He init ×2, Adam 1e-3 (regression)", may=WHY_EXP))
    add(S("exploding-relu6-gain3-sgd/classification", "exploding_gradient",
          _train(cl, Recipe(model=deep_net(nn.ReLU, 6, 64, init_gain=3.0, name="relu6_gain3"),
                            optimizer="sgd", lr=1e-4, epochs=15)),
          "6 ReLU layers, He init ×3, SGD 1e-4", may=WHY_EXP))
    add(S("exploding-rescale10/friedman", "exploding_gradient",
          _train(friedman, Recipe(model=rescaled_mlp(10.0), optimizer="adam", lr=1e-3, epochs=15)),
          "a stray ×10 after each of 3 ReLU layers (regression)", may=WHY_EXP))
    add(S("exploding-rescale30/regression", "exploding_gradient",
          _train(regression, Recipe(model=rescaled_mlp(30.0), optimizer="adam", lr=1e-3, epochs=15)),
          "a stray ×30 after each of 3 ReLU layers (regression)", may=WHY_EXP))

    WHY_DEAD_LR = {**WHY_DEAD_NET, "loss_oscillation": "lr 0.5 steps also bounce the loss",
                   "loss_divergence": "lr 0.5 steps can blow the loss up",
                   "exploding_gradient": "lr 0.5 steps come with very large gradients",
                   "overfitting": "the surviving units fit the training rows erratically"}
    add(S("dying-adam-lr0.5/classification", "dying_relu",
          _train(cl, Recipe(model=relu_mlp(96), optimizer="adam", lr=0.5, epochs=10)),
          "ReLU MLP, Adam lr 0.5", may=WHY_DEAD_LR, quick=True))
    add(S("dying-adam-lr0.5/wine", "dying_relu",
          _train(wn, Recipe(model=relu_mlp(96), optimizer="adam", lr=0.5, epochs=10)),
          "ReLU MLP, Adam lr 0.5", may=WHY_DEAD_LR))
    add(S("dying-adam-lr0.5/moons", "dying_relu",
          _train(moons, Recipe(model=relu_mlp(96), optimizer="adam", lr=0.5, epochs=10)),
          "ReLU MLP, Adam lr 0.5", may=WHY_DEAD_LR))
    negbias = deep_net(nn.ReLU, 4, 64, bias=-3.0, name="relu4_bias-3")
    WHY_DEAD_BIAS = {**WHY_DEAD_NET,
                     "vanishing_gradient": "dead units pass no gradient to the layers before them"}
    add(S("dying-bias-3/breast_cancer", "dying_relu",
          _train(bc, Recipe(model=negbias, optimizer="adam", lr=1e-3, epochs=20)),
          "4 ReLU layers, hidden biases −3", may=WHY_DEAD_BIAS))
    add(S("dying-bias-3/diabetes", "dying_relu",
          _train(db, Recipe(model=negbias, optimizer="adam", lr=1e-3, epochs=20)),
          "4 ReLU layers, hidden biases −3 (regression)", may=WHY_DEAD_BIAS))

    WHY_SAT = {"vanishing_gradient": "flat ends pass almost no gradient",
               "slow_convergence": "saturated units learn slowly",
               "underfitting": "a saturated network ends far below what the data allows",
               "overfitting": "a huge-init network is a random-feature model that fits "
                              "training rows it cannot generalise from"}
    sig30 = deep_net(nn.Sigmoid, 1, 64, init_std=30.0, name="sigmoid_init30")
    tanh5 = deep_net(nn.Tanh, 2, 64, init_std=5.0, name="tanh2_init5")
    add(S("saturated-sigmoid-init30/breast_cancer", "saturated_activations",
          _train(bc, Recipe(model=sig30, optimizer="adam", lr=1e-3, epochs=10)),
          "sigmoid layer, N(0, 30) init", may=WHY_SAT, quick=True))
    add(S("saturated-sigmoid-init30/classification", "saturated_activations",
          _train(cl, Recipe(model=sig30, optimizer="adam", lr=1e-3, epochs=10)),
          "sigmoid layer, N(0, 30) init", may=WHY_SAT))
    add(S("saturated-tanh-init5/wine", "saturated_activations",
          _train(wn, Recipe(model=tanh5, optimizer="adam", lr=1e-3, epochs=10)),
          "2 tanh layers, N(0, 5) init", may=WHY_SAT))
    add(S("saturated-tanh-init5/moons", "saturated_activations",
          _train(moons, Recipe(model=tanh5, optimizer="adam", lr=1e-3, epochs=10)),
          "2 tanh layers, N(0, 5) init", may=WHY_SAT))

    add(S("diverge-sgd-lr20/breast_cancer", "loss_divergence",
          _train(bc, Recipe(model=relu_mlp(96), optimizer="sgd", lr=20.0, epochs=10, batch_size=32)),
          "SGD lr 20", may=WHY_DIVERGE, quick=True))
    add(S("diverge-sgd-lr50/classification", "loss_divergence",
          _train(cl, Recipe(model=relu_mlp(96), optimizer="sgd", lr=50.0, epochs=10, batch_size=32)),
          "SGD lr 50", may=WHY_DIVERGE))
    add(S("diverge-adam-lr5/wine", "loss_divergence",
          _train(wn, Recipe(model=M, optimizer="adam", lr=5.0, epochs=20)),
          "Adam lr 5", may=WHY_DIVERGE))
    add(S("diverge-sgd-lr5/diabetes", "loss_divergence",
          _train(db, Recipe(model=relu_mlp(96), optimizer="sgd", lr=5.0, epochs=10, batch_size=32)),
          "SGD lr 5 (regression)", may=WHY_DIVERGE))

    WHY_OSC = {"dying_relu": "large steps knock ReLU units dead",
               "saturated_activations": "large steps push tanh units to their flat ends",
               "underfitting": "a bouncing run ends below what the data allows",
               "slow_convergence": "the loss does not settle within the budget",
               "exploding_gradient": "large steps come with large gradients",
               "overfitting": "the last epoch lands wherever the bounce left it, often off the "
                              "validation optimum"}
    add(S("oscillation-adam0.05-b8/classification", "loss_oscillation",
          _train(cl, Recipe(model=M, optimizer="adam", lr=0.05, epochs=30, batch_size=8)),
          "ReLU MLP, Adam 0.05, batch 8", may=WHY_OSC))
    tanhM = MLPSpec(activation="tanh")
    add(S("oscillation-tanh-adam0.05-b8/moons", "loss_oscillation",
          _train(moons, Recipe(model=tanhM, optimizer="adam", lr=0.05, epochs=30, batch_size=8)),
          # the quick suite's oscillation case: the ReLU one above sits at the plain loop's
          # line (5 or 6 swings of the 6 needed) and is often "injection failed"
          "tanh MLP, Adam 0.05, batch 8", may=WHY_OSC, quick=True))
    add(S("oscillation-tanh-adam0.05-b8/diabetes", "loss_oscillation",
          _train(db, Recipe(model=tanhM, optimizer="adam", lr=0.05, epochs=30, batch_size=8)),
          "tanh MLP, Adam 0.05, batch 8 (regression)", may=WHY_OSC))
    add(S("oscillation-tanh-rmsprop0.03-b16/diabetes", "loss_oscillation",
          _train(db, Recipe(model=tanhM, optimizer="rmsprop", lr=0.03, epochs=30, batch_size=16)),
          "tanh MLP, RMSprop 0.03, batch 16 (regression)", may=WHY_OSC))

    WHY_SLOW = {"underfitting": "the budget ends long before the model fits"}
    add(S("slow-sgd-1e-6/breast_cancer", "slow_convergence",
          _train(bc, Recipe(model=M, optimizer="sgd", lr=1e-6, epochs=30)),
          "SGD lr 1e-6, 30 epochs", may=WHY_SLOW, quick=True))
    add(S("slow-sgd-1e-5/classification", "slow_convergence",
          _train(cl, Recipe(model=M, optimizer="sgd", lr=1e-5, epochs=30)),
          "SGD lr 1e-5, 30 epochs", may=WHY_SLOW))
    add(S("slow-sgd-1e-5/diabetes", "slow_convergence",
          _train(db, Recipe(model=M, optimizer="sgd", lr=1e-5, epochs=30)),
          "SGD lr 1e-5, 30 epochs (regression)", may=WHY_SLOW))
    add(S("slow-adam-1e-6/wine", "slow_convergence",
          _train(wn, Recipe(model=M, optimizer="adam", lr=1e-6, epochs=40)),
          "Adam lr 1e-6, 40 epochs", may=WHY_SLOW))

    wide = MLPSpec(hidden=(512, 512))
    WHY_OF = {**WHY_OVERFIT, "limited_data": "a few hundred rows of a noisy problem: more "
                                             "rows still help"}
    add(S("overfit-wide-300ep/classification200", "overfitting",
          _train(lambda: cl(n=200, d=20, informative=5, sep=0.6),
                 Recipe(model=wide, **_adam(300, 32))),
          "512×512 MLP, 300 epochs, 120 overlapping rows", may=WHY_OF, quick=True))
    add(S("overfit-wide-300ep/classification300", "overfitting",
          _train(lambda: cl(n=300, d=15, informative=6, sep=1.0),
                 Recipe(model=wide, **_adam(300, 32))),
          "512×512 MLP, 300 epochs, 180 rows", may=WHY_OF))
    add(S("overfit-wide-300ep/friedman150", "overfitting",
          _train(lambda: friedman(n=150, noise=3.0), Recipe(model=wide, **_adam(300, 32))),
          "512×512 MLP, 300 epochs, 90 noisy rows (regression)", may=WHY_OF))
    add(S("overfit-noise-features/classification", "overfitting",
          _train(lambda: cl(n=300, d=30, informative=5, sep=1.0),
                 Recipe(model=MLPSpec(hidden=(256, 256)), **_adam(300, 32))),
          "256×256 MLP, 300 epochs, 180 rows with 25 pure-noise columns", may=WHY_OF))

    WHY_UF = {"slow_convergence": "a too-small model's loss creeps down over the budget",
              "dying_relu": "a 1-unit ReLU layer that dies is a fully dead layer"}
    add(S("underfit-bottleneck1/digits", "underfitting",
          _train(dg, Recipe(model=MLPSpec(hidden=(1,)), **_adam(100))),
          "one hidden unit for 10 classes", may=WHY_UF, quick=True))
    add(S("underfit-bottleneck1/classification4", "underfitting",
          _train(lambda: cl(n=2000, informative=6, classes=4), Recipe(model=MLPSpec(hidden=(1,)),
                                                                       **_adam(100))),
          "one hidden unit for 4 classes", may=WHY_UF))
    add(S("underfit-linear/circles", "underfitting",
          _train(circles, Recipe(model=linear_model, optimizer="adam", lr=1e-2, epochs=40)),
          "a linear model on concentric circles", may=WHY_UF))
    add(S("underfit-linear/xor", "underfitting",
          _train(xor, Recipe(model=linear_model, optimizer="adam", lr=1e-2, epochs=40)),
          "a linear model on XOR", may=WHY_UF))

    # ------------------------------------------------------------------ model faults
    def copied(fn, col="f0"):
        def f():
            df, task = fn()
            df.insert(len(df.columns) - 1, f"{col}_copy", df[col])
            return df, task
        return f

    add(S("adversarial-offmanifold-trained/breast_cancer", "adversarial_vulnerability",
          lambda: Made(*copied(bc)(), planted={"slope": 200, "how": "trained with the term"},
                       recipe_from_data=off_manifold_factory(200.0)),
          "copied column; the net carries slope 200 along copy − original while it trains",
          quick=True))
    add(S("adversarial-offmanifold-s300/classification", "adversarial_vulnerability",
          _wrap(lambda: cl(n=2000, d=10, informative=5, redundant=3), off_manifold(300.0),
                {"slope": 300}),
          "3 redundant features; trained net + slope 300 along their null direction"))
    add(S("adversarial-offmanifold-s30/classification", "adversarial_vulnerability",
          _wrap(lambda: cl(n=2000, d=10, informative=5, redundant=3), off_manifold(30.0),
                {"slope": 30}),
          "3 redundant features; trained net + slope 30 along their null direction"))
    add(S("adversarial-offmanifold-s100/wine", "adversarial_vulnerability",
          _wrap(copied(wn, "f6"), off_manifold(100.0), {"slope": 100}),
          "copied column; trained net + slope 100 along copy − original"))

    add(S("calibration-overconfident-x20/classification", "poor_calibration",
          _wrap(lambda: cl(n=2000, sep=0.8), tempered(20.0), {"logit_factor": 20}),
          "trained net, logits ×20", quick=True))
    add(S("calibration-overconfident-x5/moons", "poor_calibration",
          _wrap(lambda: moons(noise=0.35), tempered(5.0), {"logit_factor": 5}),
          "trained net, logits ×5"))
    add(S("calibration-underconfident-x0.2/digits", "poor_calibration",
          _wrap(dg, tempered(0.2), {"logit_factor": 0.2}), "trained net, logits ×0.2"))
    add(S("calibration-underconfident-x0.3/breast_cancer", "poor_calibration",
          _wrap(bc, tempered(0.3), {"logit_factor": 0.3}), "trained net, logits ×0.3"))
    add(S("calibration-overtrained/classification", "poor_calibration",
          _train(lambda: cl(n=1000, d=10, informative=5, sep=0.5),
                 Recipe(model=wide, **_adam(200, 32))),
          "512×512 MLP, 200 epochs on overlapping classes",
          may={"overfitting": "overconfidence comes from memorising the training rows",
               "limited_data": WHY_OF["limited_data"]}))

    # ------------------------------------------------------------------ healthy controls
    for name, fn, q in [("breast_cancer", bc, True), ("wine", wn, False), ("digits", dg, True),
                        ("iris", ir, False), ("diabetes", db, True), ("moons", moons, False),
                        ("classification", cl, False), ("regression", regression, False)]:
        add(S(f"healthy-default/{name}", None, _data(fn), "the doctor's default recipe", quick=q))
    add(S("healthy-adam-40ep/moons", None,
          _train(moons, Recipe(model=M, **_adam(40))), "Adam 1e-3, 40 epochs, batch 64"))
    add(S("healthy-adam-30ep/classification3", None,
          _train(lambda: cl(n=1500, classes=3), Recipe(model=M, **_adam(30))),
          "Adam 1e-3, 30 epochs, batch 64"))
    return out


# ============================================================================ running
#: Thresholds that make each check speak whatever it measures, so that a miss can show what the
#: check saw (its own evidence) instead of just "nothing".
RELAXED: dict[str, dict[str, Any]] = {
    "unscaled_features": dict(max_spread_ratio=1.0, max_offset_ratio=0.0),
    "outliers": dict(min_share=0.0, min_count=1, max_share=1.0),
    "class_imbalance": dict(min_ratio=1.01),
    "label_noise": dict(min_share=0.0, min_reference=-1.0, min_confident_ratio=-1.0, min_rows=0,
                        alpha=1.01),
    "duplicate_rows": dict(max_share=0.0, min_excess_over_chance=0.0),
    "target_leakage": dict(min_score=-1.0, alpha=1.01),
    "high_dimensionality": dict(min_rows_per_feature=1e12),
    "limited_data": dict(min_gain=-1.0, alpha=1.01),
    "vanishing_gradient": dict(floor=1e12, depth_ratio=1e12),
    "exploding_gradient": dict(ratio=0.0),
    "dying_relu": dict(layer_share=0.0),
    "saturated_activations": dict(layer_share=0.0),
    "loss_divergence": dict(growth=0.0),
    "loss_oscillation": dict(share=0.0),
    "slow_convergence": dict(min_drop=1e9),
    "overfitting": dict(val_rise=-1.0, gap=-9.0),
    "underfitting": dict(attained=9.0),
    "adversarial_vulnerability": dict(drop=-1.0, excess=-9.0),
    "poor_calibration": dict(ece_min=0.0, quantile=0.0),
}


def _brief(v: Any, depth: int = 0, keys_max: int = 16) -> Any:
    """Evidence trimmed for a report line: scalars kept, long lists and dicts shortened."""
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        if depth >= 2:
            return f"{{{len(v)} entries}}"
        keys = [k for k in v if k not in ("rows", "csv_lines", "candidates", "note", "spreads")]
        out = {k: _brief(v[k], depth + 1, 6) for k in keys[:keys_max]}
        if len(keys) > keys_max:
            out["…"] = f"{len(keys) - keys_max} more"
        return out
    if isinstance(v, (list, tuple)):
        return [_brief(x, depth + 1, 6) for x in v[:5]] + ([f"… {len(v) - 5} more"] if len(v) > 5 else [])
    return v


def what_the_check_saw(symptom: str, ev: Evidence) -> dict[str, Any]:
    """Run the symptom's check with thresholds relaxed to report anything it measures."""
    from doctor.checks.data import data_checks
    from doctor.checks.model import model_checks
    from doctor.checks.model import skip_reason
    from doctor.checks.training import progress
    from doctor.checks.training import training_checks

    out: dict[str, Any] = {}
    if SYMPTOMS[symptom] in ("training", "model") and ev.trace is not None and ev.trace.epochs:
        p = progress(ev)
        out["progress"] = {k: round(v, 3) for k, v in p.items()}
        if ev.trace.diverged:
            out["diverged"] = ev.trace.diverged.get("reason")
        tl = [e["train_loss"] for e in ev.trace.epochs]
        steps = [st["loss"] for st in ev.trace.steps if math.isfinite(st.get("loss", math.nan))]
        out["trace_loss"] = {"epoch_mean_first/min/max/last": [round(x, 4) for x in
                                                              (tl[0], min(tl), max(tl), tl[-1])],
                             "epochs": len(tl),
                             "max_probed_step_loss": round(max(steps), 4) if steps else None}
    if SYMPTOMS[symptom] == "model":
        out["skip_reason"] = skip_reason(ev)
    check = next(c for c in data_checks() + training_checks() + model_checks() if c.ids[0] == symptom)
    try:
        found = type(check)(**RELAXED.get(symptom, {})).run(ev)
    except Exception as e:  # noqa: BLE001 - a diagnostic aid must not stop the benchmark
        found, out["relaxed_error"] = [], f"{type(e).__name__}: {e}"
    out["measured"] = _brief(found[0].evidence) if found else "nothing (gated or no reading)"
    return out


@dataclass
class Result:
    name: str
    must: str | None
    may: list[str]
    how: str
    status: str  # hit | miss | injection failed | control | control not healthy | error
    found: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    #: Of the false alarms, those the plain loop's own indicator also shows.
    co_symptoms: list[str] = field(default_factory=list)
    truth: str = ""
    planted: dict[str, Any] = field(default_factory=dict)
    diag_s: float = math.nan
    plain_s: float = math.nan
    indicators: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.status in ("hit", "miss", "control")

    @property
    def ratio(self) -> float:
        return self.diag_s / self.plain_s if self.plain_s > 0 else math.nan


def model_truth(symptom: str, faulty: nn.Module, healthy: nn.Module, t: dict) -> tuple[bool, str]:
    Xv, yv = t["X_val"], t["y_val"]
    with torch.no_grad():
        if not (torch.isfinite(faulty.eval()(Xv)).all() and torch.isfinite(healthy.eval()(Xv)).all()):
            return False, "n/a: non-finite network outputs"
    if symptom == "adversarial_vulnerability":
        c, r = pgd_accuracy(faulty, Xv, yv, 0.05)
        hc, hr = pgd_accuracy(healthy, Xv, yv, 0.05)
        ok = c - r >= 0.2 and (c - r) - (hc - hr) >= 0.1
        return ok, (f"PGD-20 at eps 0.05: accuracy {c:.3f} → {r:.3f}; healthy net "
                    f"{hc:.3f} → {hr:.3f}")
    with torch.no_grad():
        faulty.eval()
        healthy.eval()
        pf = torch.softmax(faulty(Xv), 1).numpy()
        ph = torch.softmax(healthy(Xv), 1).numpy()
    e, eh = ece(pf, yv.numpy()), ece(ph, yv.numpy())
    return e >= 0.05 and e >= eh + 0.03, f"ECE {e:.3f} (healthy net {eh:.3f}) on {len(yv)} rows"


def run_scenario(sc: Scenario) -> Result:
    from doctor.api import make_case
    from doctor.checks.model import model_checks
    from doctor.diagnosis import diagnose_table

    res = Result(sc.name, sc.must, sorted(sc.may), sc.how, "error")
    made = sc.make()
    res.planted = made.planted
    case = make_case(None, made.frame, target="target", task=made.task, device="cpu")
    table, sp, default = case.table, case.split, case.recipe
    tensors = plain_tensors(table, sp)
    k, task = tensors["n_out"], tensors["task"]
    if made.recipe_from_data is not None:
        recipe = made.recipe_from_data(tensors["X_train"], len(sp.train))
    else:
        recipe = made.recipe or default

    # ---- ground truth: the plain loop's indicators, the planted quantity
    plain = plain_train(recipe, tensors)
    twin = plain if recipe is default else plain_train(default, tensors)
    for sym, fn in INDICATORS.items():
        shows, reading = fn(plain, twin, task, k)
        res.indicators[sym] = ("YES " if shows else "no ") + reading
    if task == "classification":  # the model symptoms, measured on the plain loop's network
        for sym in ("adversarial_vulnerability", "poor_calibration"):
            try:
                shows, reading = model_truth(sym, plain.model, twin.model, tensors)
                res.indicators[sym] = ("YES " if shows else "no ") + reading
            except Exception as e:  # noqa: BLE001 - a diverged network's outputs may be NaN
                res.indicators[sym] = f"n/a ({type(e).__name__})"
    stage = sc.stage
    if stage == "control":
        sick = [s for s in INDICATORS if res.indicators[s].startswith("YES")]
        ok, res.truth = not sick, ("plain loop shows " + ", ".join(sick) if sick else
                                   f"plain loop healthy (val score {plain.final_val_score:.3f})")
    elif stage == "training":
        ok, res.truth = INDICATORS[sc.must](plain, twin, task, k)
    elif stage == "model":
        if made.wrap is not None:
            faulty, healthy = made.wrap(plain.model, tensors["X_train"], k), plain.model
        else:
            faulty, healthy = plain.model, twin.model
        ok, res.truth = model_truth(sc.must, faulty, healthy, tensors)
    elif made.measure is not None:
        ok, res.truth = made.measure()
    else:
        ok, res.truth = True, json.dumps(made.planted, default=str)

    # ---- timing, side by side: the plain loop alone, then the whole diagnosis
    start = time.perf_counter()
    plain_train(recipe, plain_tensors(table, sp), instrument=False)
    res.plain_s = time.perf_counter() - start
    start = time.perf_counter()
    diagnosis, run, prepared = diagnose_table(table, sp, recipe, device="cpu")
    res.diag_s = time.perf_counter() - start

    symptoms = list(diagnosis.symptoms)
    ev = Evidence(profile=diagnosis.profile, trace=diagnosis.trace, model=run.model, data=prepared,
                  val_score=run.val_score, found=[s for s in symptoms if s.stage != "model"])
    if made.wrap is not None:  # model fault planted on the trained network
        ev.model = made.wrap(run.model, prepared.X_train, prepared.n_outputs)
        symptoms = ev.found + [s for c in model_checks() for s in c.run(ev)]
    res.found = [s.id for s in symptoms]
    allowed = ({sc.must} if sc.must else set()) | set(sc.may)
    outside = [i for i in res.found if i not in allowed]
    res.co_symptoms = [i for i in outside if res.indicators.get(i, "").startswith("YES")]
    res.false_alarms = [i for i in outside if i not in res.co_symptoms]
    if stage == "control":
        res.status = "control" if ok else "control not healthy"
    elif not ok:
        res.status = "injection failed"
    else:
        res.status = "hit" if sc.must in res.found else "miss"
    if res.status == "miss":
        res.details["missed"] = {sc.must: what_the_check_saw(sc.must, ev)}
    for s in symptoms:
        if s.id in outside:
            key = "false_alarms" if s.id in res.false_alarms else "co_symptoms"
            res.details.setdefault(key, {})[s.id] = {
                "summary": s.summary, "evidence": _brief(s.evidence),
                "plain_loop_indicator": res.indicators.get(s.id, "n/a (a data symptom)")}
    return res


# ============================================================================ memory
MEM_ROWS, MEM_COLS = 100_000, 50


def memory_probe(mode: str) -> dict[str, Any]:
    """Peak memory of the data stage (`profile_data` + the ten data checks) on a
    100,000 × 50 table, in this (fresh) process. mode "rss": the resident high-water mark
    (Linux VmHWM, reset just before); mode "trace": tracemalloc's peak (Python and NumPy
    allocations only)."""
    import resource
    import tracemalloc

    from doctor.checks.data import data_checks
    from doctor.checks.data import profile_data

    configure_torch()
    r = _rng()
    X = r.normal(size=(MEM_ROWS, MEM_COLS))
    y = (X[:, :5].sum(1) + r.normal(size=MEM_ROWS) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(MEM_COLS)])
    df["target"] = y
    table = from_frame(df, target="target")
    sp = split_table(table, seed=SEED)
    del X, df
    import gc
    gc.collect()

    def status(key: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    out: dict[str, Any] = {"mode": mode}
    if mode == "trace":
        tracemalloc.start()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            out["how"] = "VmHWM after reset − VmRSS before"
        except OSError:
            out["how"] = "ru_maxrss delta (may under-read: the peak before the probe counts)"
        out["rss_before"] = status("VmRSS")
        out["maxrss_before"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    profile = profile_data(table, sp, seed=SEED)
    found = [s.id for c in data_checks() for s in c.run(Evidence(profile=profile))]
    out["seconds"] = time.perf_counter() - start
    out["found"] = found
    if mode == "trace":
        out["peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        hwm = status("VmHWM")
        if out["how"].startswith("VmHWM") and hwm is not None and out["rss_before"] is not None:
            out["peak_bytes"] = hwm - out["rss_before"]
        else:
            out["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - out["maxrss_before"]
    return out


def run_memory(modes=("rss", "trace")) -> dict[str, Any]:
    out = {}
    for mode in modes:
        proc = subprocess.run([sys.executable, __file__, "--memory-probe", mode],
                              capture_output=True, text=True, cwd=ROOT)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        out[mode] = json.loads(line[-1]) if line else {"error": proc.stderr[-2000:]}
    return out


# ============================================================================ report
def _pct(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "—"


def summarise(results: list[Result]) -> dict[str, Any]:
    scored = [r for r in results if r.scored]
    per: dict[str, dict[str, Any]] = {}
    for sym in SYMPTOMS:
        planted = [r for r in scored if r.must == sym]
        tp = sum(1 for r in planted if r.status == "hit")
        fp = sum(1 for r in scored if sym in r.false_alarms)
        conf = sum(1 for r in scored if sym in r.co_symptoms)
        failed = sum(1 for r in results if r.must == sym and r.status == "injection failed")
        per[sym] = {"scenarios": len(planted), "hits": tp, "false_alarms": fp, "co_symptoms": conf,
                    "injection_failed": failed,
                    "precision": tp / (tp + fp) if tp + fp else None,
                    "recall": tp / len(planted) if planted else None}
    faults = [r for r in scored if r.must]
    tp = sum(1 for r in faults if r.status == "hit")
    fa = sum(len(r.false_alarms) for r in scored)
    conf = sum(len(r.co_symptoms) for r in scored)
    controls = [r for r in results if r.must is None]
    ratios = [r.ratio for r in results if math.isfinite(r.ratio)]
    control_ratios = [r.ratio for r in controls if math.isfinite(r.ratio)]
    return {
        "per_symptom": per,
        "scenarios": len(results), "scored_faults": len(faults), "hits": tp,
        "misses": len(faults) - tp, "false_alarms": fa, "co_symptoms": conf,
        "precision_co_symptoms_as_false_alarms": tp / (tp + fa + conf) if tp + fa + conf else None,
        "injection_failed": sum(1 for r in results if r.status == "injection failed"),
        "errors": sum(1 for r in results if r.status == "error"),
        "precision": tp / (tp + fa) if tp + fa else None,
        "recall": tp / len(faults) if faults else None,
        "controls": len(controls),
        "controls_scored": sum(1 for r in controls if r.scored),
        "control_false_alarms": sum(len(r.false_alarms) for r in controls if r.scored),
        "controls_with_false_alarm": sum(1 for r in controls if r.scored and r.false_alarms),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "median_ratio_controls": statistics.median(control_ratios) if control_ratios else None,
        "total_ratio": (sum(r.diag_s for r in results if math.isfinite(r.ratio))
                        / sum(r.plain_s for r in results if math.isfinite(r.ratio))) if ratios else None,
        "median_diag_s": statistics.median([r.diag_s for r in results if math.isfinite(r.diag_s)])
        if ratios else None,
        "median_plain_s": statistics.median([r.plain_s for r in results if math.isfinite(r.plain_s)])
        if ratios else None,
    }


def print_report(results: list[Result], summary: dict[str, Any], memory: dict[str, Any] | None,
                 wall: float) -> None:
    w = max(len(r.name) for r in results)
    print()
    print(f"{'scenario':{w}s}  {'result':16s} {'diag s':>6s} {'×plain':>7s}  found: [must], "
          "may, !false alarm!, +co-symptom+ (outside may; the plain loop measures it too)")
    for r in results:
        shown = []
        for i in r.found:
            shown.append(f"[{i}]" if i == r.must else f"!{i}!" if i in r.false_alarms
                         else f"+{i}+" if i in r.co_symptoms else i)
        if r.must and r.must not in r.found and r.status == "miss":
            shown.insert(0, f"(missed {r.must})")
        print(f"{r.name:{w}s}  {r.status:16s} {r.diag_s:6.1f} {r.ratio:6.1f}×  "
              f"{' '.join(shown) or '—'}")
    print()
    print(f"{'symptom':26s} {'stage':8s} {'scen':>4s} {'hits':>4s} {'FA':>3s} {'co':>5s} "
          f"{'inj.fail':>8s} {'precision':>9s} {'recall':>6s}")
    for sym, d in summary["per_symptom"].items():
        p = "—" if d["precision"] is None else f"{d['precision']:.2f}"
        rc = "—" if d["recall"] is None else f"{d['recall']:.2f}"
        print(f"{sym:26s} {SYMPTOMS[sym]:8s} {d['scenarios']:4d} {d['hits']:4d} {d['false_alarms']:3d} "
              f"{d['co_symptoms']:5d} {d['injection_failed']:8d} {p:>9s} {rc:>6s}")
    s = summary
    print()
    print(f"scenarios {s['scenarios']} ({s['scored_faults']} scored faults, {s['controls']} healthy "
          f"controls, {s['injection_failed']} injections failed, {s['errors']} errors)")
    print(f"overall: recall {s['hits']}/{s['scored_faults']} = "
          f"{_pct(s['hits'], s['scored_faults'])}, precision {s['hits']}/{s['hits'] + s['false_alarms']}"
          f" = {_pct(s['hits'], s['hits'] + s['false_alarms'])} ({s['false_alarms']} false alarms)")
    if s["co_symptoms"]:
        c = s["co_symptoms"]
        print(f"  measured co-symptoms (found outside may, the plain loop's indicator shows them "
              f"too): {c}; counted as false alarms, precision would be "
              f"{_pct(s['hits'], s['hits'] + s['false_alarms'] + c)}")
    print(f"healthy controls: {s['control_false_alarms']} false alarm(s); "
          f"{s['controls_with_false_alarm']} of {s['controls_scored']} controls raised any")
    if s["median_ratio"] is not None:
        print(f"diagnosis time / plain training of the same recipe: median {s['median_ratio']:.1f}× "
              f"(median {s['median_diag_s']:.2f} s vs {s['median_plain_s']:.2f} s per scenario); "
              + (f"healthy controls {s['median_ratio_controls']:.1f}×; "
                 if s["median_ratio_controls"] is not None else "") + f"whole suite "
              f"{s['total_ratio']:.1f}× (sum of times)")
    if memory:
        one = MEM_ROWS * MEM_COLS * 8
        print(f"data profile on {MEM_ROWS:,} × {MEM_COLS}: one copy (rows×cols×8 bytes) "
              f"{one / 1e6:.1f} MB")
        for mode, m in memory.items():
            if "peak_bytes" in m:
                label = "resident peak (VmHWM delta)" if mode == "rss" else "tracemalloc peak"
                print(f"  {label:28s} {m['peak_bytes'] / 1e6:7.1f} MB = "
                      f"{m['peak_bytes'] / one:.2f}× one copy, {m['seconds']:.1f} s, "
                      f"symptoms {m['found'] or 'none'}")
            else:
                print(f"  {mode}: failed: {m.get('error', '')[-300:]}")
    print(f"suite wall time {wall / 60:.1f} min")


def print_details(results: list[Result]) -> None:
    """Misses, false alarms and failed injections, with what the checks measured."""
    bad = [r for r in results if r.status in ("miss", "injection failed", "control not healthy",
                                               "error") or r.false_alarms or r.co_symptoms]
    if not bad:
        return
    print("\nDetails (misses, false alarms, failed injections):")
    for r in bad:
        print(f"- {r.name} [{r.status}] {r.how}; ground truth: {r.truth}")
        for sym, saw in r.details.get("missed", {}).items():
            print(f"    missed {sym}: {json.dumps(saw, default=str)}")
        for sym, d in [*r.details.get("false_alarms", {}).items(),
                       *(("+" + k, v) for k, v in r.details.get("co_symptoms", {}).items())]:
            print(f"    {'co-symptom ' + sym[1:] if sym.startswith('+') else 'false alarm ' + sym}: "
                  f"{d['summary']}")
            print(f"      evidence {json.dumps(d['evidence'], default=str)}")
            print(f"      plain-loop indicator: {d['plain_loop_indicator']}")
        if "error" in r.details:
            print(f"    error: {r.details['error']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a representative subset (~3 min)")
    ap.add_argument("--only", default="", help="comma-separated scenario names, name prefixes "
                                                "or symptom ids")
    ap.add_argument("--json", default="", help="write every result and the summary here")
    ap.add_argument("--no-memory", action="store_true", help="skip the 100,000-row memory probe")
    ap.add_argument("--memory-probe", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.memory_probe:
        print(json.dumps(memory_probe(a.memory_probe)))
        return 0
    configure_torch()
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)
    scenarios = suite()
    if a.quick:
        scenarios = [s for s in scenarios if s.quick]
    if a.only:
        keys = [k.strip() for k in a.only.split(",") if k.strip()]
        scenarios = [s for s in scenarios if any(s.name == k or s.name.startswith(k) or s.must == k
                                                 for k in keys)]
        if not scenarios:
            print(f"no scenario matches {a.only!r}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    results = []
    for i, sc in enumerate(scenarios, 1):
        t0 = time.perf_counter()
        try:
            r = run_scenario(sc)
        except Exception as e:  # noqa: BLE001 - one broken scenario must not stop the suite
            import traceback
            r = Result(sc.name, sc.must, sorted(sc.may), sc.how, "error",
                       details={"error": f"{type(e).__name__}: {e}",
                                "traceback": traceback.format_exc()[-1500:]})
        results.append(r)
        print(f"[{i:3d}/{len(scenarios)}] {sc.name:48s} {r.status:16s} "
              f"{time.perf_counter() - t0:5.1f} s  {' '.join(r.found) or '—'}", flush=True)
    memory = None if a.no_memory else run_memory(("rss",) if a.quick else ("rss", "trace"))
    wall = time.perf_counter() - started
    summary = summarise(results)
    print_report(results, summary, memory, wall)
    print_details(results)
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "summary": summary, "memory": memory, "wall_s": wall,
            "results": [{**{k: getattr(r, k) for k in ("name", "must", "may", "how", "status",
                                                       "found", "false_alarms", "truth", "planted",
                                                       "diag_s", "plain_s", "indicators",
                                                       "details")}, "ratio": r.ratio}
                        for r in results]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
