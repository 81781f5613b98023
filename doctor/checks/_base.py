"""Checks judge: `Check.run(evidence) -> list[Symptom]`, and the contract's symptom table."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from torch import nn

    from doctor.data import Split
    from doctor.data import Table
    from doctor.prepare import Prepared
    from doctor.trace import Trace

#: The contract's symptom ids and their stages, in the contract's order.
SYMPTOMS: dict[str, str] = {
    "missing_values": "data",
    "unscaled_features": "data",
    "outliers": "data",
    "class_imbalance": "data",
    "label_noise": "data",
    "duplicate_rows": "data",
    "constant_features": "data",
    "target_leakage": "data",
    "high_dimensionality": "data",
    "limited_data": "data",
    "vanishing_gradient": "training",
    "exploding_gradient": "training",
    "dying_relu": "training",
    "saturated_activations": "training",
    "loss_divergence": "training",
    "loss_oscillation": "training",
    "slow_convergence": "training",
    "overfitting": "training",
    "underfitting": "training",
    "adversarial_vulnerability": "model",
    "poor_calibration": "model",
}


@dataclass(frozen=True)
class Symptom:
    """One finding, field for field a `report.json` symptom entry.

    `remedies` is filled from the remedies whose `treats` names this id
    (`search_spaces.remedies_for`), never typed by the check.
    """

    id: str
    severity: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    remedies: tuple[str, ...] = ()
    caused_by: str | None = None  # the id of a root-cause symptom reported with it

    def __post_init__(self) -> None:
        if self.id not in SYMPTOMS:
            raise ValueError(f"unknown symptom id {self.id!r}")
        object.__setattr__(self, "severity", float(min(1.0, max(0.0, self.severity))))

    @property
    def stage(self) -> str:
        return SYMPTOMS[self.id]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "stage": self.stage, "severity": round(self.severity, 3),
             "summary": self.summary, "evidence": self.evidence, "remedies": list(self.remedies)}
        if self.caused_by:
            d["caused_by"] = self.caused_by
        return d


@dataclass
class DataProfile:
    """What data checks share: the raw table, the training rows, and cheap reference scores."""

    table: Table
    split: Split
    #: Cross-validated score of a well-configured classical model on the training rows
    #: (what the data allows); filled by `checks.data.reference_score`.
    reference: float | None = None
    #: Positions into split.train of rows flagged as likely mislabelled.
    noisy_rows: list[int] = field(default_factory=list)
    #: Measurements computed once and shared by the data checks (`checks.data.profile_data`):
    #: "reference" (the `reference_score` dict), "label_issues", "single_feature", ...
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evidence:
    """The typed bundle a check receives. Fields a stage does not need may be None."""

    profile: DataProfile | None = None
    trace: Trace | None = None
    model: nn.Module | None = None
    data: Prepared | None = None
    val_score: float | None = None
    train_score: float | None = None
    #: Symptoms found by the checks that ran before (training checks read data symptoms
    #: to name root causes; model checks skip a broken training).
    found: list[Symptom] = field(default_factory=list)


class Check(abc.ABC):
    """One detector. Thresholds are dataclass fields of the subclass, each with its rationale."""

    #: The symptom ids this check can report.
    ids: tuple[str, ...] = ()

    @abc.abstractmethod
    def run(self, evidence: Evidence) -> list[Symptom]:
        """Return the symptoms the evidence supports; an empty list means healthy."""

    def not_applicable(self, evidence: Evidence) -> dict[str, str]:
        """{symptom id: why this check cannot judge it here} — empty when it can.

        A check that returns nothing because it *cannot* judge (no trained model, the wrong
        task, a model it cannot differentiate) says so here, so the report can tell "not
        judged" from "healthy". The default: every check can judge its ids.
        """
        return {}
