"""Regenerate the bundled example CSVs from data that ships with scikit-learn.

    python examples/make_examples.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import datasets

HERE = Path(__file__).parent


def main() -> None:
    # Breast cancer with its raw scales (areas in the thousands, smoothness near 0.1).
    bc = datasets.load_breast_cancer(as_frame=True)
    frame = bc.frame.rename(columns={"target": "diagnosis"})
    frame["diagnosis"] = np.where(frame["diagnosis"] == 1, "benign", "malignant")
    frame.to_csv(HERE / "breast_cancer.csv", index=False)

    # Wine, raw scales, with the third cultivar made rare (8 of its 48 rows kept).
    wine = datasets.load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    rng = np.random.default_rng(0)
    rare = np.flatnonzero(wine.cultivar == 2)
    drop = rng.choice(rare, len(rare) - 8, replace=False)
    wine = wine.drop(index=drop).reset_index(drop=True)
    wine["cultivar"] = wine["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    wine.to_csv(HERE / "wine_imbalanced.csv", index=False)

    # Diabetes progression (regression), unscaled features and target.
    diab = datasets.load_diabetes(as_frame=True, scaled=False).frame
    diab.to_csv(HERE / "diabetes.csv", index=False)


if __name__ == "__main__":
    main()
