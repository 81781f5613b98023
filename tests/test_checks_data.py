"""Data checks: each fires on a planted defect and stays silent on its clean twin; healthy
real data gives no data symptom. Everything is generated here (no downloads)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from doctor.checks import SYMPTOMS
from doctor.checks import DataProfile
from doctor.checks import Evidence
from doctor.checks.data import ClassImbalance
from doctor.checks.data import ConstantFeatures
from doctor.checks.data import DuplicateRows
from doctor.checks.data import HighDimensionality
from doctor.checks.data import LabelNoise
from doctor.checks.data import LimitedData
from doctor.checks.data import MissingValues
from doctor.checks.data import Outliers
from doctor.checks.data import TargetLeakage
from doctor.checks.data import UnscaledFeatures
from doctor.checks.data import data_checks
from doctor.checks.data import learning_curve
from doctor.checks.data import profile_data
from doctor.checks.data import reference_score
from doctor.checks.data import _yj
from doctor.data import from_frame
from doctor.data import split


# ----------------------------------------------------------------------------- helpers
def frame(X, y, names=None) -> pd.DataFrame:
    X = np.asarray(X)
    df = pd.DataFrame(X, columns=names or [f"x{i}" for i in range(X.shape[1])])
    df["target"] = np.asarray(y)
    return df


def cheap(df: pd.DataFrame, **kw) -> Evidence:
    """A profile without the model-based measurements (checks that need none)."""
    t = from_frame(df, **kw)
    return Evidence(profile=DataProfile(t, split(t)))


def full(df: pd.DataFrame, seed: int = 0, **kw) -> Evidence:
    t = from_frame(df, **kw)
    return Evidence(profile=profile_data(t, split(t, seed=seed), seed=seed))


def ids(ev: Evidence) -> list[str]:
    return [s.id for c in data_checks() for s in c.run(ev)]


def one(check, ev: Evidence):
    out = check.run(ev)
    assert len(out) == 1, out
    s = out[0]
    assert s.id == check.ids[0]
    assert 0.0 <= s.severity <= 1.0
    assert s.summary and s.summary.endswith(".")
    json.dumps(s.to_dict())  # evidence a person can read back
    return s


RNG = np.random.default_rng(0)


def gaussian(n=2000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + X[:, 1] + rng.normal(0, 1.0, n) > 0).astype(int)
    return frame(X, y)


def flipped(df: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = df.copy()
    idx = rng.choice(len(df), int(share * len(df)), replace=False)
    df.loc[idx, "target"] = 1 - df.loc[idx, "target"]
    return df


# ----------------------------------------------------------------------------- interface
def test_checks_in_contract_order_and_dataclasses():
    checks = data_checks()
    assert [c.ids[0] for c in checks] == [k for k, v in SYMPTOMS.items() if v == "data"]
    for c in checks:
        assert dataclasses.is_dataclass(c)
        assert dataclasses.fields(c), f"{type(c).__name__} has no threshold fields"


def test_reference_score_classification():
    X, y = datasets.make_classification(600, 6, n_informative=4, n_classes=3, random_state=0)
    t = from_frame(frame(X, y))
    sp = split(t)
    ref = reference_score(t, sp, seed=0)
    assert ref["model"] in ("logistic_regression", "hist_gradient_boosting")
    assert 0.6 < ref["score"] <= 1.0
    P = ref["oof_proba"]
    assert P.shape == (len(sp.train), 3)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-6)
    assert [c["fraction"] for c in ref["curve"]] == [0.25, 0.5, 1.0]
    assert ref["curve"][-1]["score"] == pytest.approx(ref["score"])
    assert ref["curve"][0]["rows"] < ref["curve"][1]["rows"] < ref["curve"][2]["rows"]


def test_reference_score_regression_with_categoricals_and_nan():
    rng = np.random.default_rng(1)
    n = 800
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["u", "v", None], n),
                       "c": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
                       "empty": np.nan})
    df["target"] = 2 * df["a"] + (df["b"] == "u") + rng.normal(0, 0.3, n)
    t = from_frame(df)
    ref = reference_score(t, split(t))
    assert ref["model"] in ("ridge", "hist_gradient_boosting")
    assert ref["oof_proba"] is None
    assert ref["score"] > 0.8


def test_profile_data_fills_reference_and_noisy_rows():
    df = flipped(frame(*datasets.make_classification(1500, 8, n_informative=5, class_sep=1.6,
                                                     flip_y=0, random_state=3)), 0.2)
    t = from_frame(df)
    sp = split(t)
    p = profile_data(t, sp)
    assert p.reference == pytest.approx(p.extras["reference"]["score"])
    assert p.noisy_rows and max(p.noisy_rows) < len(sp.train) and min(p.noisy_rows) >= 0
    assert len(set(p.noisy_rows)) == len(p.noisy_rows)


def test_yeo_johnson_grid_matches_scipy():
    from scipy.stats import yeojohnson

    z = np.array([-3.0, -1.0, -0.2, 0.0, 0.4, 2.0, 7.5])
    lams = np.array([-3.0, -0.5, 0.0, 0.7, 1.0, 2.0, 3.5])
    grid = _yj(z, lams)
    assert grid.shape == (len(lams), len(z))
    for row, lam in zip(grid, lams):
        np.testing.assert_allclose(row, yeojohnson(z, lmbda=lam), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- missing_values
def test_missing_values_fires_with_per_column_counts():
    df = gaussian(500)
    df.loc[:49, "x1"] = np.nan
    df.loc[:9, "x3"] = np.nan
    s = one(MissingValues(), cheap(df))
    assert s.evidence["columns"]["x1"]["count"] == 50
    assert s.evidence["columns"]["x3"]["count"] == 10
    assert list(s.evidence["columns"])[0] == "x1"
    assert "'x1'" in s.summary


def test_missing_values_counts_blank_text_cells():
    df = gaussian(300)
    df.insert(0, "city", np.where(np.arange(300) % 30 == 0, "  ", "paris"))
    df.loc[df.index % 30 != 0, "city"] = np.where(df.index[df.index % 30 != 0] % 2, "paris", "rome")
    s = one(MissingValues(), cheap(df))
    assert s.evidence["columns"]["city"]["count"] == 10


def test_missing_values_silent_when_complete():
    assert MissingValues().run(cheap(gaussian(500))) == []


# ----------------------------------------------------------------------------- unscaled_features
def test_unscaled_features_fires_on_spread_ratio():
    df = gaussian(500)
    df["x2"] *= 5000.0
    s = one(UnscaledFeatures(), cheap(df))
    assert s.evidence["largest_spread"]["column"] == "x2"
    assert s.evidence["spread_ratio"] >= 100


def test_unscaled_features_fires_on_offset_column():
    df = gaussian(500)
    df["year"] = 2010 + np.round(RNG.normal(0, 3, 500))
    s = one(UnscaledFeatures(), cheap(df))
    assert "year" in s.evidence["offset_columns"]


def test_unscaled_features_silent_on_standardised_and_raw_iris():
    df = gaussian(500)
    assert UnscaledFeatures().run(cheap(df)) == []
    iris = datasets.load_iris()
    assert UnscaledFeatures().run(cheap(frame(iris.data, iris.target))) == []


def test_unscaled_features_reads_sparse_columns_off_their_mode():
    # sklearn digits: edge pixels are 0 in almost every image, 1-16 in the rest, like their
    # neighbours; their standard deviation (~0.06) would call them 166x smaller.
    digits = datasets.load_digits()
    X = digits.data[:, digits.data.std(0) > 0]
    assert UnscaledFeatures().run(cheap(frame(X, digits.target))) == []
    # a sparse column that really lives on another scale is still reported
    df = gaussian(500)
    df["gain"] = np.where(RNG.random(500) < 0.9, 0.0, RNG.uniform(1e3, 1e5, 500))
    s = one(UnscaledFeatures(), cheap(df))
    assert s.evidence["largest_spread"]["column"] == "gain"


def test_unscaled_features_ignores_a_few_sentinel_codes():
    # 2 % of -999 missing-value codes are outliers (their own check), not the column's scale.
    df = gaussian(500)
    df.loc[RNG.choice(500, 10, replace=False), "x1"] = -999.0
    assert UnscaledFeatures().run(cheap(df)) == []
    df["x1"] *= 1000.0  # …while a column really on another scale still counts
    assert one(UnscaledFeatures(), cheap(df)).evidence["largest_spread"]["column"] == "x1"


# ----------------------------------------------------------------------------- outliers
def test_outliers_fire_on_planted_gross_values():
    df = gaussian(2000)
    rows = RNG.choice(2000, 20, replace=False)
    df.loc[rows, "x2"] = 999.0
    s = one(Outliers(), cheap(df))
    col = s.evidence["columns"]["x2"]
    assert col["count"] == 20
    assert set(col["rows"]) <= set(rows.tolist())
    assert col["most_extreme"][0] == 999.0


def test_outliers_fire_inside_a_skewed_column():
    rng = np.random.default_rng(2)
    df = gaussian(3000)
    df["amount"] = rng.lognormal(3, 1, 3000)
    df.loc[:14, "amount"] *= 1000  # a unit error on 15 rows
    s = one(Outliers(), cheap(df))
    assert s.evidence["columns"]["amount"]["count"] >= 12


def test_outliers_silent_on_gaussian_lognormal_exponential_columns():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for n in (2000, 20000):
            X = np.c_[rng.normal(3, 2, n), rng.lognormal(0, 1, n), rng.lognormal(2, 2, n),
                      rng.exponential(5, n), rng.gamma(0.5, 1, n), rng.uniform(0, 1, n)]
            y = rng.integers(0, 2, n)
            assert Outliers().run(cheap(frame(X, y))) == [], (seed, n)


def test_outliers_silent_on_a_rare_class_typical_values():
    rng = np.random.default_rng(4)
    X = np.r_[rng.normal(0, 1, (1000, 3)), rng.normal(6, 1, (25, 3))]
    y = np.r_[np.zeros(1000, int), np.ones(25, int)]
    assert Outliers().run(cheap(frame(X, y))) == []


# ----------------------------------------------------------------------------- class_imbalance
def test_class_imbalance_fires_and_grows_with_ratio():
    df = gaussian(1000)
    keep = np.r_[np.flatnonzero(df.target == 0), np.flatnonzero(df.target == 1)[:40]]
    s1 = one(ClassImbalance(), cheap(df.iloc[keep].reset_index(drop=True)))
    keep = np.r_[np.flatnonzero(df.target == 0), np.flatnonzero(df.target == 1)[:8]]
    s2 = one(ClassImbalance(), cheap(df.iloc[keep].reset_index(drop=True)))
    assert s1.evidence["ratio"] < 0.2 and s1.evidence["smallest_class"] == "1"
    assert s2.severity > s1.severity


def test_class_imbalance_silent_on_mild_imbalance_and_regression():
    df = gaussian(1000)
    keep = np.r_[np.flatnonzero(df.target == 0), np.flatnonzero(df.target == 1)[:200]]
    assert ClassImbalance().run(cheap(df.iloc[keep].reset_index(drop=True))) == []
    reg = df.assign(target=df.x0 * 1.5 + 0.1)
    assert ClassImbalance().run(cheap(reg, task="regression")) == []


# ----------------------------------------------------------------------------- label_noise
def test_label_noise_fires_on_twenty_percent_flips_and_lists_candidates():
    X, y = datasets.make_classification(3000, 12, n_informative=6, class_sep=1.6, flip_y=0,
                                        random_state=0)
    df = flipped(frame(StandardScaler().fit_transform(X), y), 0.2)
    s = one(LabelNoise(), full(df))
    assert s.evidence["share"] >= 0.08
    assert 0 < len(s.evidence["candidates"]) <= 50
    assert "nothing was removed" in s.evidence["note"]


def test_label_noise_silent_on_ordinary_noise_and_on_overlapping_classes():
    X, y = datasets.make_classification(2000, 8, n_informative=5, flip_y=0.03, random_state=0)
    assert LabelNoise().run(full(frame(X, y))) == []
    X, y = datasets.make_moons(2000, noise=0.5, random_state=0)  # hard, but honestly labelled
    assert LabelNoise().run(full(frame(X, y))) == []


def test_label_noise_fires_on_one_way_flips_through_the_flipped_class():
    # 30 % of class 0 relabelled 1: the reference is never sure inside class 0's region, so
    # the global confident quarter agrees with its labels; within class 0 it does not.
    X, y = datasets.make_classification(1500, 6, n_informative=4, n_redundant=0, n_classes=3,
                                        n_clusters_per_class=1, class_sep=1.5, flip_y=0,
                                        random_state=0)
    rng = np.random.default_rng(0)
    zero = np.flatnonzero(y == 0)
    y = y.copy()
    y[rng.choice(zero, int(0.3 * len(zero)), replace=False)] = 1
    s = one(LabelNoise(), full(frame(X, y)))
    assert s.evidence["pattern"]["where"] == "class"
    assert s.evidence["pattern"]["class"] == 0


def test_label_noise_needs_enough_rows_to_tell_three_from_eight_percent():
    from doctor.checks.data import rows_to_tell
    assert 90 <= rows_to_tell(0.03, 0.08) <= 120  # one-sided binomial, alpha 0.05, power 0.8
    # 90 clean rows of a hard problem: a weak reference disagrees with many labels, even
    # among its confident rows, but 90 rows cannot show a rate above the ordinary one.
    X, y = datasets.make_classification(150, 6, n_informative=4, n_redundant=0, class_sep=1.0,
                                        flip_y=0, random_state=0)
    ev = full(frame(X, y))
    assert ev.profile.extras["label_issues"]["n_checked"] < LabelNoise().min_rows
    assert LabelNoise().run(ev) == []


# ----------------------------------------------------------------------------- duplicate_rows
def test_duplicate_rows_fire_with_conflicts_in_evidence():
    df = gaussian(1000)
    dup = df.sample(150, random_state=0)
    fresh = df.drop(index=dup.index).iloc[:5]
    conflict = fresh.assign(target=1 - fresh.target)
    df = pd.concat([df, dup, conflict], ignore_index=True)
    s = one(DuplicateRows(), cheap(df))
    assert s.evidence["duplicate_rows"] == 150
    assert s.evidence["conflicting_label_rows"] == 10
    assert s.evidence["share"] >= 0.05


def test_duplicate_rows_silent_on_few_copies_and_natural_repeats():
    df = gaussian(1000)
    assert DuplicateRows().run(cheap(pd.concat([df, df.iloc[:20]], ignore_index=True))) == []
    rng = np.random.default_rng(5)
    coarse = pd.DataFrame({"a": rng.choice(list("abc"), 1500), "b": rng.choice(list("pq"), 1500),
                           "c": rng.integers(0, 4, 1500), "target": rng.integers(0, 2, 1500)})
    assert DuplicateRows().run(cheap(coarse)) == []


# ----------------------------------------------------------------------------- constant_features
def test_constant_features_fire_ignoring_missing_cells():
    df = gaussian(300)
    df.insert(1, "const", 7.0)
    df.loc[:30, "const"] = np.nan
    df.insert(2, "unit", "kg")
    s = one(ConstantFeatures(), cheap(df))
    assert set(s.evidence["columns"]) == {"const", "unit"}
    assert s.evidence["columns"]["const"]["missing"] == 31


def test_constant_features_silent_on_binary_column():
    df = gaussian(300)
    df["flag"] = (df.x0 > 1).astype(float)
    assert ConstantFeatures().run(cheap(df)) == []


# ----------------------------------------------------------------------------- target_leakage
def test_target_leakage_fires_on_a_label_copy():
    df = gaussian(1500)
    df.insert(0, "status", np.where(df.target == 1, "approved", "rejected"))
    s = one(TargetLeakage(), full(df))
    assert s.evidence["columns"]["status"]["one_to_one"] is True


def test_target_leakage_fires_on_a_noisy_numeric_proxy_and_in_regression():
    df = gaussian(1500)
    df["proxy"] = df.target * 10 + RNG.normal(0, 0.5, 1500)
    s = one(TargetLeakage(), full(df))
    assert s.evidence["columns"]["proxy"]["single_feature_score"] >= 0.95
    rng = np.random.default_rng(6)
    reg = pd.DataFrame({"a": rng.normal(size=1000), "target": rng.normal(size=1000)})
    reg.insert(1, "copy", reg.target * 3 + 1)
    assert "copy" in one(TargetLeakage(), full(reg)).evidence["columns"]


def test_target_leakage_silent_on_strong_honest_features():
    bc = datasets.load_breast_cancer()
    ev = full(frame(StandardScaler().fit_transform(bc.data), bc.target, list(bc.feature_names)))
    assert TargetLeakage().run(ev) == []


# ----------------------------------------------------------------------------- high_dimensionality
def test_high_dimensionality_fires_on_wide_table():
    X, y = datasets.make_classification(130, 400, n_informative=6, random_state=0)
    s = one(HighDimensionality(), cheap(frame(X, y)))
    assert s.evidence["features"] == 400 and s.evidence["rows_per_feature"] < 5


def test_high_dimensionality_counts_one_hot_columns():
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"x": rng.normal(size=500),
                       "city": [f"c{k}" for k in rng.integers(0, 250, 500)],
                       "target": rng.integers(0, 2, 500)})
    s = one(HighDimensionality(), cheap(df))
    assert s.evidence["one_hot_widths"]["city"] > 100


def test_high_dimensionality_silent_on_wine_and_breast_cancer():
    for d in (datasets.load_wine(), datasets.load_breast_cancer()):
        assert HighDimensionality().run(cheap(frame(d.data, d.target))) == []


# ----------------------------------------------------------------------------- limited_data
def test_limited_data_fires_when_the_curve_still_climbs():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (600, 2))
    y = ((np.floor(X[:, 0] * 3) + np.floor(X[:, 1] * 3)) % 2).astype(int)  # a checkerboard
    s = one(LimitedData(), full(frame(X, y)))
    assert s.evidence["gain"] >= 0.08 and s.evidence["p_value"] < 0.05


def test_limited_data_counts_from_the_better_model_at_half_size():
    # Breast cancer with 10 % of labels flipped: gradient boosting climbs steeply from half to
    # all rows, but logistic regression already scores as high on half of them.
    X, y = datasets.load_breast_cancer(return_X_y=True)
    df = flipped(frame(StandardScaler().fit_transform(X), y), 0.10)
    ev = full(df)
    ref = ev.profile.extras["reference"]
    loose = LimitedData(alpha=1.01, min_gain=-1.0).run(ev)
    assert len(loose) == 1
    other = loose[0].evidence["reference_curve"]["other_model_at_half"]
    assert other["model"] != ref["model"]
    assert loose[0].evidence["reference_curve"]["best_at_half"]["score"] >= ref["curve"][1]["score"] - 1e-4
    assert LimitedData().run(ev) == []


def test_the_learning_curve_is_measured_only_as_far_as_a_check_needs_it():
    # A near-perfect reference (normalised >= max_reference): limited_data decides without a
    # curve, so none is fitted; the report asks for it later and gets the same numbers that
    # reference_score measures in one go.
    X, y = datasets.make_classification(600, 6, n_informative=4, class_sep=2.0, random_state=0)
    t = from_frame(frame(X, y))
    sp = split(t)
    ev = Evidence(profile=profile_data(t, sp))
    ref = ev.profile.extras["reference"]
    assert ref["normalised"] >= LimitedData().max_reference
    assert LimitedData().run(ev) == [] and not ref.get("curve_points")
    assert learning_curve(ev.profile) == reference_score(t, sp)["curve"]
    # A harder table: the check needs the half-size point only (it does not fire, so the
    # 25 % point, read by the evidence and the plot alone, waits).
    X, y = datasets.make_classification(600, 6, n_informative=4, n_classes=3, random_state=0)
    ev = full(frame(X, y))
    assert LimitedData().run(ev) == []
    assert sorted(ev.profile.extras["reference"]["curve_points"]) == [0.5, 1.0]
    assert [c["fraction"] for c in learning_curve(ev.profile)] == [0.25, 0.5, 1.0]


def test_limited_data_silent_on_large_easy_data():
    X, y = datasets.make_classification(6000, 10, n_informative=5, class_sep=2.0, random_state=1)
    assert LimitedData().run(full(frame(X, y))) == []


def with_recipe(df: pd.DataFrame, seed: int = 0, **kw) -> Evidence:
    """A full profile that also carries the doctor's default recipe (as `make_case` builds it),
    so that limited_data can measure the network's own learning curve."""
    from doctor.recipe import Recipe
    from doctor.recipe import default_budget

    t = from_frame(df, **kw)
    sp = split(t, seed=seed)
    epochs, batch = default_budget(len(sp.train))
    recipe = Recipe(epochs=epochs, batch_size=batch, seed=seed, early_stopping=10)
    return Evidence(profile=profile_data(t, sp, seed=seed, recipe=recipe))


