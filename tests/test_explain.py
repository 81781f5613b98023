"""explain(): planted features come first under both methods; one-hot inputs fold back."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from doctor.explain import _agreement
from doctor.explain import explain
from doctor.explain import spearman


def _train(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, task: str, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        out = net(X)
        loss = F.cross_entropy(out, y) if task == "classification" else F.mse_loss(out.reshape(-1), y)
        loss.backward()
        opt.step()
    return net


@pytest.fixture(scope="module")
def planted():
    """Column 'signal' decides the class; the five others are noise."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 6, generator=g)
    y = (X[:, 2] > 0).long()
    torch.manual_seed(0)
    net = _train(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)), X, y,
                 task="classification")
    names = ["n0", "n1", "signal", "n3", "n4", "n5"]
    return net, X, y, names


def test_planted_feature_ranks_first_under_both_methods(planted):
    net, X, y, names = planted
    rec = explain(net, X, feature_names=names, groups=names, task="classification", n_classes=2,
                  class_names=["no", "yes"], y=y)
    assert rec["method"] == "integrated_gradients"
    assert next(iter(rec["global_importance"])) == "signal"
    assert next(iter(rec["cross_check"]["global_importance"])) == "signal"
    assert rec["cross_check"]["method"] == "feature_ablation"
    assert sum(rec["global_importance"].values()) == pytest.approx(1.0)
    assert sum(rec["cross_check"]["global_importance"].values()) == pytest.approx(1.0)
    vals = list(rec["global_importance"].values())
    assert vals == sorted(vals, reverse=True)
    assert rec["global_importance"]["signal"] > 0.5
    assert rec["convergence_delta"] is not None and rec["convergence_delta"] < 0.05
    assert "zeros" in rec["baseline"] and "mean" in rec["baseline"]
    assert set(rec["per_class"]) == {"no", "yes"}
    assert all(next(iter(v)) == "signal" for v in rec["per_class"].values())
    assert 1 <= len(rec["rows"]) <= 5
    row = rec["rows"][0]
    assert {"index", "predicted", "true", "attributions"} <= set(row)
    assert row["predicted"] in ("no", "yes") and len(row["attributions"]) == 5
    assert rec["n_rows"] == 500  # max_rows


def test_rows_are_the_most_confident_mistakes_when_y_is_given(planted):
    net, X, y, names = planted
    y_bad = y.clone()
    y_bad[:20] = 1 - y_bad[:20]  # plant 20 mistakes
    rec = explain(net, X, feature_names=names, groups=names, task="classification", n_classes=2,
                  y=y_bad, max_rows=600)
    assert rec["rows_selection"] == "most confident mistakes"
    assert all(r["predicted"] != r["true"] for r in rec["rows"])
    confs = [r["confidence"] for r in rec["rows"]]
    assert confs == sorted(confs, reverse=True)
    no_y = explain(net, X, feature_names=names, groups=names, task="classification", n_classes=2)
    assert no_y["rows_selection"] == "most confident predictions"
    assert "true" not in no_y["rows"][0]


def test_one_hot_inputs_fold_back_to_their_column():
    g = torch.Generator().manual_seed(1)
    n = 600
    num = torch.randn(n, 1, generator=g)
    cat = torch.randint(0, 3, (n,), generator=g)
    X = torch.cat([num * 0.1, F.one_hot(cat, 3).float()], dim=1)
    y = (cat == 0).long()
    net = _train(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), X, y,
                 task="classification")
    names = ["num", "colour=red", "colour=green", "colour=blue"]
    groups = ["num", "colour", "colour", "colour"]
    rec = explain(net, X, feature_names=names, groups=groups, task="classification", n_classes=2)
    assert set(rec["global_importance"]) == {"num", "colour"}
    assert set(rec["cross_check"]["global_importance"]) == {"num", "colour"}
    assert next(iter(rec["global_importance"])) == "colour"
    assert next(iter(rec["cross_check"]["global_importance"])) == "colour"
    assert all(set(r["attributions"]) <= {"num", "colour"} for r in rec["rows"])


