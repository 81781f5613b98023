"""doctor: examine, diagnose, treat and explain a neural network on tabular data.

The front door:

- `doctor.diagnose(model, data, ...)` → a `Diagnosis` with contract symptoms;
- `doctor.tune(model, data, ...)` → the remedy search's study and best result;
- `doctor.DoctorClassifier` / `doctor.DoctorRegressor` → scikit-learn estimators.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

__version__ = "0.1.0"

__all__ = ["Diagnosis", "DoctorClassifier", "DoctorRegressor", "Symptom", "diagnose", "tune",
           "__version__"]

_LAZY = {
    "diagnose": ("doctor.diagnosis", "diagnose"),
    "Diagnosis": ("doctor.diagnosis", "Diagnosis"),
    "tune": ("doctor.estimators", "tune"),
    "DoctorClassifier": ("doctor.estimators", "DoctorClassifier"),
    "DoctorRegressor": ("doctor.estimators", "DoctorRegressor"),
    "Symptom": ("doctor.checks", "Symptom"),
}

if TYPE_CHECKING:
    from doctor.checks import Symptom
    from doctor.diagnosis import Diagnosis
    from doctor.diagnosis import diagnose
    from doctor.estimators import DoctorClassifier
    from doctor.estimators import DoctorRegressor
    from doctor.estimators import tune


def __getattr__(name: str) -> Any:
    """Import heavy parts (torch, optuna) on first use, so `doctor --help` stays fast."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'doctor' has no attribute {name!r}")
