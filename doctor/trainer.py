"""The one training loop: used by the diagnosis, every trial and the final retrain.

Plain PyTorch over in-memory tensors (one index operation per batch, no DataLoader), seeded,
with four hook points for probes (`doctor.probes.Probe`) and an `on_epoch` callback through
which the search reports intermediate scores and prunes.

Restarts (`Recipe.restarts` = k > 1) run in this same loop: k seeds each train a short warm-up
(`warmup_epochs`) without probes or callbacks, the best on validation is kept, and it trains
on for the rest of the budget; its warm-up epochs are then reported to `on_epoch` like the
others and stay in its trace. Probes observe the chosen run from the end of its warm-up.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any
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
#: Restarts (`Recipe.restarts`): the share of the budget each seed trains before the best is
#: chosen, and the fewest epochs that is (one epoch's validation score is too noisy to rank).
WARMUP_SHARE = 0.1
MIN_WARMUP = 2


@dataclass
class Run:
    """What one training run produced."""

    model: nn.Module
    trace: Trace
    val_score: float
    val_loss: float


def make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    # always explicit: torch's AdamW defaults to a decay of 0.01, and `weight_decay = 0` (the
    # weight_decay remedy switched off) must mean none
    kw: dict = {"lr": recipe.lr, "weight_decay": float(recipe.weight_decay)}
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
                 class_weights: torch.Tensor | None, class_prior: torch.Tensor | None = None) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(out.reshape(-1), y, reduction="none")
    if recipe.loss == "logit_adjusted" and class_prior is not None:
        # Menon et al. 2021: train on logits + log(prior), predict on the plain logits (the
        # validation loss, which passes no prior, is read off the plain logits too)
        out = out + torch.log(class_prior)
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
        train_scores: score `PROBE_ROWS` training rows after each epoch (the trace's
            "train_score", which the overfitting and underfitting checks read). A fit whose
            trace nobody reads (a learning-curve point, an extra ensemble member) turns it off:
            the record's "train_score" is then NaN, and training is the same step for step
            (the scoring pass runs in eval mode without gradients and draws no random numbers).
    """

    def __init__(self, recipe: Recipe, *, probes: list[Probe] | None = None,
                 on_epoch: Callable[[int, dict], None] | None = None,
                 train_scores: bool = True) -> None:
        self.recipe = recipe
        self.probes = list(probes or [])
        self.on_epoch = on_epoch
        self.train_scores = train_scores

    def _notify(self, event: str, ctx: StepContext) -> None:
        for p in self.probes:
            getattr(p, event)(ctx)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, data: Prepared) -> tuple[float, float]:
        """(mean loss, score) on rows the model does not train on.

        The loss is the one the model trains on, class weights included: with
        `class_weight` the training loss weights each row by its class's inverse frequency,
        and a validation loss without those weights would measure another objective. Early
        stopping keeps the epoch with the lowest of this loss, the overfitting check reads
        its rise beside the training loss, and the report plots the two together, so both
        must weigh rows alike (the weighted loss is also the surrogate of balanced accuracy,
        the search's objective).
        """
        was = model.training
        model.eval()
        out = torch.cat([model(X[i:i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK)])
        model.train(was)
        loss = float(loss_per_row(self.recipe, out, y, data.task, data.class_weights).mean())
        return loss, score_tensor(out, y, data.task)

    def fit(self, data: Prepared) -> Run:
        r = self.recipe
        device = data.X_train.device
        n = len(data.X_train)
        probe_idx = torch.randperm(n, generator=torch.Generator(device="cpu").manual_seed(r.seed))
        probe_idx = probe_idx[:PROBE_ROWS].to(device)
        started = time.perf_counter()
        if int(r.restarts) > 1:
            state = self._best_start(data, probe_idx)
        else:
            state = self._start(data, r.seed, probe_idx)
        self._notify("on_train_begin", state.ctx)  # probes bind to the run that trains on
        try:
            # the chosen run's warm-up epochs are reported like any other epoch
            for record in list(state.trace.epochs):
                self._after_epoch(state, record, report_only=True)
            if r.early_stopping and state.trace.epochs and state.trace.diverged is None:
                last = state.trace.epochs[-1]  # the weights now are those of the last warm-up epoch
                state.best = (last["val_loss"], snapshot(state.model), last["epoch"])
            self._train(state, data, len(state.trace.epochs), r.epochs)
        except (_Diverged, _Stop):
            pass
        finally:
            state.trace.info["seconds"] = time.perf_counter() - started
            self._notify("on_train_end", state.ctx)
        model, trace = state.model, state.trace
        if state.best[1] is not None:
            model.load_state_dict(state.best[1])
            trace.info["restored_epoch"] = state.best[2]
        val_loss, val_score = self.evaluate(model, data.X_val, data.y_val, data)
        trace.info["samples_per_s"] = state.ctx.step * state.bs / max(trace.info["seconds"], 1e-9)
        return Run(model, trace, val_score, val_loss)

    # ------------------------------------------------------------------ the loop
    def _start(self, data: Prepared, seed: int, probe_idx: torch.Tensor) -> _State:
        """A fresh run from `seed`: the network, its optimiser and schedule, its batch order."""
        r = self.recipe
        device = data.X_train.device
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        model = r.build(data.n_features, data.n_outputs).to(device)
        opt = make_optimizer(r, model.parameters())
        n = len(data.X_train)
        bs = min(int(r.batch_size), n)
        steps_per_epoch = math.ceil(n / bs)
        sched, per_batch = make_schedule(r, opt, steps_per_epoch)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        torch.randperm(n, generator=gen)  # the probe rows' draw: batches follow as with one seed
        trace = Trace(info={"device": str(device), "rows": n, "batch_size": bs,
                            "steps_per_epoch": steps_per_epoch,
                            "parameters": sum(p.numel() for p in model.parameters())})
        ctx = StepContext(model, opt, trace, data.X_train[probe_idx], lr=r.lr)
        return _State(model, opt, sched, per_batch, gen, trace, ctx, bs, probe_idx, seed)

    def _best_start(self, data: Prepared, probe_idx: torch.Tensor) -> _State:
        """Warm up `recipe.restarts` seeds and return the best run on validation.

        Seeds are the recipe's seed and the next ones, so restarts = 1 is the recipe as
        given. Each trains `warmup_epochs` (no probes, no pruning, no early stop); the one with
        the best validation score (then the lowest validation loss) goes on. A run that
        diverges in its warm-up ranks last.
        """
        r = self.recipe
        warm = warmup_epochs(r)
        best, best_key, tried = None, None, []
        for i in range(int(r.restarts)):
            state = self._start(data, r.seed + i, probe_idx)
            state.silent = True
            try:
                self._train(state, data, 0, warm)
            except _Diverged:
                pass
            last = state.trace.epochs[-1] if state.trace.epochs else None
            ok = state.trace.diverged is None and last is not None
            key = (ok, last["val_score"] if ok else -math.inf, -last["val_loss"] if ok else -math.inf)
            tried.append({"seed": state.seed, "val_score": last["val_score"] if ok else None,
                          "val_loss": last["val_loss"] if ok else None,
                          "diverged": state.trace.diverged is not None})
            if best_key is None or key > best_key:
                best, best_key = state, key
        best.silent = False
        best.trace.info["restarts"] = {"warmup_epochs": warm, "tried": tried, "chosen_seed": best.seed}
        return best

    def _train(self, st: _State, data: Prepared, first: int, last: int) -> None:
        """Train `st` for epochs first … last-1. Raises _Diverged or what `on_epoch` raises."""
        if st.trace.diverged is not None:
            return
        r = self.recipe
        X, y, w = data.X_train, data.y_train, data.w_train
        n, bs, model, opt, ctx = len(X), st.bs, st.model, st.opt, st.ctx
        device = X.device
        check_every = 1 if device.type == "cpu" else 16
        for epoch in range(first, last):
            ctx.epoch = epoch
            model.train()
            perm = torch.randperm(n, generator=st.gen).to(device)
            loss_sum = torch.zeros((), device=device)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                if len(idx) < 2 and n >= 2:
                    continue  # batch norm cannot train on one row
                loss = self._step_loss(model, X[idx], y[idx], None if w is None else w[idx], data)
                opt.zero_grad(set_to_none=True)
                # the L1 penalty is optimised but not recorded: train_loss stays the data loss,
                # comparable with the validation loss (as weight decay, inside the optimiser)
                (loss + r.l1 * l1_norm(model) if r.l1 else loss).backward()
                ctx.loss, ctx.lr = loss.detach(), opt.param_groups[0]["lr"]
                if not st.silent:
                    self._notify("on_after_backward", ctx)
                if r.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                opt.step()
                if st.sched is not None and st.per_batch:
                    st.sched.step()
                loss_sum += loss.detach() * len(idx)
                ctx.step += 1
                if ctx.step % check_every == 0:
                    value = float(loss.detach())
                    st.first_loss = value if st.first_loss is None else st.first_loss
                    first_loss = st.first_loss
                    if not math.isfinite(value) or (
                            first_loss > 0 and value > DIVERGENCE_FACTOR * first_loss):
                        what = "NaN" if math.isnan(value) else "infinite" if math.isinf(value) \
                            else f"{value:.3g}, {value / first_loss:.0f}× its first value"
                        st.trace.diverged = {"step": ctx.step, "epoch": epoch,
                                             "reason": f"loss became {what} at step {ctx.step}"}
                        log.debug("training diverged: %s", st.trace.diverged["reason"])
                        raise _Diverged
            record = self._epoch_record(model, data, epoch, float(loss_sum) / n, opt, st.probe_idx)
            st.trace.epochs.append(record)
            if not st.silent:
                self._notify("on_epoch_end", ctx)
            if st.sched is not None and not st.per_batch:
                st.sched.step(record["val_loss"]) if r.schedule == "plateau" else st.sched.step()
            if not st.silent:
                self._after_epoch(st, record)

    def _after_epoch(self, st: _State, record: dict, *, report_only: bool = False) -> None:
        """The epoch's callback, then early stopping (which raises _Stop to end the run)."""
        r = self.recipe
        epoch = record["epoch"]
        if self.on_epoch is not None:
            self.on_epoch(epoch, record)
        if r.early_stopping and not report_only:
            if record["val_loss"] < st.best[0]:
                st.best = (record["val_loss"], snapshot(st.model), epoch)
            elif epoch - st.best[2] >= r.early_stopping:
                st.trace.info["stopped_early_at"] = epoch
                raise _Stop

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
            rows = lam * loss_per_row(r, out, yb, data.task, data.class_weights, data.class_prior) + \
                (1 - lam) * loss_per_row(r, out, yb[perm], data.task, data.class_weights, data.class_prior)
        else:
            rows = loss_per_row(r, model(xb), yb, data.task, data.class_weights, data.class_prior)
        if wb is not None:
            return (rows * wb).sum() / wb.sum()
        return rows.mean()

    def _epoch_record(self, model, data: Prepared, epoch: int, train_loss: float, opt,
                      probe_idx: torch.Tensor) -> dict:
        val_loss, val_score = self.evaluate(model, data.X_val, data.y_val, data)
        train_score = float("nan")
        if self.train_scores:
            _, train_score = self.evaluate(model, data.X_train[probe_idx], data.y_train[probe_idx], data)
        return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                "train_score": train_score, "val_score": val_score,
                "lr": float(opt.param_groups[0]["lr"])}