class Functional(nn.Module):
    """Activations called as functions (no activation modules), and a 1-d output."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(d, 16), nn.Linear(16, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.b(F.gelu(self.a(x)))))


def test_model_with_functional_activations_regression():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(400, 4, generator=g)
    y = 2 * X[:, 0] + 0.05 * torch.randn(400, generator=g)
    net = _train(Functional(4), X, y, task="regression", steps=200)
    net.train()
    rec = explain(net, X, feature_names=list("abcd"), groups=list("abcd"), task="regression", y=y)
    assert net.training  # its mode is restored
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
    assert next(iter(rec["global_importance"])) == "a"
    assert next(iter(rec["cross_check"]["global_importance"])) == "a"
    assert "per_class" not in rec
    assert rec["rows_selection"] == "largest errors"
    assert isinstance(rec["rows"][0]["predicted"], float)


def test_fast_on_500_rows_30_features():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(800, 30, generator=g)
    net = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    names = [f"f{i}" for i in range(30)]
    explain(net, X[:20], feature_names=names, groups=names, task="classification", n_classes=3)
    t = time.perf_counter()
    rec = explain(net, X, feature_names=names, groups=names, task="classification", n_classes=3)
    assert time.perf_counter() - t < 5.0  # about 0.3 s on one CPU thread; loose for busy CI
    assert rec["n_rows"] == 500
    assert all(r["index"] < 800 for r in rec["rows"])
    ids = explain(net, X, feature_names=names, groups=names, task="classification", n_classes=3,
                  row_ids=np.arange(800) + 10_000, max_rows=50)
    assert all(10_000 <= r["index"] < 10_800 for r in ids["rows"])


def test_works_under_no_grad_and_with_a_background():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    X = torch.randn(50, 3)
    with torch.no_grad():
        rec = explain(net, X, feature_names=list("xyz"), groups=list("xyz"),
                      task="classification", n_classes=2, background=torch.randn(100, 3) + 1)
    assert "background" in rec["baseline"]
    assert set(rec["global_importance"]) == set("xyz")


def test_bad_groups_are_rejected():
    net = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="groups"):
        explain(net, torch.randn(5, 3), feature_names=list("abc"), groups=list("ab"),
                task="classification")


def test_agreement_sentence_says_plainly_when_methods_disagree():
    a = {"x": 0.6, "y": 0.3, "z": 0.1}
    b = {"z": 0.6, "y": 0.3, "x": 0.1}
    rho = spearman(a, b)
    assert rho == pytest.approx(-1.0)
    text = _agreement(a, b, rho, 0.001)
    assert "disagree" in text and "'x'" in text and "'z'" in text
    assert "agree" in _agreement(a, a, spearman(a, a), 0.001)
    assert spearman({"x": 1.0}, {"x": 1.0}) is None
    assert np.isfinite(spearman(a, {"x": 0.5, "y": 0.5, "z": 0.0}))


# ----------------------------------------------------------------------------- permutation, API
def test_permutation_importance_moves_one_hot_inputs_together_and_agrees():
    from doctor.explain import compare

    g = torch.Generator().manual_seed(4)
    n = 500
    num = torch.randn(n, 2, generator=g)
    cat = torch.randint(0, 3, (n,), generator=g)
    X = torch.cat([num, F.one_hot(cat, 3).float()], dim=1)
    y = ((cat == 0) ^ (num[:, 0] > 1.2)).long()
    net = _train(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2)), X, y,
                 task="classification", steps=300)
    names = ["a", "b", "colour=red", "colour=green", "colour=blue"]
    groups = ["a", "b", "colour", "colour", "colour"]
    rec = explain(net, X, feature_names=names, groups=groups, task="classification", n_classes=2, y=y)
    perm = rec["permutation"]
    assert perm["method"] == "permutation_importance" and "error" not in perm
    assert set(perm["global_importance"]) == {"a", "b", "colour"}
    assert next(iter(perm["global_importance"])) == "colour"
    assert perm["global_importance"]["b"] < 0.1  # noise
    assert sum(perm["global_importance"].values()) == pytest.approx(1.0)
    assert perm["loss_increase"]["colour"] > perm["loss_increase"]["b"]
    assert perm["against"] == "the true labels"
    assert perm["rank_correlation_with_ig"] is not None
    assert perm["comparison"] == compare(rec["global_importance"], perm["global_importance"])
    assert not perm["comparison"]["disagree"]
    assert "permutation importance (scikit-learn) agree" in rec["agreement"]
    assert "disagree" not in rec["agreement"]
    # without labels it measures how the model's own predictions depend on each column
    no_y = explain(net, X, feature_names=names, groups=groups, task="classification", n_classes=2)
    assert "own predictions" in no_y["permutation"]["against"]
    assert next(iter(no_y["permutation"]["global_importance"])) == "colour"


def test_disagreement_is_said_in_words_over_the_columns_that_matter():
    from doctor.explain import _agree_text
    from doctor.explain import compare

    ig = {"x": 0.5, "y": 0.4, "n1": 0.05, "n2": 0.05}
    swapped = {"y": 0.9, "x": 0.02, "n2": 0.05, "n1": 0.03}
    cmp = compare(ig, swapped)
    assert cmp["relevant_columns"] == ["x", "y"] and cmp["disagree"]
    text = _agree_text("integrated gradients", "permutation importance", ig, swapped, cmp)
    assert "disagree" in text and "'x'" in text and "'y'" in text
    # noise columns shuffled among themselves do not make two rankings "disagree"
    noisy = {"x": 0.7, "y": 0.26, "n2": 0.03, "n1": 0.01}
    cmp = compare(ig, noisy)
    assert not cmp["disagree"] and cmp["rank_correlation_relevant"] == pytest.approx(1.0)
    assert "agree" in _agree_text("integrated gradients", "feature ablation", ig, noisy, cmp)


class UserNet(nn.Module):
    """A user's own module: functional activations, a skip connection, dropout."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(d, 24), nn.Linear(24, 24), nn.Linear(24, 3)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.inp(x))
        return self.out(self.drop(h + torch.tanh(self.hidden(h))))