def test_limited_data_reads_the_networks_own_curve_on_a_tiny_table():
    # 60 training rows of Friedman #1: the MLP's own curve (the recipe as given, trained by
    # the doctor's loop on half and all of each fold's training part) climbs steeply.
    X, y = datasets.make_friedman1(100, 8, noise=1.0, random_state=0)
    ev = with_recipe(frame(X, y), task="regression")
    net = LimitedData()._network_route(ev.profile)
    assert net["gain"] >= 0.08 and net["p_value"] < 0.025
    assert net["fits"] == 30 and net["rows_half"] < net["rows_full"] < len(ev.profile.split.train)
    assert one(LimitedData(), ev).evidence["gain"] >= 0.08


def test_limited_data_network_curve_silent_on_iris():
    X, y = datasets.load_iris(return_X_y=True)
    ev = with_recipe(frame(X, y))
    assert LimitedData().run(ev) == []
    nc = ev.profile.extras["network_curve"]  # measured (90 training rows), and flat
    assert (nc["score_full"] - nc["score_half"]) / (1 - 1 / 3) < 0.08


def test_limited_data_network_curve_only_where_cheap_and_meaningful():
    from doctor.checks.data import _net_curve_applies
    from doctor.trace import Trace

    t = from_frame(gaussian(n=2000))
    p = DataProfile(t, split(t), extras={"recipe": object()})
    assert "above the bound" in _net_curve_applies(p)  # 1,200 training rows
    X, y = datasets.load_iris(return_X_y=True)
    t = from_frame(frame(X, y))
    p = DataProfile(t, split(t), extras={"recipe": object()})
    assert _net_curve_applies(p) == ""
    assert "no recipe" in _net_curve_applies(DataProfile(t, split(t)))
    assert "diverged" in _net_curve_applies(p, Trace(diverged={"reason": "loss became NaN"}))
    # the cost is estimated from the work, not from a clock: the same table and recipe get the
    # same answer however long the diagnosis' own training happened to take
    from doctor.models import MLPSpec
    from doctor.recipe import Recipe

    p.extras["recipe"] = Recipe()
    small = sum(q.numel() for q in Recipe().build(4, 3).parameters())
    for seconds in (0.1, 100.0):
        assert _net_curve_applies(p, Trace(info={"seconds": seconds, "parameters": small})) == ""
    big = Recipe(model=MLPSpec(hidden=(512, 512)), epochs=300)
    p.extras["recipe"] = big
    params = sum(q.numel() for q in big.build(4, 3).parameters())
    why = _net_curve_applies(p, Trace(info={"seconds": 0.1, "parameters": params}))
    assert "estimated" in why and "over 30 s" in why, why


