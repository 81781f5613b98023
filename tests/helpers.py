"""Data builders the tests share (import as `from helpers import ...`).

Not `tests.conftest`: a package installed beside us may ship a top-level `tests` package.
"""
from __future__ import annotations

import pandas as pd
from sklearn import datasets
from sklearn.preprocessing import StandardScaler


def blobs_frame(n: int = 300, seed: int = 0, target: str = "label") -> pd.DataFrame:
    X, y = datasets.make_classification(n, 6, n_informative=4, n_redundant=0, class_sep=1.5,
                                        random_state=seed)
    df = pd.DataFrame(StandardScaler().fit_transform(X), columns=[f"f{i}" for i in range(6)])
    df[target] = y
    return df
