"""The one training loop: determinism, hooks, divergence, throughput seams."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from doctor.data import from_frame
from doctor.data import split
from doctor.prepare import prepare
from doctor.probes import default_probes
from doctor.probes.activations import layer_stats
from doctor.recipe import Recipe
from doctor.trainer import Trainer
from helpers import blobs_frame


@pytest.fixture
def problem():
    table = from_frame(blobs_frame())
    return table, split(table, seed=0)


def test_training_learns_and_is_deterministic(problem):
    table, sp = problem
    recipe = Recipe(epochs=15, batch_size=32)
    runs = [Trainer(recipe, probes=default_probes()).fit(prepare(table, sp, recipe)) for _ in range(2)]
    assert runs[0].val_score > 0.8
    assert runs[0].trace.column("train_loss") == runs[1].trace.column("train_loss")
    assert len(runs[0].trace.epochs) == 15
    assert runs[0].trace.layers == ["0", "2", "4"]
    assert all(len(s["grad_norm"]) == 3 for s in runs[0].trace.steps)


def test_grad_norm_probe_matches_torch(problem):
    """The probe's per-layer gradient norms equal torch's own, read at the same step."""
    table, sp = problem
    recipe = Recipe(epochs=1, batch_size=1000, optimizer="sgd", lr=1e-9)
    data = prepare(table, sp, recipe)
    run = Trainer(recipe, probes=default_probes()).fit(data)
    torch.manual_seed(recipe.seed)  # the trainer's seed → the same initial weights
    model = recipe.build(data.n_features, data.n_outputs)
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.randperm(len(data.X_train), generator=gen)  # the probe rows
    perm = torch.randperm(len(data.X_train), generator=gen)
    out = model(data.X_train[perm])
    loss = nn.functional.cross_entropy(out, data.y_train[perm])
    grads = torch.autograd.grad(loss, [m.weight for m in model if isinstance(m, nn.Linear)])
    expected = [float(g.norm()) for g in grads]
    assert np.allclose(run.trace.steps[0]["grad_norm"], expected, rtol=1e-4)


def test_divergence_is_recorded_and_stops(problem):
    table, sp = problem
    recipe = Recipe(optimizer="sgd", lr=1e4, epochs=20)
    run = Trainer(recipe, probes=default_probes()).fit(prepare(table, sp, recipe))
    assert run.trace.diverged is not None
    assert "loss became" in run.trace.diverged["reason"]
    assert len(run.trace.epochs) < 20


def test_on_epoch_callback_can_stop_training(problem):
    table, sp = problem
    recipe = Recipe(epochs=10)

    class Stop(Exception):
        pass

    def on_epoch(epoch, record):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        Trainer(recipe, on_epoch=on_epoch).fit(prepare(table, sp, recipe))


def test_hooks_removed_when_the_model_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.act = nn.ReLU()

        def forward(self, x):
            self.act(self.lin(x))
            raise RuntimeError("boom")

    net = Boom()
    with pytest.raises(RuntimeError):
        layer_stats(net, torch.zeros(4, 3))
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_functional_activations_are_probed():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    net = Functional()
    with torch.no_grad():
        net.a.bias.fill_(-100.0)  # every unit dead
    stats = layer_stats(net, torch.randn(64, 4))
    assert stats and stats[0]["kind"] == "relu" and stats[0]["dead"] == 1.0


def test_regression_target_is_standardised(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=1e5 + 3e4 * X[:, 0])
    table = from_frame(df, task="regression")
    sp = split(table)
    recipe = Recipe(epochs=30)
    data = prepare(table, sp, recipe)
    assert abs(float(data.y_train.mean())) < 1e-4
    run = Trainer(recipe).fit(data)
    assert run.val_score > 0.9


def test_restarts_keep_probes_on_the_chosen_run(problem):
    """Warm-up candidates train silently; the chosen one is probed as it trains on."""
    table, sp = problem
    recipe = Recipe(epochs=10, restarts=3)
    run = Trainer(recipe, probes=default_probes()).fit(prepare(table, sp, recipe))
    info = run.trace.info["restarts"]
    assert info["warmup_epochs"] == 2 and len(info["tried"]) == 3
    assert len(run.trace.epochs) == 10 and run.trace.layers == ["0", "2", "4"]
    probed = {s["epoch"] for s in run.trace.steps} | {a["epoch"] for a in run.trace.activations}
    assert probed and min(probed) >= info["warmup_epochs"]  # no reading from a discarded start
    assert run.val_score > 0.8


def test_weight_decay_zero_means_none_for_every_optimizer():
    from doctor.trainer import make_optimizer

    for opt in ("sgd", "adam", "adamw", "rmsprop"):
        o = make_optimizer(Recipe(optimizer=opt), [nn.Parameter(torch.zeros(2))])
        assert o.param_groups[0]["weight_decay"] == 0.0  # torch's AdamW alone defaults to 0.01


def test_early_stopping_restores_the_best_epochs_weights(problem):
    # The kept state must be a copy: a reference to the live tensors would follow every later
    # step and "restore" the last epoch instead of the best one.
    from doctor.trainer import snapshot

    table, sp = problem
    recipe = Recipe(epochs=60, batch_size=16, lr=0.05, optimizer="adam", early_stopping=5)
    data = prepare(table, sp, recipe)
    run = Trainer(recipe).fit(data)
    losses = run.trace.column("val_loss")
    best = int(np.argmin(losses))
    assert run.trace.info["restored_epoch"] == run.trace.epochs[best]["epoch"]
    assert best < len(losses) - 1  # a later, worse epoch was trained and then undone
    val_loss, _ = Trainer(recipe).evaluate(run.model, data.X_val, data.y_val, data)
    assert val_loss == pytest.approx(losses[best], rel=1e-5)
    kept = snapshot(run.model)
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(1.0)
    assert all(not torch.equal(kept[k], v) for k, v in run.model.state_dict().items()
               if v.is_floating_point())


def test_class_weighted_validation_loss_weighs_rows_like_training(problem):
    # With class_weight the training loss weights rows by inverse class frequency; the
    # validation loss that early stopping minimises must weigh them the same way.
    import torch.nn.functional as F

    table, sp = problem
    keep = np.r_[sp.train[table.y_codes()[sp.train] == 0][:10],
                 sp.train[table.y_codes()[sp.train] != 0]]
    sp = type(sp)(**{**vars(sp), "train": keep})  # class 0 rare among the training rows
    recipe = Recipe(epochs=3, batch_size=16, class_weight=True)
    data = prepare(table, sp, recipe)
    assert data.class_weights is not None and float(data.class_weights.max()) > 1.5
    run = Trainer(recipe).fit(data)
    with torch.no_grad():
        out = run.model.eval()(data.X_val)
    weighted = F.cross_entropy(out, data.y_val, weight=data.class_weights, reduction="none").mean()
    plain = F.cross_entropy(out, data.y_val)
    assert run.val_loss == pytest.approx(float(weighted), rel=1e-5)
    assert run.trace.epochs[-1]["val_loss"] == pytest.approx(float(weighted), rel=1e-5)
    assert abs(float(weighted) - float(plain)) > 1e-3


def test_skipping_train_scores_trains_the_same_network(problem):
    """`train_scores=False` (learning-curve points, extra ensemble members) drops only the
    per-epoch scoring of training rows: weights, losses and validation scores are the same
    step for step, with dropout, batch norm and early stopping in the recipe."""
    table, sp = problem
    recipe = Recipe(epochs=12, batch_size=32, dropout=0.2, norm="batch", early_stopping=3)
    runs = [Trainer(recipe, train_scores=flag).fit(prepare(table, sp, recipe))
            for flag in (True, False)]
    with_scores, without = runs
    assert with_scores.trace.column("val_loss") == without.trace.column("val_loss")
    assert with_scores.trace.column("train_loss") == without.trace.column("train_loss")
    assert with_scores.val_score == without.val_score
    for a, b in zip(with_scores.model.state_dict().values(), without.model.state_dict().values()):
        assert torch.equal(a, b)
    assert all(np.isfinite(with_scores.trace.column("train_score")))
    assert all(np.isnan(without.trace.column("train_score")))
