"""The doctor's own network family (a configurable MLP described by a small dataclass), and
`ShapedInput`, which hands a user's network (a CNN, say) its rows in their original shape."""
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


class ShapedInput(nn.Module):
    """Hands a user's network its inputs in their own shape: `(B, n)` rows → `(B, *shape)`.

    The doctor keeps every data set as a flat table (one column per pixel for images), so
    preprocessing, resampling, the probes' row batches, adversarial attacks and attributions
    all work on rows. A network built for image tensors is wrapped in this module once, where
    the network is built, and everything that calls the model passes rows as usual.

    The user's module is the child `net`; module surgery and the probes see its layers (the
    probes name them without the `net.` prefix, see `user_network`).
    """

    def __init__(self, net: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = net
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(len(x), *self.shape))

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def user_network(model: nn.Module) -> nn.Module:
    """The network the user wrote: `model` itself, or the one a `ShapedInput` wraps."""
    return model.net if isinstance(model, ShapedInput) else model


class SeedEnsemble(nn.Module):
    """Networks of one recipe trained from different seeds, predicting together.

    Classification averages the members' probabilities and returns the log of that mean, so
    whatever reads logits (argmax, softmax, temperature scaling, the losses, Captum, FGSM/PGD)
    reads the ensemble's probabilities; regression averages the outputs.
    """

    def __init__(self, members: list[nn.Module], task: str) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.classification = task == "classification"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x) for m in self.members])
        if self.classification:
            return torch.logsumexp(outs.log_softmax(-1), dim=0) - torch.log(
                torch.tensor(float(len(self.members)), device=outs.device))
        return outs.mean(0)
