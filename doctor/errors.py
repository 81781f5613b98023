"""The doctor's exceptions: one small hierarchy the CLI maps to exit codes."""
from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class DoctorError(Exception):
    """Base of every error the doctor raises on purpose."""


class InputError(DoctorError, ValueError):
    """Bad input or usage: the CLI prints this one line and exits with code 2.

    The message names the file, column, row or option, says what is wrong and what to do.
    """


class NotFittedError(DoctorError, _SklearnNotFittedError):
    """An estimator or preprocessor was used before `fit`."""
