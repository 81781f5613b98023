"""The Python API: doctor.diagnose, doctor.tune and the scikit-learn estimators."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from torch import nn

import doctor
from helpers import blobs_frame


def arrays(n: int = 240):
    frame = blobs_frame(n, seed=5)
    return frame.drop(columns="label").to_numpy(), frame["label"].to_numpy()


def test_diagnose_on_arrays_dataframe_and_module():
    X, y = arrays()
    d = doctor.diagnose(None, X, y=y, epochs=5)
    assert isinstance(d, doctor.Diagnosis) and d.task == "classification"
    assert all(isinstance(s, doctor.Symptom) for s in d.symptoms)
    frame = blobs_frame(240, seed=5)
    assert doctor.diagnose(None, frame, target="label", epochs=5).task == "classification"

    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in net.parameters()]
    d = doctor.diagnose(net, torch.tensor(X, dtype=torch.float32), y=torch.tensor(y),
                        optimizer="sgd", lr=1e4, epochs=5)
    assert d.ids[0] == "loss_divergence"  # the recipe as given, measured, not repaired
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # never modified


def test_tune_returns_the_study_and_best_recipe():
    X, y = arrays()
    result = doctor.tune(None, X, y=y, epochs=5, trials=2)
    assert len(result.study.trials) == 2
    assert result.best_value is not None and 0 <= result.best_value <= 1
    assert result.diagnosis is not None
    assert result.storage == "in-memory"


def test_classifier_is_a_scikit_learn_estimator():
    X, y = arrays()
    clf = doctor.DoctorClassifier(trials=2, epochs=8)
    assert clone(clf).get_params() == clf.get_params()
    clf.set_params(lr=2e-3)
    assert clf.lr == 2e-3
    from doctor.errors import NotFittedError

    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y)
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.score(X, y) > 0.8
    assert isinstance(clf.symptoms_, list)


def test_regressor_predicts_in_target_units():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 1000 + 50 * X[:, 0] - 20 * X[:, 1]
    reg = doctor.DoctorRegressor(trials=0, epochs=40).fit(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    pred = reg.predict(pd.DataFrame(X[:10], columns=["a", "b", "c"]))
    assert np.abs(pred - y[:10]).mean() < 30
    assert reg.score(pd.DataFrame(X, columns=["a", "b", "c"]), y) > 0.8
