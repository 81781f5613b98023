"""Each remedy, applied to a small model and data set, does what it says it does.

The contract tests (test_remedies.py) check that the families build recipes; these check the
recipes' effect on the data, the network, the optimiser, the loss and the training loop.
Tiny data, 1-3 epochs: each test runs in well under a second or two.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn import datasets
from torch import nn

import search_spaces as ss
from doctor.bundle import Bundle
from doctor.checks import DataProfile
from doctor.checks import Symptom
from doctor.data import Split
from doctor.data import from_frame
from doctor.data import split
from doctor.diagnosis import Diagnosis
from doctor.models import MLPSpec
from doctor.prepare import prepare
from doctor.preprocess import Preprocessor
from doctor.probes import Probe
from doctor.recipe import Recipe
from doctor.trainer import Trainer
from doctor.trainer import loss_per_row
from doctor.trainer import make_optimizer
from doctor.trainer import make_schedule
from doctor.trainer import warmup_epochs
from helpers import blobs_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)
BY_NAME = {r.name: r for r in ss.all_remedies()}


def fixed(name: str, params: dict, recipe: Recipe = Recipe(), diagnosis=None) -> Recipe:
    return BY_NAME[name].apply(optuna.trial.FixedTrial(params), recipe, diagnosis)


def diagnosis_of(table, sp, symptoms: list[Symptom], recipe: Recipe = Recipe()) -> Diagnosis:
    return Diagnosis(symptoms, recipe, table.task, len(table.classes or []), DataProfile(table, sp))


@pytest.fixture(scope="module")
def blobs():
    table = from_frame(blobs_frame(n=240))
    return table, split(table, seed=0)


class Spy(Probe):
    """Keeps what the loop hands its probes: the optimiser, the models' inputs, gradients."""

    def __init__(self):
        self.optimizer = None
        self.grad_norms: list[float] = []
        self.params_before: list[list[torch.Tensor]] = []

    def on_train_begin(self, ctx):
        self.optimizer = ctx.optimizer

    def on_after_backward(self, ctx):
        params = [p for p in ctx.model.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.norm(torch.stack([p.grad.norm() for p in params]))))
        self.params_before.append([p.detach().clone() for p in ctx.model.parameters()])


# --------------------------------------------------------------------------- hygiene
def _dirty_frame(seed: int = 0) -> pd.DataFrame:
    df = blobs_frame(n=200, seed=seed)
    df["const"] = 7.0
    df["leak"] = df["label"] * 10.0 + 1.0
    return pd.concat([df, df.iloc[:40]], ignore_index=True)  # 40 exact copies


def test_drop_duplicates_touches_only_training_rows():
    table = from_frame(_dirty_frame())
    sp = split(table, seed=0)
    noisy = np.array([0, 1, 2, len(sp.train) - 1])
    given = Recipe(noisy_rows="downweight", scaler="none")  # no fitted scale: rows compare as they are
    plain = prepare(table, sp, given, noisy=noisy)
    recipe = fixed("hygiene", {"drop_duplicates": True, "drop_constant": False}, given)
    assert recipe.drop_duplicates and not recipe.drop_constant
    clean = prepare(table, sp, recipe, noisy=noisy)
    rows = table.X.iloc[sp.train].assign(y=table.y.iloc[sp.train].to_numpy())
    copies = int(rows.duplicated().sum())
    assert copies > 0 and len(clean.y_train) == len(plain.y_train) - copies
    assert len({r.tobytes() for r in clean.X_train.numpy()}) == len(clean.X_train)  # no copy left
    assert torch.equal(clean.X_val, plain.X_val) and torch.equal(clean.y_val, plain.y_val)
    # flagged rows follow their rows: the same feature rows carry the reduced weight
    flagged = {r.tobytes() for r in plain.X_train.numpy()[plain.w_train.numpy() < 1]}
    still = {r.tobytes() for r in clean.X_train.numpy()[clean.w_train.numpy() < 1]}
    assert still and still <= flagged


def test_drop_constant_and_leaking_columns_survive_the_bundle(tmp_path, caplog):
    table = from_frame(_dirty_frame())
    sp = split(table, seed=0)
    leak = Symptom("target_leakage", 0.9, "leak", {"columns": {"leak": {"single_feature_score": 1.0}}})
    const = Symptom("constant_features", 0.3, "const", {"columns": {"const": {"value": 7.0}}})
    d = diagnosis_of(table, sp, [leak, const])
    params = BY_NAME["hygiene"].prescribe(d)
    assert params == {"drop_constant": True, "drop_leaking": True}  # no duplicates reported
    recipe = fixed("hygiene", params, diagnosis=d)
    assert recipe.drop_columns == ("leak",) and recipe.drop_constant
    data = prepare(table, sp, recipe)
    names = data.pre.feature_names_out_
    assert "leak" not in names and "const" not in names and len(names) == 6
    assert data.pre.dropped_ == {"leak": "listed", "const": "constant"}
    run = Trainer(replace(recipe, epochs=2)).fit(data)
    Bundle(run.model, recipe, data.pre, table.task, table.target, table.classes).save(tmp_path)
    loaded = Bundle.load(tmp_path)
    assert loaded.pre.dropped_ == data.pre.dropped_ and loaded.recipe.drop_columns == ("leak",)
    frame = _dirty_frame().iloc[:20]  # still holds 'const' and 'leak'
    with caplog.at_level(logging.WARNING):
        out = loaded.predict_frame(frame)
    assert len(out) == 20 and "ignoring column" not in caplog.text
    expected = Bundle(run.model, recipe, data.pre, table.task, table.target, table.classes).predict_frame(frame)
    assert out.equals(expected)
    # the leak really is gone: changing it does not change a prediction
    assert loaded.predict_frame(frame.assign(leak=-5.0)).equals(out)


