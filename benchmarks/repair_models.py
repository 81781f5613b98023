"""Faulty networks for benchmarks/repair.py, as `FILE.py:FUNC` factories.

They live in a file (not as Python callables) so that the doctor's bundle can rebuild them:
`--model benchmarks/repair_models.py:deep_tanh_tiny` on the command line, or the same string
as `model=` in `doctor.api.make_case`.
"""
from __future__ import annotations

from torch import nn

DEPTH, WIDTH, TINY_STD = 6, 64, 0.01


def deep_tanh_tiny(n_features: int, n_outputs: int) -> nn.Module:
    """Six tanh layers of 64 with weights N(0, 0.01²) and zero biases.

    Each layer shrinks the signal by about sqrt(64) · 0.01 = 0.08, so after six layers the
    forward signal and the gradients reaching the first layers vanish (the classic
    vanishing-gradient fault of a deep saturating network with a too-small init).
    """
    layers: list[nn.Module] = []
    width = n_features
    for _ in range(DEPTH):
        layers += [nn.Linear(width, WIDTH), nn.Tanh()]
        width = WIDTH
    net = nn.Sequential(*layers, nn.Linear(width, n_outputs))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=TINY_STD)
            nn.init.zeros_(m.bias)
    return net
