"""Probes measure: cheap readings the one training loop feeds (see `Probe`)."""
from __future__ import annotations

from doctor.probes._base import Probe
from doctor.probes._base import StepContext
from doctor.probes.activations import Activations
from doctor.probes.gradients import GradNorms


def default_probes() -> list[Probe]:
    """What the doctor measures while training, cheapest first."""
    return [GradNorms(every=10), Activations(every_epochs=1)]


__all__ = ["Activations", "GradNorms", "Probe", "StepContext", "default_probes"]