def test_python_api_explains_a_users_module_on_a_dataframe():
    import pandas as pd

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(450, 4)), columns=["age", "noise", "income", "other"])
    y = np.digitize(frame["income"].to_numpy(), [-0.5, 0.5])  # three classes from one column
    net = _train(UserNet(4), torch.tensor(frame.to_numpy(), dtype=torch.float32),
                 torch.as_tensor(y), task="classification", steps=300)
    rec = explain(net, frame, y=y, n_classes=3, class_names=["low", "mid", "high"])
    assert set(rec["global_importance"]) == {"age", "noise", "income", "other"}
    for ranking in (rec["global_importance"], rec["cross_check"]["global_importance"],
                    rec["permutation"]["global_importance"]):
        assert next(iter(ranking)) == "income"
    assert set(rec["per_class"]) <= {"low", "mid", "high"}
    assert rec["convergence_delta"] is not None
    plain = explain(net, frame.to_numpy(), n_classes=3)  # an array: inputs named x0, x1, …
    assert next(iter(plain["global_importance"])) == "x2"


# ----------------------------------------------------------------------------- a real fit
def planted_frame(n: int = 300, seed: int = 0):
    """One informative column among five pure-noise columns (labels 20 % noisy)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"noise{i}": rng.normal(size=n) for i in range(5)})
    df.insert(2, "planted", rng.normal(size=n))
    df["target"] = (df["planted"] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return df


def test_planted_feature_ranks_first_in_a_real_fit(cli, tmp_path):
    import json

    planted_frame().to_csv("planted.csv", index=False)
    assert cli("fit", "planted.csv", "--epochs", "5", "--trials", "2", "--out", "out",
               "--storage", f"sqlite:///{tmp_path / 's.db'}", "--quiet") == 0
    ex = json.loads((tmp_path / "out" / "report.json").read_text())["explanations"]
    assert next(iter(ex["global_importance"])) == "planted"
    assert next(iter(ex["cross_check"]["global_importance"])) == "planted"
    assert next(iter(ex["permutation"]["global_importance"])) == "planted"
    assert ex["global_importance"]["planted"] > 2 * max(v for k, v in ex["global_importance"].items()
                                                        if k != "planted")
    assert not ex["cross_check"]["disagree"] and not ex["permutation"]["comparison"]["disagree"]
    assert "both put 'planted' first" in ex["agreement"]
    assert ex["convergence_delta"] is not None and "zeros" in ex["baseline"]
    assert ex["rows"] and all("attributions" in r for r in ex["rows"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="fig-importance"' in html and "both put &#39;planted&#39; first" in html