def test_image_input_gets_no_column_remedies(blobs):
    table, sp = blobs
    shaped = from_frame(blobs_frame(n=240))
    shaped.input_shape = (2, 3)
    d = diagnosis_of(shaped, sp, [Symptom("high_dimensionality", 0.5, "wide")])
    for name in ("hygiene", "feature_selection"):
        assert not BY_NAME[name].applicable(d.recipe, d)
        assert BY_NAME[name].applicable(d.recipe, diagnosis_of(table, sp, []))


# --------------------------------------------------------------------------- feature selection
def _wide(n: int = 150, d: int = 400, task: str = "classification", seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    signal = X[:, 0] + X[:, 1] - X[:, 2]
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    df["target"] = (signal > 0).astype(int) if task == "classification" else signal
    return from_frame(df, target="target", task=task)


@pytest.mark.parametrize("how", ["mutual_info", "l1"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_feature_selection_keeps_k_informative_columns(how, task, tmp_path):
    table = _wide(d=200, task=task)  # 200 columns: mutual information costs ~10 ms a column
    sp = split(table, seed=0)
    d = diagnosis_of(table, sp, [Symptom("high_dimensionality", 0.8, "wide")])
    recipe = fixed("feature_selection", {"select": how, "select_rows_per_feature": 10.0}, diagnosis=d)
    data = prepare(table, sp, recipe)
    k = len(sp.train) // 10
    assert data.n_features == k and len(data.pre.feature_names_out_) == k
    kept = set(data.pre.feature_names_out_)
    # the target is made of x0, x1, x2; chance alone would keep one of them with p ~ 0.13. The
    # L1 model finds all three; mutual information's estimates on 90 rows are noisier.
    assert len({"x0", "x1", "x2"} & kept) >= (3 if how == "l1" else 1)
    # JSON round trip: the same columns, the same matrix
    again = Preprocessor.from_dict(data.pre.to_dict())
    X = table.X.iloc[sp.val]
    assert np.array_equal(again.transform(X), data.pre.transform(X))
    assert np.array_equal(again.transform(X), data.X_val.numpy())
    # fitted on the training rows only: the validation rows do not change the choice
    shuffled = table.X.copy()
    shuffled.iloc[sp.val] = np.random.default_rng(1).normal(size=(len(sp.val), 200))
    other = from_frame(shuffled.assign(target=table.y.to_numpy()), target="target", task=task)
    assert prepare(other, sp, recipe).pre.kept_ == data.pre.kept_


def test_l1_feature_selection_works_with_three_classes():
    # liblinear is binary only in recent scikit-learn: a three-class table must not fail
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 60))
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(60)])
    df["target"] = np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])  # three classes from x0, x1
    table = from_frame(df, target="target", task="classification")
    sp = split(table, seed=0)
    d = diagnosis_of(table, sp, [Symptom("high_dimensionality", 0.8, "wide")])
    recipe = fixed("feature_selection", {"select": "l1", "select_rows_per_feature": 10.0}, diagnosis=d)
    data = prepare(table, sp, recipe)
    assert data.n_features == len(sp.train) // 10
    assert {"x0", "x1"} <= set(data.pre.feature_names_out_)


def test_pca_projects_a_wide_table_onto_k_components(tmp_path):
    # Signal in a 3-dimensional subspace of 200 correlated columns: each column is a noisy
    # mix of three factors. The first k components of the training rows carry the factors.
    rng = np.random.default_rng(0)
    n, d = 150, 200
    factors = rng.normal(size=(n, 3))
    X = factors @ rng.normal(size=(3, d)) + 0.3 * rng.normal(size=(n, d))
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    df["target"] = (factors[:, 0] - factors[:, 1] > 0).astype(int)
    table = from_frame(df, target="target", task="classification")
    sp = split(table, seed=0)
    dg = diagnosis_of(table, sp, [Symptom("high_dimensionality", 0.8, "wide")])
    recipe = fixed("feature_selection", {"select": "pca", "select_rows_per_feature": 10.0}, diagnosis=dg)
    data = prepare(table, sp, recipe)
    k = len(sp.train) // 10
    assert data.n_features == k and data.pre.feature_names_out_ == [f"pc{i + 1}" for i in range(k)]
    assert data.pre.groups_ == data.pre.feature_names_out_  # explanations are per component
    # the projection is fitted on the training rows: their components are centred and
    # uncorrelated, and the first ones carry most of the spread (the three factors)
    Z = data.X_train.numpy().astype(np.float64)
    assert np.allclose(Z.mean(0), 0.0, atol=1e-4)
    cov = np.cov(Z, rowvar=False)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-3)
    spread = np.diag(cov)
    assert spread[:3].sum() > 0.8 * spread.sum()
    # a network on the k components learns the task; the bundle predicts through them
    run = Trainer(replace(recipe, epochs=30)).fit(data)
    assert run.val_score > 0.8
    Bundle(run.model, recipe, data.pre, table.task, table.target, table.classes).save(tmp_path)
    loaded = Bundle.load(tmp_path)
    X_val = table.X.iloc[sp.val]
    assert np.array_equal(loaded.pre.transform(X_val), data.X_val.numpy())
    assert len(loaded.predict_frame(df.iloc[:10])) == 10


