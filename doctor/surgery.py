"""Module surgery on any `nn.Module`: swap activations, re-initialise, insert norm or dropout.

The remedies that change a network work on the user's own module, found by walking it, not
by assuming a `Sequential`. When an edit cannot apply (activations called as functions, no
linear layers) it raises `SurgeryError` saying so, and the search records that remedy as not
applicable instead of silently swapping in another network.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from doctor.errors import DoctorError
from doctor.models import ACTIVATIONS

if TYPE_CHECKING:
    from doctor.recipe import Recipe

ACTIVATION_TYPES = tuple(set(ACTIVATIONS.values()) | {nn.ReLU6, nn.PReLU, nn.Softplus, nn.Hardtanh})
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class SurgeryError(DoctorError):
    """A module edit does not apply to this network."""


def _replace(root: nn.Module, pred, make) -> int:
    """Replace every child module matching `pred` by `make(child)`; returns how many."""
    count = 0
    for name, child in list(root.named_children()):
        if pred(child):
            setattr(root, name, make(child))
            count += 1
        else:
            count += _replace(child, pred, make)
    return count


def swap_activations(net: nn.Module, name: str) -> nn.Module:
    n = _replace(net, lambda m: isinstance(m, ACTIVATION_TYPES), lambda m: ACTIVATIONS[name]())
    if n == 0:
        raise SurgeryError("the network has no activation modules (it calls activations as "
                           "functions), so they cannot be swapped")
    return net


def hidden_linears(net: nn.Module) -> list[nn.Module]:
    """Weighted layers in registration order, without the last one (the output layer)."""
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED)]
    return layers[:-1]


def insert_after_hidden(net: nn.Module, make) -> nn.Module:
    hidden = {id(m) for m in hidden_linears(net)}
    if not hidden:
        raise SurgeryError("the network has no hidden linear or convolution layer to follow")
    _replace(net, lambda m: id(m) in hidden, lambda m: nn.Sequential(m, make(m)))
    return net


def _norm_for(kind: str):
    def make(layer: nn.Module) -> nn.Module:
        if isinstance(layer, nn.Linear):
            width = layer.out_features
            return nn.BatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)
        channels = layer.out_channels
        if kind == "batch":
            return {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d,
                    nn.Conv3d: nn.BatchNorm3d}[type(layer)](channels)
        return nn.GroupNorm(1, channels)
    return make


def insert_dropout(net: nn.Module, p: float) -> nn.Module:
    n = _replace(net, lambda m: isinstance(m, ACTIVATION_TYPES), lambda m: nn.Sequential(m, nn.Dropout(p)))
    if n == 0:  # functional activations: dropout after each hidden layer's output instead
        insert_after_hidden(net, lambda m: nn.Dropout(p))
    return net


def reinit(net: nn.Module, scheme: str) -> nn.Module:
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED)]
    if not layers:
        raise SurgeryError("the network has no linear or convolution layer to re-initialise")
    for m in layers:
        w = m.weight
        if scheme == "xavier":
            nn.init.xavier_uniform_(w)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w)
        elif scheme == "lecun":  # the init SELU's self-normalisation assumes
            nn.init.normal_(w, std=1.0 / math.sqrt(w[0].numel()))
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return net


def apply_recipe(net: nn.Module, recipe: Recipe) -> nn.Module:
    """Apply the recipe's edits in a fixed order, so a bundle can replay them exactly."""
    if recipe.activation:
        swap_activations(net, recipe.activation)
    if recipe.norm:
        insert_after_hidden(net, _norm_for(recipe.norm))
    if recipe.dropout and recipe.dropout > 0:
        insert_dropout(net, recipe.dropout)
    if recipe.init:
        reinit(net, recipe.init)
    return net