def test_limited_data_survives_a_network_that_cannot_train():
    X, y = datasets.load_iris(return_X_y=True)
    ev = full(frame(X, y))
    ev.profile.extras["recipe"] = object()  # not a recipe: every fit of the curve fails
    assert LimitedData().run(ev) == []  # judged on the reference's curve, no traceback
    assert "network_curve" not in ev.profile.extras


def test_limited_data_network_curve_not_used_after_unsound_training():
    # A loss that spiked to 5,000× its start (and came back) is a training fault: the network's
    # curve would measure it, so the check falls back on the reference's curve alone.
    from doctor.checks.data import _unsound_training
    from doctor.trace import Trace

    def epochs(losses):
        return [{"epoch": i, "train_loss": x, "val_loss": x, "train_score": 0.5,
                 "val_score": 0.5, "lr": 1e-3} for i, x in enumerate(losses)]

    def steps(losses):
        return [{"step": i + 1, "loss": x, "grad_norm": [0.1, 0.1], "weight_norm": [1.0, 1.0]}
                for i, x in enumerate(losses)]

    blown = Trace(layers=["0", "2"], epochs=epochs([1.0, 5000.0, 0.9, 0.8]),
                  steps=steps([1.0, 5000.0, 0.9, 0.8]))
    calm = Trace(layers=["0", "2"], epochs=epochs([1.0, 0.7, 0.5, 0.4]),
                 steps=steps([1.0, 0.7, 0.5, 0.4]))
    assert "loss_divergence" in _unsound_training(Evidence(trace=blown))
    assert _unsound_training(Evidence(trace=calm)) == ""
    assert _unsound_training(Evidence()) == ""