def test_feature_selection_prescription_cures_the_ratio():
    table = _wide()
    sp = split(table, seed=0)
    d = diagnosis_of(table, sp, [Symptom("high_dimensionality", 0.8, "wide")])
    params = BY_NAME["feature_selection"].prescribe(d)
    data = prepare(table, sp, fixed("feature_selection", params, diagnosis=d))
    assert len(sp.train) / data.n_features >= 5  # the check's threshold is met
    assert BY_NAME["feature_selection"].keep(Recipe()) == {"select": None, "select_rows_per_feature": 5.0}
    assert prepare(table, sp, Recipe()).n_features == 400


# --------------------------------------------------------------------------- SMOTENC
def _mixed(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(int)
    df = pd.DataFrame({"a": rng.normal(size=n) + 1.5 * y, "b": rng.normal(size=n),
                       "colour": np.where(y == 1, rng.choice(["red", "blue"], n, p=[0.8, 0.2]),
                                          rng.choice(["red", "blue", "green"], n)),
                       "target": y})
    return from_frame(df, target="target")


def test_smotenc_resamples_raw_mixed_columns():
    table = _mixed()
    assert table.categorical == ["colour"]
    sp = split(table, seed=0)
    d = diagnosis_of(table, sp, [Symptom("class_imbalance", 0.5, "imbalance")])
    recipe = fixed("resampling", {"resample": "smotenc"}, diagnosis=d)
    assert recipe.resample == "smotenc"
    plain, smote = prepare(table, sp, Recipe()), prepare(table, sp, recipe)
    counts = np.bincount(smote.y_train.numpy())
    assert counts[0] == counts[1] and len(smote.y_train) > len(plain.y_train)
    onehot = smote.X_train.numpy()[:, 2:]
    assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(1) == 1).all()  # real categories
    assert torch.equal(smote.X_train[:len(plain.X_train)], plain.X_train)  # originals first, as they were
    synthetic = smote.X_train.numpy()[len(plain.X_train):]
    assert len({r.tobytes() for r in synthetic[:, :2]} - {r.tobytes() for r in plain.X_train.numpy()[:, :2]}) > 0
    assert torch.equal(smote.X_val, plain.X_val)
    # plain SMOTE on the one-hot matrix blends categories; SMOTENC never does
    blend = prepare(table, sp, replace(Recipe(), resample="smote")).X_train.numpy()[:, 2:]
    assert not set(np.unique(blend)) <= {0.0, 1.0}


def test_smotenc_offered_only_with_categorical_columns(blobs):
    table, sp = blobs
    numeric_only = diagnosis_of(table, sp, [Symptom("class_imbalance", 0.5, "imbalance")])
    mixed_table = _mixed()
    mixed = diagnosis_of(mixed_table, split(mixed_table, seed=0), [Symptom("class_imbalance", 0.5, "i")])
    seen = {"numeric": set(), "mixed": set()}
    for key, d in (("numeric", numeric_only), ("mixed", mixed)):  # one study per table
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(60):
            t = study.ask()
            seen[key].add(BY_NAME["resampling"].apply(t, Recipe(), d).resample)
            study.tell(t, 0.0)
    assert "smotenc" in seen["mixed"] and "smotenc" not in seen["numeric"]


# --------------------------------------------------------------------------- restarts
def test_restarts_pick_the_best_seed_and_continue_it(blobs):
    table, sp = blobs
    given = Recipe(model=MLPSpec(hidden=(8,)), epochs=20, lr=3e-3, batch_size=64)
    recipe = fixed("restarts", {"restarts": 3}, given)
    data = prepare(table, sp, recipe)
    run = Trainer(recipe).fit(data)
    info = run.trace.info["restarts"]
    warm = warmup_epochs(recipe)
    assert info["warmup_epochs"] == warm == 2 and [t["seed"] for t in info["tried"]] == [0, 1, 2]
    # each candidate is exactly the single-seed run of that seed, cut at the warm-up
    singles = {}
    for s in (0, 1, 2):
        single = Trainer(replace(given, seed=s, epochs=warm)).fit(data)
        singles[s] = single
        assert info["tried"][s]["val_score"] == pytest.approx(single.trace.epochs[-1]["val_score"])
    best = max(info["tried"], key=lambda t: (t["val_score"], -t["val_loss"]))
    assert info["chosen_seed"] == best["seed"]
    # the chosen run goes on from its warm-up for the whole budget, not from scratch
    chosen = singles[best["seed"]]
    assert run.trace.column("train_loss")[:warm] == chosen.trace.column("train_loss")
    assert len(run.trace.epochs) == recipe.epochs
    # restarts = 1 is the recipe as given
    assert Trainer(given).fit(data).trace.column("train_loss") == \
        Trainer(replace(given, restarts=1)).fit(data).trace.column("train_loss")


