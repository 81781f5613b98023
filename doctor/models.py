"""The doctor's own network family: a configurable MLP described by a small dataclass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "selu": nn.SELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


@dataclass(frozen=True)
class MLPSpec:
    """A multilayer perceptron: `hidden` widths, one activation, optional residual blocks.

    Normalisation and dropout are not part of the spec: they are inserted by module surgery
    (`doctor.surgery`) so they work the same on the doctor's network and on a user's.
    """

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    residual: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ValueError(f"hidden must list positive widths, got {self.hidden!r}")


class _Residual(nn.Module):
    """x + f(x) for a block whose input and output widths agree."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def build_mlp(spec: MLPSpec, n_features: int, n_outputs: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_features
    for i, h in enumerate(spec.hidden):
        block = nn.Sequential(nn.Linear(width, h), ACTIVATIONS[spec.activation]())
        if spec.residual and i > 0 and h == width:
            layers.append(_Residual(block))
        else:
            layers += list(block)
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)