def test_limited_data_network_curve_not_measured_for_a_recipe_stuck_at_chance():
    # The recipe as given learned nothing with all the training rows (balanced accuracy at
    # chance on validation): its curve cannot climb by min_gain, so it is not measured (30
    # trainings saved); a recipe that learns still gets its curve measured, and regression,
    # whose R² has no floor at chance, is never cut short this way.
    from doctor.trace import Trace

    def trace(*scores):
        return Trace(epochs=[{"epoch": i, "train_loss": 1.0, "val_loss": 1.0, "train_score": s,
                              "val_score": s, "lr": 1e-6} for i, s in enumerate(scores)])

    X, y = datasets.load_iris(return_X_y=True)
    ev = with_recipe(frame(X, y))
    stuck = Evidence(profile=ev.profile, trace=trace(0.30, 1 / 3, 0.36))  # ≤ 0.04 normalised
    why = LimitedData()._cannot_climb(stuck.profile, stuck.trace)
    assert "cannot climb" in why and "0.360" in why
    assert LimitedData().run(stuck) == []
    assert "network_curve" not in ev.profile.extras
    assert LimitedData()._cannot_climb(ev.profile, trace(0.3, 0.5)) == ""  # 0.25 normalised
    assert LimitedData()._cannot_climb(ev.profile, None) == ""
    Xr, yr = datasets.make_friedman1(100, 8, noise=1.0, random_state=0)
    reg = with_recipe(frame(Xr, yr), task="regression")
    assert LimitedData()._cannot_climb(reg.profile, trace(-0.5, 0.01)) == ""