def test_restarts_report_every_epoch_to_the_callback(blobs):
    table, sp = blobs
    recipe = Recipe(model=MLPSpec(hidden=(8,)), epochs=6, restarts=2)
    seen = []
    Trainer(recipe, on_epoch=lambda e, rec: seen.append(e)).fit(prepare(table, sp, recipe))
    assert seen == list(range(6))


# --------------------------------------------------------------------------- small-data priors
def test_rare_class_prescribes_strong_decay_and_offers_very_small_networks(blobs):
    table, sp = blobs
    rare = Symptom("class_imbalance", 0.8, "rare", {"counts": {"0": 120, "1": 13}})
    common = Symptom("class_imbalance", 0.3, "imbalance", {"counts": {"0": 500, "1": 90}})
    d_rare, d_common = diagnosis_of(table, sp, [rare]), diagnosis_of(table, sp, [common])
    p = ss.prescription(d_rare, [BY_NAME["architecture"], BY_NAME["weight_decay"]])
    built = ss.build_recipe(optuna.trial.FixedTrial(p), Recipe(), d_rare,
                            [BY_NAME["architecture"], BY_NAME["weight_decay"]])
    # the first trial keeps the shape and decays strongly (the measurement in weight_decay.py)
    assert built.model == Recipe().model and built.weight_decay == pytest.approx(1e-2)
    # very small networks (down to one layer of 4 units) are in the space for rare classes
    tiny = fixed("architecture", {"arch_width": 0.0625, "arch_depth": -1, "arch_residual": False},
                 diagnosis=d_rare)
    assert tiny.model.hidden == (4,)
    n_params = sum(q.numel() for q in tiny.build(6, 2).parameters())
    assert n_params < sum(q.numel() for q in Recipe().build(6, 2).parameters()) / 100
    p_common = ss.prescription(d_common, [BY_NAME["architecture"], BY_NAME["weight_decay"]])
    assert p_common["arch_width"] == 1.0 and not p_common["weight_decay_on"]
    for d, offered in ((d_rare, True), (d_common, False)):
        trial = optuna.create_study().ask()
        BY_NAME["architecture"].apply(trial, Recipe(), d)
        assert (0.0625 in trial.distributions["arch_width"].choices) is offered
    limited = diagnosis_of(table, sp, [Symptom("limited_data", 0.5, "few rows")])
    assert fixed("architecture", {"arch_width": 0.0625, "arch_depth": -1, "arch_residual": False},
                 diagnosis=limited).model.hidden == (4,)


def test_rare_class_prescribes_logit_adjustment_trained_to_the_end(blobs):
    table, sp = blobs
    rare = Symptom("class_imbalance", 0.8, "rare", {"counts": {"0": 120, "1": 13}})
    common = Symptom("class_imbalance", 0.3, "imbalance", {"counts": {"0": 500, "1": 90}})
    families = [BY_NAME[n] for n in ("class_weights", "losses", "early_stopping")]
    given = Recipe(early_stopping=10, class_weight=True)
    d_rare = diagnosis_of(table, sp, [rare], recipe=given)
    d_common = diagnosis_of(table, sp, [common], recipe=given)
    built = ss.build_recipe(optuna.trial.FixedTrial(ss.prescription(d_rare, families)), given,
                            d_rare, families)
    # logit adjustment replaces class weights (not both), and training runs to the end
    assert (built.loss, built.class_weight, built.early_stopping) == ("logit_adjusted", False, None)
    p = ss.prescription(d_rare, families)
    assert BY_NAME["early_stopping"].treated(p, "class_imbalance")
    assert BY_NAME["losses"].treated(p, "class_imbalance")
    # a larger minority class keeps class weights, the plain loss and early stopping as given
    built = ss.build_recipe(optuna.trial.FixedTrial(ss.prescription(d_common, families)), given,
                            d_common, families)
    assert (built.loss, built.class_weight, built.early_stopping) == ("default", True, 10)
    assert not BY_NAME["early_stopping"].treated(ss.prescription(d_common, families),
                                                 "class_imbalance")
    # without class imbalance, early stopping's own prescription is unchanged
    over = diagnosis_of(table, sp, [Symptom("overfitting", 0.5, "gap")], recipe=Recipe(epochs=60))
    assert ss.prescription(over, [BY_NAME["early_stopping"]]) == {"early_stopping_on": True,
                                                                   "early_stopping": 5}


# --------------------------------------------------------------------------- network surgery
@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal", "lecun"])
def test_init_reinitialises_with_the_stated_scheme(scheme):
    recipe = fixed("init", {"init": scheme}, Recipe(model=MLPSpec(hidden=(256, 256))))
    torch.manual_seed(0)
    net = recipe.build(256, 256)
    torch.manual_seed(0)
    default = Recipe(model=MLPSpec(hidden=(256, 256))).build(256, 256)
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 3
    for m, m0 in zip(layers, [m for m in default.modules() if isinstance(m, nn.Linear)]):
        w = m.weight.detach()
        fan_in, fan_out = w.shape[1], w.shape[0]
        assert not torch.equal(w, m0.weight.detach()) and float(m.bias.detach().abs().max()) == 0.0
        std = float(w.std())
        if scheme == "xavier":
            assert std == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.03)
            assert float(w.abs().max()) <= math.sqrt(6 / (fan_in + fan_out))  # uniform
        elif scheme == "kaiming":
            assert std == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
        elif scheme == "lecun":
            assert std == pytest.approx(math.sqrt(1 / fan_in), rel=0.03)
        else:
            assert torch.allclose(w @ w.T, torch.eye(fan_out), atol=1e-4)
    # PyTorch's own default (Kaiming-uniform with a=sqrt(5)) has std 1/sqrt(3 fan_in): distinct
    assert float(layers[0].weight.detach().std()) != pytest.approx(1 / math.sqrt(3 * 256), rel=0.03)


