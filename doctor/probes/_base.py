"""`Probe`: one cheap measurement on a schedule, fed by the trainer's hook points."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from doctor.trace import Trace


@dataclass
class StepContext:
    """What a probe may look at; passed explicitly to every hook (no hidden state)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    trace: Trace
    probe_x: torch.Tensor  # a fixed batch of training rows for activation statistics
    step: int = 0
    epoch: int = 0
    loss: Any = None  # the current batch loss (a tensor), on after-backward hooks
    lr: float = 0.0


class Probe:
    """Base with no-op hooks; a probe overrides the one or two it needs.

    Hooks: `on_train_begin`, `on_after_backward` (gradients exist, the step is not taken
    yet), `on_epoch_end`, `on_train_end`. Probes write plain numbers into `ctx.trace` and
    never keep tensors. Module hooks a probe registers must be removed before it returns.
    """

    def on_train_begin(self, ctx: StepContext) -> None:
        """Called once before the first step."""

    def on_after_backward(self, ctx: StepContext) -> None:
        """Called after `loss.backward()` and before `optimizer.step()`."""

    def on_epoch_end(self, ctx: StepContext) -> None:
        """Called after each epoch's validation."""

    def on_train_end(self, ctx: StepContext) -> None:
        """Called once after the last epoch (also after a divergence)."""
