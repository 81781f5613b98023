"""Per-layer gradient norms, weight norms and the loss, read right after `backward()`."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import torch
from torch import nn

from doctor.models import user_network
from doctor.probes._base import Probe
from doctor.probes._base import StepContext
from doctor.surgery import WEIGHTED


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Trainable linear and convolution layers in registration order (input side first).

    Found by walking the modules, whatever the network's structure, and named as in the
    user's own network (a `ShapedInput` wrapper adds no prefix). Frozen layers
    (`requires_grad=False`) are left out: they never get a gradient, and reading zeros for
    them would look like vanishing gradients.
    """
    return [(n, m) for n, m in user_network(model).named_modules()
            if isinstance(m, WEIGHTED) and m.weight.requires_grad]


@dataclass
class GradNorms(Probe):
    """Every `every` steps: the L2 norm of each weighted layer's weight gradient and weight.

    One `torch._foreach_norm` call per reading; on the default cadence this costs about 1% of
    a small MLP's training time (see benchmarks/trainer.py).
    """

    every: int = 10
    _weights: list[torch.Tensor] = field(default_factory=list, repr=False)

    def on_train_begin(self, ctx: StepContext) -> None:
        layers = weighted_layers(ctx.model)
        ctx.trace.layers = [n for n, _ in layers]
        self._weights = [m.weight for _, m in layers]

    def on_after_backward(self, ctx: StepContext) -> None:
        if ctx.step % self.every or not self._weights:
            return
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self._weights]
        with torch.no_grad():
            g = torch.stack(torch._foreach_norm(grads)).tolist()
            w = torch.stack(torch._foreach_norm(self._weights)).tolist()
        ctx.trace.steps.append({"step": ctx.step, "epoch": ctx.epoch, "loss": float(ctx.loss),
                                "lr": ctx.lr, "grad_norm": g, "weight_norm": w})

    def on_train_end(self, ctx: StepContext) -> None:
        self._weights = []
