"""Checks judge: each turns measured evidence into contract symptoms (see `Check`)."""
from __future__ import annotations

from doctor.checks._base import SYMPTOMS
from doctor.checks._base import Check
from doctor.checks._base import DataProfile
from doctor.checks._base import Evidence
from doctor.checks._base import Symptom

__all__ = ["SYMPTOMS", "Check", "DataProfile", "Evidence", "Symptom"]
