"""Training and model checks: each fires on a planted defect and stays silent on its clean twin."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from doctor.checks import DataProfile
from doctor.checks import Evidence
from doctor.checks.model import AdversarialVulnerability
from doctor.checks.model import PoorCalibration
from doctor.checks.training import link_causes
from doctor.checks.training import training_checks
from doctor.checks import Symptom
from doctor.data import from_frame
from doctor.data import split
from doctor.prepare import prepare
from doctor.probes import default_probes
from doctor.recipe import Recipe
from doctor.trace import Trace
from doctor.trainer import Trainer
from helpers import blobs_frame


@pytest.fixture(scope="module")
def problem():
    table = from_frame(blobs_frame(600, seed=3))
    sp = split(table, seed=0)
    return table, sp, DataProfile(table, sp, reference=0.9)


def deep_tanh(n_features, n_outputs):
    layers, width = [], n_features
    for _ in range(10):
        layers += [nn.Linear(width, 48), nn.Tanh()]
        width = 48
    net = nn.Sequential(*layers, nn.Linear(width, n_outputs))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return net


def relu_mlp(n_features, n_outputs):
    return nn.Sequential(nn.Linear(n_features, 96), nn.ReLU(), nn.Linear(96, 96), nn.ReLU(),
                         nn.Linear(96, n_outputs))


def saturating(n_features, n_outputs):
    net = nn.Sequential(nn.Linear(n_features, 64), nn.Sigmoid(), nn.Linear(64, n_outputs))
    nn.init.normal_(net[0].weight, std=30.0)
    return net


def diagnose_ids(problem, recipe):
    table, sp, profile = problem
    data = prepare(table, sp, recipe)
    run = Trainer(recipe, probes=default_probes()).fit(data)
    ev = Evidence(profile=profile, trace=run.trace, model=run.model, data=data, val_score=run.val_score)
    return {s.id for c in training_checks() for s in c.run(ev)}


CASES = [
    # (recipe, must contain, must not contain)
    (Recipe(model=deep_tanh, optimizer="sgd", lr=0.01, epochs=10), {"vanishing_gradient"}, set()),
    (Recipe(model=relu_mlp, optimizer="sgd", lr=25.0, epochs=8, batch_size=32), {"loss_divergence"}, set()),
    (Recipe(model=relu_mlp, optimizer="sgd", lr=3e-6, epochs=12), {"slow_convergence"},
     {"vanishing_gradient", "loss_divergence"}),
    (Recipe(model=relu_mlp, optimizer="adam", lr=0.5, epochs=10), {"dying_relu"}, set()),
    (Recipe(model=saturating, optimizer="adam", lr=1e-3, epochs=5), {"saturated_activations"}, set()),
]


@pytest.mark.parametrize("recipe,must,must_not", CASES, ids=lambda x: getattr(x, "__name__", None))
def test_planted_training_defects(problem, recipe, must, must_not):
    found = diagnose_ids(problem, recipe)
    assert must <= found, found
    assert not (must_not & found), found


def test_healthy_recipe_gets_a_clean_bill(problem):
    assert diagnose_ids(problem, Recipe(model=relu_mlp, lr=2e-3, epochs=5)) == set()
    assert diagnose_ids(problem, Recipe(epochs=30)) == set()


def test_overfitting_on_a_u_curve():
    trace = Trace(layers=["0"], epochs=[
        {"epoch": i, "train_loss": 1.0 / (i + 1), "val_loss": 0.5 + abs(i - 3) * 0.2,
         "train_score": 0.99, "val_score": 0.8} for i in range(12)])
    ev = Evidence(trace=trace, val_score=0.8)
    ids = {s.id for c in training_checks() for s in c.run(ev)}
    assert "overfitting" in ids


def test_oscillation_on_a_zigzag():
    losses = [1.0, 0.6, 0.9, 0.5, 0.85, 0.45, 0.9, 0.5, 0.88, 0.47]
    trace = Trace(layers=["0"], epochs=[{"epoch": i, "train_loss": l, "val_loss": l,
                                         "train_score": 0.6, "val_score": 0.6}
                                        for i, l in enumerate(losses)])
    ids = {s.id for c in training_checks() for s in c.run(Evidence(trace=trace, val_score=0.6))}
    assert "loss_oscillation" in ids
    smooth = Trace(layers=["0"], epochs=[{"epoch": i, "train_loss": 1 / (i + 1), "val_loss": 1 / (i + 1),
                                          "train_score": 0.95, "val_score": 0.95} for i in range(10)])
    ids = {s.id for c in training_checks() for s in c.run(Evidence(trace=smooth, val_score=0.95))}
    assert "loss_oscillation" not in ids


def test_oscillation_on_a_bouncing_score_with_a_smooth_loss():
    # Epoch-mean losses barely rise (averaged over many batches) while the model each epoch
    # ends with swings: AUTOTRAINER's OL rule on the training score.
    n = 30
    losses = [1.0 - 0.3 * i / n for i in range(n)]
    scores = [0.30 + (0.08 if i % 3 == 0 else 0.0) for i in range(n)]
    trace = Trace(layers=["0"], epochs=[{"epoch": i, "train_loss": l, "val_loss": l,
                                         "train_score": s, "val_score": s}
                                        for i, (l, s) in enumerate(zip(losses, scores))])
    out = [s for c in training_checks() if "loss_oscillation" in c.ids
           for s in c.run(Evidence(trace=trace, val_score=0.3))]
    assert len(out) == 1 and out[0].evidence["score_swings"] >= out[0].evidence["score_swings_needed"]
    # the same small jitter (< 0.03) does not count
    calm = Trace(layers=["0"], epochs=[{**e, "train_score": 0.3 + (e["train_score"] - 0.3) / 4}
                                       for e in trace.epochs])
    assert [s for c in training_checks() if "loss_oscillation" in c.ids
            for s in c.run(Evidence(trace=calm, val_score=0.3))] == []


def test_divergence_that_recovers_is_still_a_divergence():
    from doctor.checks.training import LossDivergence

    def trace(peak):
        # Adam lr 5 on wine: the epoch-mean loss jumped by orders of magnitude, then came back.
        losses = [1.1, peak, peak / 10, 2.0, 0.6, 0.4, 0.35, 0.34]
        return Trace(layers=["0"],
                     steps=[{"step": i, "loss": l} for i, l in enumerate(losses)],
                     epochs=[{"epoch": i, "train_loss": l, "val_loss": l, "train_score": 0.9,
                              "val_score": 0.9} for i, l in enumerate(losses)])
    out = LossDivergence().run(Evidence(trace=trace(4.0e4), val_score=0.9))
    assert len(out) == 1 and out[0].evidence["peak_loss"] >= 1e3 * out[0].evidence["start_loss"]
    # a bump to 30x the start is a rough start, not a blow-up
    assert LossDivergence().run(Evidence(trace=trace(33.0), val_score=0.9)) == []


def test_root_cause_named_first():
    syms = [Symptom("underfitting", 0.9, "u"), Symptom("loss_divergence", 0.8, "d"),
            Symptom("exploding_gradient", 0.7, "e")]
    linked = link_causes(syms)
    assert linked[0].id == "loss_divergence"
    assert {s.id: s.caused_by for s in linked}["underfitting"] == "loss_divergence"


def test_calibration_fires_on_overconfident_model(problem):
    table, sp, profile = problem
    recipe = Recipe(epochs=20)
    data = prepare(table, sp, recipe)
    run = Trainer(recipe).fit(data)
    ev = Evidence(profile=profile, trace=run.trace, model=run.model, data=data, val_score=run.val_score)
    assert PoorCalibration().run(ev) == []

    class Overconfident(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return 50 * self.inner(x)

    # a weak model made extremely confident: probabilities near 0/1, accuracy far lower
    weak = Trainer(Recipe(epochs=1, lr=1e-4)).fit(data).model
    ev.model = Overconfident(weak)
    assert [s.id for s in PoorCalibration().run(ev)] == ["poor_calibration"]


def test_adversarial_check(problem):
    """Silent on a smooth network; fires on one that leans on a direction the data never uses."""
    frame = blobs_frame(600, seed=3)
    frame.insert(6, "f0_copy", frame["f0"])  # the data lie in a subspace: f0_copy - f0 == 0
    table = from_frame(frame)
    sp = split(table, seed=0)
    recipe = Recipe(epochs=20)
    data = prepare(table, sp, recipe)
    run = Trainer(recipe).fit(data)
    ev = Evidence(profile=DataProfile(table, sp, reference=0.9), trace=run.trace, model=run.model,
                  data=data, val_score=run.val_score)
    assert AdversarialVulnerability().run(ev) == []

    class OffManifold(nn.Module):
        """Same clean predictions; a steep slope along f0_copy - f0, which clean rows never vary."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            off = (x[:, 6] - x[:, 0]).unsqueeze(1)
            return self.inner(x) + 200 * off * torch.tensor([1.0, -1.0])

    ev.model = OffManifold(run.model)
    assert [s.id for s in AdversarialVulnerability().run(ev)] == ["adversarial_vulnerability"]