def l1_norm(model: nn.Module) -> torch.Tensor:
    """Σ|w| over the trainable weights of two or more dimensions (linear matrices, convolution
    kernels). Biases and normalisation scales are left out, as weight decay conventions do:
    shrinking them to zero constrains no input's influence."""
    terms = [p.abs().sum() for p in model.parameters() if p.requires_grad and p.dim() > 1]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def snapshot(model: nn.Module) -> dict[str, Any]:
    """A copy of `model.state_dict()` that later steps do not change: tensors cloned, anything
    else (a module's `get_extra_state`) deep-copied. Early stopping takes one at every epoch
    that improves; `copy.deepcopy` of the whole dict spends its time in Python per object (a
    one-off cProfile in session 7, not a repo benchmark: 1.45 s of a 14.5 s diagnosis)."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def warmup_epochs(recipe: Recipe) -> int:
    """Epochs each restart trains before the best is chosen: a tenth of the budget, at least
    one and at least `MIN_WARMUP` when the budget allows. A tenth keeps k = 5 restarts at
    1.4× the cost of one run; loss curves separate good and poor starts early (the first
    epochs carry most of a small MLP's loss drop)."""
    return int(min(recipe.epochs, max(MIN_WARMUP, math.ceil(WARMUP_SHARE * recipe.epochs))))


@dataclass
class _State:
    """One run in progress: what the loop needs to train it on, epoch after epoch."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: object
    per_batch: bool
    gen: torch.Generator
    trace: Trace
    ctx: StepContext
    bs: int
    probe_idx: torch.Tensor
    seed: int
    silent: bool = False  # a warm-up candidate: no probes, no callback, no early stop
    first_loss: float | None = None
    best: tuple = (math.inf, None, -1)  # early stopping: (val loss, state dict, epoch)


class _Diverged(Exception):
    pass


class _Stop(Exception):
    """Early stopping ended the run."""