def test_limited_data_network_curve_not_used_with_outliers_left_in_place():
    # A -999 sentinel survives standard scaling as an extreme input: the network's curve
    # would measure how many rows it needs to learn around it, so the reference decides.
    from doctor.checks.data import _unsound_data

    X, y = datasets.load_diabetes(return_X_y=True)
    sentinel = X.copy()
    sentinel[np.random.default_rng(0).random(len(X)) < 0.05, 2] = -999.0
    assert "outliers" in _unsound_data(full(frame(sentinel, y), task="regression"))
    assert _unsound_data(full(frame(X, y), task="regression")) == ""
    assert _unsound_data(Evidence()) == ""


# ----------------------------------------------------------------------------- healthy data
def _moons_with_noise():
    rng = np.random.default_rng(0)
    X, y = datasets.make_moons(2000, noise=0.2, random_state=0)
    return frame(np.c_[X, rng.normal(size=(2000, 4))], y)


@pytest.mark.parametrize("name", ["breast_cancer_std", "moons_noise", "iris"])
def test_healthy_real_data_gives_no_data_symptom(name):
    if name == "breast_cancer_std":
        bc = datasets.load_breast_cancer()
        df = frame(StandardScaler().fit_transform(bc.data), bc.target, list(bc.feature_names))
    elif name == "moons_noise":
        df = _moons_with_noise()
    else:
        iris = datasets.load_iris()
        df = frame(iris.data, iris.target, list(iris.feature_names))
    assert ids(full(df)) == []


