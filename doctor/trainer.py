"""The one training loop: used by the diagnosis, every trial and the final retrain.

Plain PyTorch over in-memory tensors (one index operation per batch, no DataLoader), seeded,
with four hook points for probes (`doctor.probes.Probe`) and an `on_epoch` callback through
which the search reports intermediate scores and prunes.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from doctor.metrics import score_tensor
from doctor.prepare import Prepared
from doctor.probes import Probe
from doctor.probes import StepContext
from doctor.recipe import Recipe
from doctor.trace import Trace

log = logging.getLogger(__name__)

#: Rows of training data used for per-epoch train scores and activation statistics.
PROBE_ROWS = 512
EVAL_CHUNK = 8192
#: Training stops when the loss is non-finite or a million times its first value: nothing
#: comes back from there. Smaller spikes are left to run — a loss 200× its start after a
#: too-large step can recover, and the checks judge the whole curve (LossDivergence).
DIVERGENCE_FACTOR = 1e6


@dataclass
class Run:
    """What one training run produced."""

    model: nn.Module
    trace: Trace
    val_score: float
    val_loss: float


def make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    kw: dict = {"lr": recipe.lr}
    if recipe.weight_decay:
        kw["weight_decay"] = recipe.weight_decay
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=recipe.momentum, **kw)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.RMSprop(params, momentum=recipe.momentum, **kw)


def make_schedule(recipe: Recipe, opt, steps_per_epoch: int):
    """Returns (scheduler, per_batch). None when the recipe has no schedule."""
    total = max(1, recipe.epochs * steps_per_epoch)
    s = recipe.schedule
    if s is None:
        return None, False
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), True
    if s == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total), True
    if s == "warmup":  # linear warm-up over the first 5% of steps, then cosine decay
        warm = max(1, total // 20)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: (i + 1) / warm if i < warm
            else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, total - warm)))), True
    if s == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, recipe.epochs // 3), gamma=0.3), False
    if s == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=5), False
    raise ValueError(f"unknown schedule {s!r}")


def loss_per_row(recipe: Recipe, out: torch.Tensor, y: torch.Tensor, task: str,
                 class_weights: torch.Tensor | None) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(out.reshape(-1), y, reduction="none")
    if recipe.loss == "focal":  # Lin et al. 2017, gamma = 2
        ce = F.cross_entropy(out, y, weight=class_weights, reduction="none")
        pt = torch.exp(-F.cross_entropy(out, y, reduction="none"))
        return (1 - pt) ** 2 * ce
    if recipe.loss == "gce":  # generalised cross-entropy, robust to label noise (Zhang & Sabuncu 2018)
        p = F.softmax(out, 1).gather(1, y[:, None]).squeeze(1).clamp_min(1e-7)
        w = class_weights[y] if class_weights is not None else 1.0
        return w * (1 - p ** 0.7) / 0.7
    smoothing = 0.1 if recipe.loss == "smoothing" else 0.0
    return F.cross_entropy(out, y, weight=class_weights, reduction="none", label_smoothing=smoothing)


class Trainer:
    """Train a `Recipe` on `Prepared` tensors.

    Args:
        recipe: what to train, exactly as given plus its remedies.
        probes: measurements fed by the loop's hooks (default: none).
        on_epoch: called as `on_epoch(epoch, record)` after each epoch; may raise (e.g.
            `optuna.TrialPruned`) to stop the run.
    """

    def __init__(self, recipe: Recipe, *, probes: list[Probe] | None = None,
                 on_epoch: Callable[[int, dict], None] | None = None) -> None:
        self.recipe = recipe
        self.probes = list(probes or [])
        self.on_epoch = on_epoch

    def _notify(self, event: str, ctx: StepContext) -> None:
        for p in self.probes:
            getattr(p, event)(ctx)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, data: Prepared) -> tuple[float, float]:
        """(mean loss, score) on rows the model does not train on."""
        was = model.training
        model.eval()
        out = torch.cat([model(X[i:i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK)])
        model.train(was)
        loss = float(loss_per_row(self.recipe, out, y, data.task, None).mean())
        return loss, score_tensor(out, y, data.task)

    def fit(self, data: Prepared) -> Run:
        r = self.recipe
        device = data.X_train.device
        torch.manual_seed(r.seed)
        np.random.seed(r.seed % 2**32)
        model = r.build(data.n_features, data.n_outputs).to(device)
        opt = make_optimizer(r, model.parameters())
        X, y, w = data.X_train, data.y_train, data.w_train
        n, bs = len(X), min(int(r.batch_size), len(X))
        steps_per_epoch = math.ceil(n / bs)
        sched, per_batch = make_schedule(r, opt, steps_per_epoch)
        gen = torch.Generator(device="cpu").manual_seed(r.seed)
        probe_idx = torch.randperm(n, generator=gen)[:PROBE_ROWS].to(device)
        trace = Trace(info={"device": str(device), "rows": n, "batch_size": bs,
                            "steps_per_epoch": steps_per_epoch})
        ctx = StepContext(model, opt, trace, X[probe_idx], lr=r.lr)
        check_every = 1 if device.type == "cpu" else 16
        best = (math.inf, None, -1)  # early stopping: (val loss, state, epoch)
        first_loss = None
        started = time.perf_counter()
        self._notify("on_train_begin", ctx)
        try:
            for epoch in range(r.epochs):
                ctx.epoch = epoch
                model.train()
                perm = torch.randperm(n, generator=gen).to(device)
                loss_sum = torch.zeros((), device=device)
                for i in range(0, n, bs):
                    idx = perm[i:i + bs]
                    if len(idx) < 2 and n >= 2:
                        continue  # batch norm cannot train on one row
                    loss = self._step_loss(model, X[idx], y[idx], None if w is None else w[idx], data)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    ctx.loss, ctx.lr = loss.detach(), opt.param_groups[0]["lr"]
                    self._notify("on_after_backward", ctx)
                    if r.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                    opt.step()
                    if sched is not None and per_batch:
                        sched.step()
                    loss_sum += loss.detach() * len(idx)
                    ctx.step += 1
                    if ctx.step % check_every == 0:
                        value = float(loss.detach())
                        first_loss = value if first_loss is None else first_loss
                        if not math.isfinite(value) or (
                                first_loss > 0 and value > DIVERGENCE_FACTOR * first_loss):
                            what = "NaN" if math.isnan(value) else "infinite" if math.isinf(value) \
                                else f"{value:.3g}, {value / first_loss:.0f}× its first value"
                            trace.diverged = {"step": ctx.step, "epoch": epoch,
                                              "reason": f"loss became {what} at step {ctx.step}"}
                            raise _Diverged
                record = self._epoch_record(model, data, epoch, float(loss_sum) / n, opt, probe_idx)
                trace.epochs.append(record)
                self._notify("on_epoch_end", ctx)
                if sched is not None and not per_batch:
                    sched.step(record["val_loss"]) if r.schedule == "plateau" else sched.step()
                if self.on_epoch is not None:
                    self.on_epoch(epoch, record)
                if r.early_stopping:
                    if record["val_loss"] < best[0]:
                        best = (record["val_loss"], copy.deepcopy(model.state_dict()), epoch)
                    elif epoch - best[2] >= r.early_stopping:
                        trace.info["stopped_early_at"] = epoch
                        break
        except _Diverged:
            log.debug("training diverged: %s", trace.diverged["reason"])
        finally:
            trace.info["seconds"] = time.perf_counter() - started
            self._notify("on_train_end", ctx)
        if best[1] is not None:
            model.load_state_dict(best[1])
            trace.info["restored_epoch"] = best[2]
        val_loss, val_score = self.evaluate(model, data.X_val, data.y_val, data)
        trace.info["samples_per_s"] = ctx.step * bs / max(trace.info["seconds"], 1e-9)
        return Run(model, trace, val_score, val_loss)

    def _step_loss(self, model, xb, yb, wb, data: Prepared) -> torch.Tensor:
        r = self.recipe
        if r.input_noise:
            xb = xb + r.input_noise * torch.randn_like(xb)
        if r.adversarial and r.adv_eps > 0:
            from doctor.robustness import perturb

            k = int(round(r.adv_ratio * len(xb)))
            if k:
                model.eval()  # attack the network as it predicts; batch norm stats untouched
                adv = perturb(model, xb[:k], yb[:k], r.adv_eps, data.task, method=r.adversarial)
                model.train()
                xb = torch.cat([adv, xb[k:]])
        if r.mixup and len(xb) > 1:
            lam = float(np.random.beta(r.mixup, r.mixup))
            perm = torch.randperm(len(xb), device=xb.device)
            out = model(lam * xb + (1 - lam) * xb[perm])
            rows = lam * loss_per_row(r, out, yb, data.task, data.class_weights) + \
                (1 - lam) * loss_per_row(r, out, yb[perm], data.task, data.class_weights)
        else:
            rows = loss_per_row(r, model(xb), yb, data.task, data.class_weights)
        if wb is not None:
            return (rows * wb).sum() / wb.sum()
        return rows.mean()

    def _epoch_record(self, model, data: Prepared, epoch: int, train_loss: float, opt,
                      probe_idx: torch.Tensor) -> dict:
        val_loss, val_score = self.evaluate(model, data.X_val, data.y_val, data)
        _, train_score = self.evaluate(model, data.X_train[probe_idx], data.y_train[probe_idx], data)
        return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                "train_score": train_score, "val_score": val_score,
                "lr": float(opt.param_groups[0]["lr"])}


class _Diverged(Exception):
    pass
