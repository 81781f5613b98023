"""`doctor.tune` and the scikit-learn estimators `DoctorClassifier` / `DoctorRegressor`."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.base import RegressorMixin

from doctor.errors import NotFittedError


def tune(model: Any = None, data: Any = None, *, y: Any = None, target: str | None = None,
         task: str | None = None, optimizer: str = "adam", lr: float = 1e-3,
         epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
         device: str = "auto", trials: int = 20, timeout: float | None = None,
         storage: str | None = None, study: str = "doctor", resume: bool = False,
         space: str = "guided", robust_eps: float | None = None):
    """Diagnose, then run the remedy search: the Python face of the search in `doctor fit`.

    Args:
        model, data, y, target, task, optimizer, lr, epochs, batch_size: as `doctor.diagnose`.
        trials, timeout, resume, space, robust_eps: as the CLI's search options.
        storage: an Optuna storage URL; None keeps the study in memory (nothing on disk).
        study: the study name (joined if it exists in `storage`).

    Returns:
        `TuneResult` with `.study`, `.best_params`, `.best_recipe`, `.best_value`, and the
        diagnosis that shaped the search as `.diagnosis`.

    Example:
        >>> import doctor, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
        >>> result = doctor.tune(None, X, y=y, epochs=5, trials=2)
        >>> len(result.study.trials)
        2
    """
    from doctor.api import make_case
    from doctor.diagnosis import diagnose_table
    from doctor.search import tune as run_search

    case = make_case(model, data, y=y, target=target, task=task, optimizer=optimizer, lr=lr,
                     epochs=epochs, batch_size=batch_size, seed=seed, device=device)
    diagnosis, _, _ = diagnose_table(case.table, case.split, case.recipe, device=case.device)
    result = run_search(case.table, case.split, case.recipe, diagnosis, storage=storage,
                        study_name=study, trials=trials, timeout=timeout, resume=resume,
                        join=True, space=space, device=case.device, robust_eps=robust_eps)
    return result


class _DoctorEstimator(BaseEstimator):
    _task = "classification"

    def __init__(self, model: Any = None, *, optimizer: str = "adam", lr: float = 1e-3,
                 epochs: int | None = None, batch_size: int | None = None, trials: int = 10,
                 space: str = "guided", timeout: float | None = None, seed: int = 0,
                 device: str = "auto") -> None:
        self.model = model
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.trials = trials
        self.space = space
        self.timeout = timeout
        self.seed = seed
        self.device = device

    def fit(self, X: Any, y: Any) -> _DoctorEstimator:
        """Diagnose, search `trials` remedies (0: train the recipe as given), keep the best."""
        from doctor.api import make_case
        from doctor.diagnosis import diagnose_table
        from doctor.prepare import prepare
        from doctor.search import tune as run_search
        from doctor.trainer import Trainer

        frame = X if isinstance(X, pd.DataFrame) else None
        case = make_case(self.model, (X, y), task=self._task, optimizer=self.optimizer,
                         lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
                         seed=self.seed, device=self.device)
        diagnosis, run, prepared = diagnose_table(case.table, case.split, case.recipe,
                                                  device=case.device)
        recipe, params = case.recipe, {}
        if self.trials:
            result = run_search(case.table, case.split, case.recipe, diagnosis, storage=None,
                                study_name="doctor", trials=self.trials, timeout=self.timeout,
                                space=self.space, device=case.device)
            recipe, params = result.best_recipe, result.best_params
            noisy = np.asarray(diagnosis.profile.noisy_rows, dtype=int)
            prepared = prepare(case.table, case.split, recipe, device=case.device, noisy=noisy)
            run = Trainer(recipe).fit(prepared)
        self.model_ = run.model
        self.preprocessor_ = prepared.pre
        self.recipe_ = recipe
        self.best_params_ = params
        self.diagnosis_ = diagnosis
        self.symptoms_ = diagnosis.ids
        self.y_scale_ = (prepared.y_mean, prepared.y_std)
        self.device_ = case.device
        self.columns_ = list(case.table.X.columns)
        self.input_shape_ = case.table.input_shape  # e.g. (1, 8, 8) for image tensors; None for rows
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object) if frame is not None else None
        self.n_features_in_ = len(self.columns_)
        if self._task == "classification":
            self.classes_ = np.asarray(case.table.classes)
        return self

    def _raw(self, X: Any):
        from doctor.api import predict_arrays

        if not hasattr(self, "model_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")
        frame = X.copy() if isinstance(X, pd.DataFrame) else \
            pd.DataFrame(self._rows(X), columns=self.columns_)
        frame.columns = [str(c) for c in frame.columns]
        Xp = self.preprocessor_.transform(frame)
        return predict_arrays(self.model_, Xp, self._task, y_mean=self.y_scale_[0],
                              y_std=self.y_scale_[1], device=self.device_)

    def _rows(self, X: Any) -> np.ndarray:
        """X as (rows, features): samples shaped like the training samples are flattened."""
        from doctor.errors import InputError

        arr = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
        shape = getattr(self, "input_shape_", None)
        if arr.ndim > 2:
            if shape is None or tuple(arr.shape[1:]) != tuple(shape):
                raise InputError(f"X has samples of shape {tuple(arr.shape[1:])}, but the model "
                                 f"was fitted on {'rows' if shape is None else tuple(shape)}")
            arr = arr.reshape(len(arr), -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns_):
            raise InputError(f"X has shape {arr.shape}, but the model was fitted on "
                             f"{len(self.columns_)} features per row")
        return arr


class DoctorClassifier(ClassifierMixin, _DoctorEstimator):
    """A scikit-learn classifier: the doctor's diagnosis, remedy search and cured network.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from doctor import DoctorClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = DoctorClassifier(trials=0, epochs=20).fit(X, y)
        >>> clf.predict(X[:2]).shape
        (2,)
    """

    _task = "classification"

    def predict(self, X: Any) -> np.ndarray:
        idx, _ = self._raw(X)
        return self.classes_[idx]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._raw(X)[1]


class DoctorRegressor(RegressorMixin, _DoctorEstimator):
    """A scikit-learn regressor: the doctor's diagnosis, remedy search and cured network."""

    _task = "regression"

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X)[0]