# ----------------------------------------------------------------------------- combined cases
def test_leak_plus_duplicates_but_not_label_noise():
    X, y = datasets.make_classification(2000, 8, n_informative=5, flip_y=0.03, random_state=0)
    df = frame(X, y)
    df.insert(8, "label_copy", np.array([f"c{v}" for v in y], dtype=object))
    df = pd.concat([df, df.sample(600, random_state=0)], ignore_index=True)
    found = ids(full(df))
    assert "target_leakage" in found and "duplicate_rows" in found
    assert "label_noise" not in found


def test_iris_with_missing_cells_and_a_constant_column():
    iris = datasets.load_iris()
    df = frame(iris.data, iris.target, list(iris.feature_names))
    df.insert(2, "const", 7.0)
    feats = df.columns[:-1]
    vals = df[feats].to_numpy()
    vals[np.random.default_rng(0).random(vals.shape) < 0.12] = np.nan
    df[feats] = vals
    assert ids(full(df)) == ["missing_values", "constant_features"]


# ----------------------------------------------------------------------------- signal test
def test_the_signal_test_scores_fixed_predictions_against_shuffled_targets():
    from doctor.checks.data import signal_test

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    t = from_frame(frame(X, y), task="classification")
    sp = split(t)
    codes = t.y_codes()[sp.train]
    rows = np.arange(len(sp.train))

    def ref(pred):
        return {"rows": rows, "oof_proba": np.eye(3)[pred]}

    # Predictions that are the labels: no shuffle does as well, the smallest p there is.
    right = signal_test(ref(codes), t, sp)
    assert right["signal"] and right["p_value"] == pytest.approx(1 / 1000) and right["score"] == 1.0
    # One class for every row: balanced accuracy is chance under every shuffle, p = 1.
    flat = signal_test(ref(np.zeros_like(codes)), t, sp)
    assert not flat["signal"] and flat["p_value"] == 1.0 and flat["score"] == pytest.approx(1 / 3, abs=1e-4)

    yr = X @ np.array([1.0, -2.0, 0.5])
    tr = from_frame(frame(X, yr), task="regression")
    spr = split(tr)
    target = tr.y_codes()[spr.train]
    rows_r = np.arange(len(spr.train))
    near = signal_test({"rows": rows_r, "oof_pred": target + rng.normal(0, 0.5, len(target))}, tr, spr)
    assert near["signal"] and near["score"] > 0.9
    const = signal_test({"rows": rows_r, "oof_pred": np.full(len(target), target.mean())}, tr, spr)
    assert not const["signal"] and const["p_value"] == 1.0


def test_a_profile_of_real_data_finds_signal_and_the_verdict_stays_quiet_about_it():
    from doctor.checks.data import signal_test
    from doctor.pipeline import verdict

    bc = datasets.load_breast_cancer()
    ev = full(frame(bc.data[:200], bc.target[:200]), task="classification")
    found = signal_test(ev.profile.extras["reference"], ev.profile.table, ev.profile.split)
    assert found["signal"] and found["p_value"] < 0.01
    base = {"symptoms": [], "data": {"task": "classification"},
            "profile": {"reference": {"signal": found}}}
    assert "no measurable signal" not in verdict(base)
    none = {**base, "profile": {"reference": {"signal": {**found, "signal": False, "score": 0.49,
                                                          "chance": 0.5, "p_value": 0.62}}}}
    assert ("no measurable signal about the target: the reference model's out-of-fold balanced "
            "accuracy is 0.490 against 0.500 by chance (permutation test, p = 0.62)") in verdict(none)
