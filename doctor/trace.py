"""`Trace`: the JSON-able record of one training run, what checks read and the report plots."""
from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any


@dataclass
class Trace:
    """Per-epoch metrics, per-step probe readings and per-epoch activation statistics.

    Everything here is plain floats, ints and strings: probes convert tensors at capture.
    """

    layers: list[str] = field(default_factory=list)  # weighted layers, input side first
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    activations: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def column(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        return cls(**d)