def test_dropout_layers_are_in_the_module_and_act_in_training():
    recipe = fixed("dropout", {"dropout": 0.3})
    net = recipe.build(5, 2)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == len(Recipe().model.hidden) and all(m.p == 0.3 for m in drops)
    x = torch.randn(64, 5)
    net.train()
    assert not torch.equal(net(x), net(x))  # random masks in training
    net.eval()
    assert torch.equal(net(x), net(x))
    assert not any(isinstance(m, nn.Dropout) for m in fixed("dropout", {"dropout": 0.0}).build(5, 2).modules())


# --------------------------------------------------------------------------- optimisation
@pytest.mark.parametrize("opt, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)])
def test_optimizer_and_weight_decay_reach_torch(blobs, opt, cls):
    table, sp = blobs
    params = {"optimizer": opt, "lr": 0.02, **({"momentum": 0.5} if opt == "sgd" else {})}
    recipe = fixed("optimizer", params, Recipe(epochs=1))
    recipe = fixed("weight_decay", {"weight_decay_on": True, "weight_decay": 3e-3}, recipe)
    spy = Spy()
    Trainer(recipe, probes=[spy]).fit(prepare(table, sp, recipe))
    assert type(spy.optimizer) is cls
    group = spy.optimizer.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 3e-3
    if opt == "sgd":
        assert group["momentum"] == 0.5
    off = fixed("weight_decay", {"weight_decay_on": False}, recipe)
    assert make_optimizer(off, [nn.Parameter(torch.zeros(1))]).param_groups[0]["weight_decay"] == 0


def test_weight_decay_shrinks_the_weights(blobs):
    table, sp = blobs
    base = Recipe(epochs=10, optimizer="adamw", lr=5e-2, batch_size=16)
    norms = {}
    for wd in (0.0, 0.1):
        recipe = fixed("weight_decay", {"weight_decay_on": wd > 0, "weight_decay": wd}, base)
        run = Trainer(recipe).fit(prepare(table, sp, recipe))
        norms[wd] = float(sum(p.detach().norm() ** 2 for p in run.model.parameters()))
    assert norms[0.1] < 0.85 * norms[0.0]


def test_l1_adds_lambda_sign_w_to_weight_gradients_only(blobs):
    # One full-batch SGD step from the same start: with λ the weight matrices move by an
    # extra −lr·λ·sign(w), biases not at all; the recorded training loss stays the data loss.
    table, sp = blobs
    lam, lr = 0.05, 0.1
    base = Recipe(epochs=1, optimizer="sgd", lr=lr, batch_size=len(sp.train))
    runs = {}
    for on in (False, True):
        recipe = fixed("l1", {"l1_on": on, "l1": lam}, base)
        assert recipe.l1 == (lam if on else 0.0)
        runs[on] = Trainer(recipe).fit(prepare(table, sp, recipe))
    plain, l1 = (dict(runs[k].model.named_parameters()) for k in (False, True))
    checked = 0
    for name, p in plain.items():
        diff = (l1[name] - p).detach()
        if p.dim() > 1:
            w = p.detach()
            clear = w.abs() > 1e-3  # sign unchanged by the one step
            expected = -lr * lam * torch.sign(w)
            assert torch.allclose(diff[clear], expected[clear], atol=1e-5)
            checked += int(clear.sum())
        else:
            assert torch.allclose(diff, torch.zeros_like(diff), atol=1e-6)
    assert checked > 100
    assert runs[True].trace.epochs[0]["train_loss"] == pytest.approx(runs[False].trace.epochs[0]["train_loss"])


def test_l1_shrinks_the_weights(blobs):
    from doctor.trainer import l1_norm

    table, sp = blobs
    base = Recipe(epochs=10, optimizer="adam", lr=1e-2, batch_size=16)
    norms = {}
    for lam in (0.0, 1e-3):
        recipe = fixed("l1", {"l1_on": lam > 0, "l1": lam}, base)
        norms[lam] = float(l1_norm(Trainer(recipe).fit(prepare(table, sp, recipe)).model).detach())
    assert norms[1e-3] < 0.7 * norms[0.0]
    assert BY_NAME["l1"].keep(base) == {"l1_on": False}
    assert fixed("l1", BY_NAME["l1"].keep(base), base) == base


def _lrs(schedule: str, epochs: int = 12, steps: int = 5, val_losses=None) -> list[float]:
    """The learning rate at each step, stepping the scheduler the way the trainer does."""
    recipe = Recipe(lr=0.1, epochs=epochs, schedule=schedule)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched, per_batch = make_schedule(recipe, opt, steps)
    out = []
    for e in range(epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_batch:
                sched.step()
        if not per_batch:
            sched.step((val_losses or [1.0] * epochs)[e]) if schedule == "plateau" else sched.step()
    return out


def test_lr_schedules_change_the_rate_as_stated(blobs):
    steps, epochs = 5, 12
    step = _lrs("step")
    assert step[0] == 0.1 and step[4 * steps] == pytest.approx(0.03) and step[-1] == pytest.approx(0.1 * 0.3 ** 2)
    cosine = _lrs("cosine")
    assert cosine[0] == 0.1 and all(a >= b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.002
    onecycle = _lrs("onecycle")
    peak = int(np.argmax(onecycle))
    assert onecycle[0] < 0.01 and max(onecycle) == pytest.approx(0.1, rel=0.01) and 0 < peak < len(onecycle) - 1
    assert onecycle[-1] < 1e-4
    warm = _lrs("warmup")
    w = max(1, epochs * steps // 20)  # 5% of the steps warm up
    assert warm[0] == pytest.approx(0.1 / w) and warm[w] == pytest.approx(0.1)
    assert warm[-1] < 0.01 and all(a <= b for a, b in zip(warm[:w + 1], warm[1:w + 1]))
    # plateau: the rate falls by 0.2 once the validation loss has not improved for 5 epochs
    flat = _lrs("plateau", val_losses=[1.0] * epochs)
    assert flat[:7 * steps] == [0.1] * (7 * steps) and flat[7 * steps] == pytest.approx(0.02)
    improving = _lrs("plateau", val_losses=[1.0 / (e + 1) for e in range(epochs)])
    assert set(improving) == {0.1}
    # through the trainer: the recorded per-epoch rate is the schedule's
    table, sp = blobs
    recipe = fixed("lr_schedule", {"schedule": "step"}, Recipe(epochs=6, optimizer="sgd", lr=0.1))
    run = Trainer(recipe).fit(prepare(table, sp, recipe))
    # each epoch records the rate it trained at; "step" multiplies it by 0.3 every epochs // 3
    assert run.trace.column("lr") == pytest.approx([0.1, 0.1, 0.03, 0.03, 0.009, 0.009])
    assert set(Trainer(Recipe(epochs=3)).fit(prepare(table, sp, Recipe(epochs=3))).trace.column("lr")) == {1e-3}


def test_gradient_clipping_bounds_the_norm():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(160, 4)) * 100.0, columns=list("abcd"))
    df["target"] = (df["a"] > 0).astype(int)
    table = from_frame(df, target="target")
    sp = split(table, seed=0)
    base = Recipe(epochs=2, optimizer="sgd", lr=1e-3, scaler="none", batch_size=32)
    for clip in (None, 0.5):
        params = {"grad_clip_on": True, "grad_clip": clip} if clip else {"grad_clip_on": False}
        recipe = fixed("grad_clipping", params, base)
        spy = Spy()
        run = Trainer(recipe, probes=[spy]).fit(prepare(table, sp, recipe))
        assert run.trace.diverged is None
        # plain SGD: the update is lr × the gradient actually used, so its norm shows the clip
        steps = [torch.norm(torch.stack([(b - a).norm() for a, b in zip(p0, p1)])) / recipe.lr
                 for p0, p1 in zip(spy.params_before, spy.params_before[1:])]
        assert max(spy.grad_norms) > 5.0  # the raw gradients are large
        if clip:
            assert max(float(s) for s in steps) <= clip * (1 + 1e-3)
        else:
            assert max(float(s) for s in steps) > 5.0


def test_losses_differ_from_cross_entropy_as_stated():
    torch.manual_seed(0)
    out, y = torch.randn(50, 3) * 2, torch.randint(0, 3, (50,))
    ce = F.cross_entropy(out, y, reduction="none")
    p = F.softmax(out, 1)[torch.arange(50), y]
    rows = {name: loss_per_row(fixed("losses", {"loss": name}), out, y, "classification", None)
            for name in ("default", "focal", "smoothing", "gce")}
    assert torch.allclose(rows["default"], ce)
    assert torch.allclose(rows["focal"], (1 - p) ** 2 * ce, atol=1e-6)  # gamma = 2
    assert (rows["focal"] < ce).all()  # confident rows count much less
    uniform = -F.log_softmax(out, 1).mean(1)
    assert torch.allclose(rows["smoothing"], 0.9 * ce + 0.1 * uniform, atol=1e-5)
    assert torch.allclose(rows["gce"], (1 - p ** 0.7) / 0.7, atol=1e-6)
    assert float(rows["gce"].max()) <= 1 / 0.7  # bounded: one mislabelled row cannot dominate
    assert float(ce.max()) > 1 / 0.7


def test_logit_adjusted_loss_trains_on_the_prior_shifted_logits(blobs):
    """Menon et al. 2021: cross-entropy of logits + log(training class frequency); the rare
    class needs a wider margin for the same loss, so its recall rises on a 1:9 table."""
    out, y = torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])
    prior = torch.tensor([0.9, 0.1])
    rows = loss_per_row(fixed("losses", {"loss": "logit_adjusted"}), out, y, "classification", None, prior)
    assert torch.allclose(rows, F.cross_entropy(out + prior.log(), y, reduction="none"))
    assert float(rows[2]) > float(rows[0])  # same logits, the rare class's row costs more
    X, labels = datasets.make_classification(600, 6, n_informative=3, class_sep=0.6, weights=[0.9, 0.1],
                                             flip_y=0, random_state=1)
    table = from_frame(pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(label=labels))
    sp = split(table, seed=0)
    recall = {}
    for loss in ("default", "logit_adjusted"):
        recipe = fixed("losses", {"loss": loss}, Recipe(epochs=30, batch_size=32))
        data = prepare(table, sp, recipe)
        run = Trainer(recipe).fit(data)
        with torch.no_grad():
            pred = run.model.eval()(data.X_val).argmax(1)
        rare = data.y_val == 1
        recall[loss] = float((pred[rare] == 1).float().mean())
    counts = np.bincount(data.y_train.numpy(), minlength=2)
    assert data.class_prior.tolist() == pytest.approx((counts / counts.sum()).tolist())
    assert recall["logit_adjusted"] >= recall["default"] + 0.2, recall


