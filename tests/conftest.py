"""Small data sets and recipes the tests share; everything is generated, nothing downloaded."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from sklearn import datasets

torch.set_num_threads(1)

from helpers import blobs_frame  # noqa: E402  (tests/ is on sys.path: no tests/__init__.py)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own folder, so studies/ and doctor-out/ never leak."""
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def blobs_csv(tmp_path) -> Path:
    path = tmp_path / "blobs.csv"
    blobs_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def regression_csv(tmp_path) -> Path:
    X, y = datasets.make_regression(300, 5, noise=5.0, random_state=1)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    df["price"] = y * 100 + 5000
    path = tmp_path / "houses.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def relu_model_file(tmp_path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent("""
        import torch.nn as nn

        def build(n_features, n_outputs):
            return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(),
                                 nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, n_outputs))
        """))
    return path


def run_cli(*args: str) -> int:
    from doctor.cli import main

    return main([str(a) for a in args])


@pytest.fixture
def cli():
    return run_cli
