"""Dead and saturated unit fractions per activation layer, on a fixed batch each epoch.

Layers are found by hooks, not by assuming a `Sequential`: every activation module gets a
forward hook. A network that calls its activations as functions has none; then the inputs of
its hidden weighted layers (which are the previous activation's outputs) are read instead.
Hooks are attached for one no-grad forward pass and removed in `finally`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from doctor.models import user_network
from doctor.probes._base import Probe
from doctor.probes._base import StepContext
from doctor.surgery import ACTIVATION_TYPES
from doctor.surgery import WEIGHTED

RELU_LIKE = (nn.ReLU, nn.ReLU6)
#: |tanh| above this, or sigmoid within this distance of 0 or 1, counts as saturated:
#: the local derivative is below 0.02 (tanh) / 0.01 (sigmoid) of its maximum.
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01


def _kind(module: nn.Module) -> str:
    if isinstance(module, RELU_LIKE):
        return "relu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    return type(module).__name__.lower()


def unit_stats(out: torch.Tensor, kind: str) -> dict[str, float]:
    """Fractions for one layer's output (rows, units[, …]); channels count as units."""
    a = out.detach().float()
    a = a.transpose(0, 1).reshape(a.shape[1], -1) if a.dim() > 2 else a.T  # (units, samples)
    stats = {"units": int(a.shape[0])}
    if kind == "relu":
        stats["dead"] = float((a <= 0).all(dim=1).float().mean())
    if kind == "tanh":
        stats["saturated"] = float((a.abs() > TANH_SATURATION).float().mean())
    if kind == "sigmoid":
        stats["saturated"] = float(((a < SIGMOID_SATURATION) | (a > 1 - SIGMOID_SATURATION)).float().mean())
    return stats


def _guess_kind(x: torch.Tensor) -> str:
    """For a functional activation, infer its family from the range of its outputs."""
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi > 1:
        return "relu"
    if lo >= 0 and hi <= 1:
        return "sigmoid" if lo > 0 else "relu"
    if lo >= -1 and hi <= 1:
        return "tanh"
    return "other"


@dataclass
class Activations(Probe):
    """At each epoch end: per activation layer, the dead (ReLU) and saturated (tanh/sigmoid) shares."""

    every_epochs: int = 1

    def on_epoch_end(self, ctx: StepContext) -> None:
        if ctx.epoch % self.every_epochs:
            return
        layers = layer_stats(ctx.model, ctx.probe_x)
        ctx.trace.activations.append({"epoch": ctx.epoch, "layers": layers})

    def on_train_end(self, ctx: StepContext) -> None:
        """A run stopped mid-epoch (divergence) still gets its final unit statistics."""
        if ctx.trace.diverged is not None or not ctx.trace.activations:
            ctx.trace.activations.append({"epoch": ctx.epoch, "final": True,
                                          "layers": layer_stats(ctx.model, ctx.probe_x)})


def layer_stats(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """Unit statistics of every activation layer found on one no-grad forward pass of `x`.

    Layers are named as in the user's own network (a `ShapedInput` wrapper adds no prefix);
    the forward pass goes through `model`, so flat rows reach the network in its shape.
    """
    net = user_network(model)
    acts = [(n, m) for n, m in net.named_modules() if isinstance(m, ACTIVATION_TYPES)]
    captured: list[tuple[str, str, torch.Tensor]] = []
    handles = []
    try:
        if acts:
            for name, m in acts:
                handles.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name: captured.append((name, _kind(mod), out))))
        else:  # functional activations: read the inputs of hidden weighted layers
            weighted = [(n, m) for n, m in net.named_modules() if isinstance(m, WEIGHTED)][1:]
            for name, m in weighted:
                handles.append(m.register_forward_pre_hook(
                    lambda mod, inp, name=name: captured.append((f"input of {name}",
                                                                _guess_kind(inp[0]), inp[0]))))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(x)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return [{"name": name, "kind": kind, **unit_stats(out, kind)} for name, kind, out in captured]