def test_class_weights_reach_the_loss(blobs):
    table = from_frame(blobs_frame(n=200).pipe(lambda df: df[(df.label == 0) | (df.index % 4 == 0)]))
    sp = split(table, seed=0)
    recipe = fixed("class_weights", {"class_weight": True}, Recipe(epochs=1))
    data = prepare(table, sp, recipe)
    counts = np.bincount(data.y_train.numpy())
    assert counts[0] > 2 * counts[1]
    assert data.class_weights.tolist() == pytest.approx((len(data.y_train) / (2 * counts)).tolist())
    assert prepare(table, sp, Recipe()).class_weights is None
    model = nn.Linear(data.n_features, 2)
    xb, yb = data.X_train[:40], data.y_train[:40]
    with torch.no_grad():
        got = Trainer(recipe)._step_loss(model, xb, yb, None, data)
        ce = F.cross_entropy(model(xb), yb, reduction="none")
    assert float(got) == pytest.approx(float((data.class_weights[yb] * ce).mean()), rel=1e-5)
    assert float(got) != pytest.approx(float(ce.mean()), rel=1e-3)


def test_label_noise_handling_touches_only_flagged_training_rows(blobs):
    table, sp = blobs
    noisy = np.array([3, 10, 11, 50])
    plain = prepare(table, sp, Recipe(), noisy=noisy)
    drop = prepare(table, sp, fixed("label_noise", {"noisy_rows": "drop"}), noisy=noisy)
    keep = np.setdiff1d(np.arange(len(plain.y_train)), noisy)
    assert torch.equal(drop.X_train, plain.X_train[keep]) and torch.equal(drop.y_train, plain.y_train[keep])
    down = prepare(table, sp, fixed("label_noise", {"noisy_rows": "downweight"}), noisy=noisy)
    assert torch.equal(down.X_train, plain.X_train)
    w = down.w_train.numpy()
    assert (w[noisy] == 0.25).all() and (np.delete(w, noisy) == 1.0).all()
    for d in (drop, down):
        assert torch.equal(d.X_val, plain.X_val) and torch.equal(d.y_val, plain.y_val)
    assert plain.w_train is None and len(plain.y_train) == len(sp.train)


class Inputs(Probe):
    """Records what the first layer of the network is fed while training."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []
        self.handle = None

    def on_train_begin(self, ctx):
        first = next(m for m in ctx.model.modules() if isinstance(m, nn.Linear))
        self.handle = first.register_forward_pre_hook(
            lambda mod, inp: self.seen.append(inp[0].detach().clone()) if mod.training else None)

    def on_train_end(self, ctx):
        self.handle.remove()


@pytest.mark.parametrize("params", [{"input_noise_on": False, "mixup_on": False},
                                    {"input_noise_on": True, "input_noise": 0.1, "mixup_on": False},
                                    {"input_noise_on": False, "mixup_on": True, "mixup": 0.4}])
def test_augmentation_changes_the_batches(blobs, params):
    table, sp = blobs
    recipe = fixed("augmentation", params, Recipe(epochs=1, batch_size=32))
    data = prepare(table, sp, recipe)
    spy = Inputs()
    Trainer(recipe, probes=[spy]).fit(data)
    fed = torch.cat(spy.seen)
    train_rows = {r.tobytes() for r in data.X_train.numpy()}
    known = np.mean([r.tobytes() in train_rows for r in fed.numpy()])
    lo, hi = data.X_train.min(0).values, data.X_train.max(0).values
    if recipe.input_noise:
        assert known == 0 and abs(float((fed - fed.round(decimals=0)).std())) > 0
    elif recipe.mixup:
        assert known < 0.5  # blends of two rows ...
        assert ((fed >= lo - 1e-5) & (fed <= hi + 1e-5)).all()  # ... inside the rows' box
    else:
        assert known == 1.0


# --------------------------------------------------------------------------- preprocessing
def test_preprocessing_scaler_imputer_clip_do_what_they_say():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=300)
    x[:10] = np.nan
    x[10] = 1e4  # an extreme value
    df = pd.DataFrame({"x": x, "z": rng.normal(size=300)})
    df["target"] = (df["z"] > 0).astype(int)
    table = from_frame(df, target="target")
    sp = Split(np.arange(200), np.arange(200, 250), np.arange(250, 300))
    train = df["x"].iloc[:200].to_numpy()
    observed = train[~np.isnan(train)]

    def col(params):
        recipe = fixed("preprocessing", {"scaler": "standard", "imputer": "median", "clip": None, **params})
        data = prepare(table, sp, recipe)
        return data.X_train.numpy()[:, 0].astype(np.float64), data

    standard, _ = col({"scaler": "standard"})
    assert standard.mean() == pytest.approx(0, abs=1e-5) and standard.std() == pytest.approx(1, rel=1e-4)
    robust, _ = col({"scaler": "robust"})
    q1, med, q3 = np.quantile(robust, [0.25, 0.5, 0.75])
    assert med == pytest.approx(0, abs=1e-6) and q3 - q1 == pytest.approx(1, rel=1e-4)
    minmax, _ = col({"scaler": "minmax"})
    assert minmax.min() == pytest.approx(0, abs=1e-6) and minmax.max() == pytest.approx(1, rel=1e-5)
    for imputer, stat in (("median", np.median(observed)), ("mean", np.mean(observed))):
        _, data = col({"scaler": "minmax", "imputer": imputer})
        filled = data.pre.fill_[0]
        assert filled == pytest.approx(stat)
    clipped, data = col({"scaler": "minmax", "clip": 0.01})
    lo, hi = np.quantile(np.where(np.isnan(train), np.median(observed), train), [0.01, 0.99])
    assert data.pre.hi_[0] == pytest.approx(hi) and data.pre.lo_[0] == pytest.approx(lo)
    assert 1e4 > hi  # the extreme value is pulled in to the 99th percentile
    assert clipped.max() == pytest.approx(1.0) and (clipped > 0.05).mean() > (minmax > 0.05).mean()


def test_batch_size_sets_the_steps(blobs):
    table, sp = blobs
    recipe = fixed("batch_size", {"batch_size": 16}, Recipe(epochs=1))
    run = Trainer(recipe).fit(prepare(table, sp, recipe))
    assert run.trace.info["batch_size"] == 16
    assert run.trace.info["steps_per_epoch"] == math.ceil(len(sp.train) / 16)


def test_resample_mixed_keeps_weights_and_handles_edge_cases():
    from search_spaces.resampling import resample_mixed

    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 8)
    num = rng.normal(size=(68, 2)) + y[:, None]
    codes = rng.integers(0, 3, size=(68, 1))
    w = rng.uniform(0.2, 0.9, 68).astype(np.float32)
    notes: list[str] = []
    n2, c2, y2, w2 = resample_mixed(num, codes, y, w, seed=0, notes=notes)
    assert notes == []  # SMOTENC itself ran
    assert np.bincount(y2).tolist() == [60, 60] and len(n2) == len(c2) == len(w2) == 120
    assert np.array_equal(n2[:68], num) and np.array_equal(c2[:68], codes) and np.array_equal(w2[:68], w)
    assert (w2[68:] == 1.0).all() and set(np.unique(c2)) <= {0, 1, 2}
    # all columns categorical: SMOTEN; a one-row class: random oversampling
    _, c3, y3, _ = resample_mixed(np.zeros((68, 0)), codes, y, None, seed=0)
    assert np.bincount(y3).tolist() == [60, 60] and set(np.unique(c3)) <= {0, 1, 2}
    one = np.array([0] * 67 + [1])
    n4, _, y4, _ = resample_mixed(num, codes, one, None, seed=0, notes=notes)
    assert np.bincount(y4).tolist() == [67, 67] and (n4[67:] == num[67]).all()
    assert len(notes) == 1 and notes[0].startswith("resampling smotenc could not run")


def test_the_cure_table_credits_only_the_hygiene_switch_that_was_on():
    from doctor.pipeline import cure_table
    from doctor.pipeline import remedies_applied
    from doctor.pipeline import symptoms_treated

    table = from_frame(_dirty_frame())
    sp = split(table, seed=0)
    dup = Symptom("duplicate_rows", 0.4, "dup", {"rows": 5}, remedies=("hygiene",))
    leak = Symptom("target_leakage", 0.9, "leak", {"columns": {"leak": {"single_feature_score": 1.0}}},
                   remedies=("hygiene",))
    d = diagnosis_of(table, sp, [dup, leak])
    families = [BY_NAME["hygiene"]]
    for on, off in (("drop_duplicates", "drop_leaking"), ("drop_leaking", "drop_duplicates")):
        params = {on: True, off: False}
        applied = remedies_applied(params, d, families)
        assert applied == ["hygiene"]
        rows = {r["id"]: r for r in cure_table(d, [], applied, symptoms_treated(params, families, applied))}
        treated = "duplicate_rows" if on == "drop_duplicates" else "target_leakage"
        other = "target_leakage" if on == "drop_duplicates" else "duplicate_rows"
        assert rows[treated]["status"] == "treated" and rows[treated]["after"] == {"by": ["hygiene"]}
        assert rows[other]["status"] == "remaining"  # its switch stayed off
        if other == "target_leakage":  # a kept leak tells the user what to do
            assert "leak" in rows[other]["after"]["note"] and "remove it" in rows[other]["after"]["note"]
        else:
            assert rows[other]["after"] == {"note": "no remedy for it was chosen"}
