"""The remedy families in `search_spaces/`: their contract and that each really changes training."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
from torch import nn

import search_spaces as ss
from doctor.checks import SYMPTOMS
from doctor.checks import DataProfile
from doctor.checks import Symptom
from doctor.data import from_frame
from doctor.data import split
from doctor.diagnosis import Diagnosis
from doctor.models import MLPSpec
from doctor.prepare import prepare
from doctor.recipe import Recipe
from doctor.robustness import robust_score
from doctor.trainer import Trainer
from search_spaces.resampling import SAMPLERS
from search_spaces.resampling import resample

optuna.logging.set_verbosity(optuna.logging.WARNING)

REMEDIES = ss.all_remedies()
BY_NAME = {r.name: r for r in REMEDIES}
#: A recipe with every seam set away from its default, to check that "as given" is reachable.
CUSTOM = Recipe(model=MLPSpec(hidden=(48, 24), activation="tanh", residual=True), optimizer="sgd",
                lr=0.05, epochs=30, batch_size=100, momentum=0.9, weight_decay=3e-4, schedule="cosine",
                grad_clip=2.0, init="xavier", activation="gelu", norm="layer", dropout=0.1,
                loss="focal", class_weight=True, resample="smote", noisy_rows="drop",
                input_noise=0.05, mixup=0.2, adversarial="fgsm", adv_eps=0.05, adv_ratio=0.3,
                early_stopping=7, scaler="minmax", imputer="mean", clip=0.005, restarts=2,
                drop_duplicates=True, drop_constant=True, drop_columns=("f3",), select="l1",
                select_rows_per_feature=3.0)
#: Evidence as the checks write it (doctor/checks/data.py), for the remedies that read it.
EVIDENCE = {"target_leakage": {"columns": {"f0": {"single_feature_score": 0.99, "one_to_one": False}}},
            "class_imbalance": {"counts": {"0": 170, "1": 30}, "rare_classes": ["1"]}}


def make_table(n: int = 200, minority: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < minority).astype(int)
    X = rng.normal(size=(n, 4)) + y[:, None] * 1.5
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    df["target"] = y
    return from_frame(df, target="target")


@pytest.fixture(scope="module")
def table():
    return make_table()


def diagnose(ids, *, recipe: Recipe = Recipe(), task: str = "classification",
             profile: DataProfile | None = None) -> Diagnosis:
    return Diagnosis([Symptom(i, 0.5, i, dict(EVIDENCE.get(i, {}))) for i in ids], recipe, task,
                     2 if task == "classification" else 0, profile)


@pytest.fixture(scope="module")
def everything(table) -> Diagnosis:
    """Every symptom found, label-noise rows flagged: every remedy applies."""
    profile = DataProfile(table, split(table, seed=0), noisy_rows=[0, 1, 2])
    return diagnose(list(SYMPTOMS), profile=profile)


def live_trials(n: int, seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        yield trial
        study.tell(trial, 0.0)


def replay(remedy, params, recipe, diagnosis):
    """Apply through a FixedTrial with out-of-range warnings as errors; (recipe, params used)."""
    trial = optuna.trial.FixedTrial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = remedy.apply(trial, recipe, diagnosis)
    return out, trial.params


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("remedy", REMEDIES, ids=lambda r: r.name)
def test_contract(remedy, everything):
    assert remedy.name and remedy.treats, "a remedy needs a name and the symptoms it treats"
    assert set(remedy.treats) <= set(SYMPTOMS)
    assert getattr(remedy, "stage", None) in ss.STAGES
    assert remedy.applicable(everything.recipe, everything)
    for recipe in (Recipe(), CUSTOM):
        for trial in live_trials(12, seed=len(remedy.name)):
            built = remedy.apply(trial, recipe, everything)
            assert isinstance(built, Recipe)
            again, _ = replay(remedy, dict(trial.params), recipe, everything)
            assert again == built
        # the recipe as given is one point of the space
        kept, _ = replay(remedy, remedy.keep(recipe), recipe, everything)
        assert kept == recipe


@pytest.mark.parametrize("remedy", REMEDIES, ids=lambda r: r.name)
def test_prescriptions_replay(remedy, everything):
    assert remedy.prescribe(diagnose([])) == ({"optimizer": "adam", "lr": 1e-3} if remedy.always else {})
    cases = [[s] for s in remedy.treats] + [list(SYMPTOMS)]
    for ids in cases:
        for recipe in (Recipe(), CUSTOM):
            d = diagnose(ids, recipe=recipe, profile=everything.profile)
            params = remedy.prescribe(d)
            assert params, f"{remedy.name} prescribes nothing for {ids}"
            _, used = replay(remedy, params, recipe, d)  # no missing or out-of-range values
            assert set(used) == set(params), "a prescription names exactly the parameters used"


def test_names_and_parameters_are_unique(everything):
    assert [r.name for r in REMEDIES] == sorted(r.name for r in REMEDIES)
    owner: dict[str, str] = {}
    for r in REMEDIES:
        for trial in live_trials(20):
            r.apply(trial, CUSTOM, everything)
            for p in trial.params:
                assert owner.setdefault(p, r.name) == r.name, f"{p} used by {owner[p]} and {r.name}"


def test_build_recipe_replays_in_stage_order(everything):
    remedies = ss.select(everything, space="full")
    assert {r.name for r in remedies} == set(BY_NAME)
    for trial in live_trials(15, seed=1):
        built = ss.build_recipe(trial, Recipe(), everything, remedies)
        fixed = optuna.trial.FixedTrial(dict(trial.params))
        assert ss.build_recipe(fixed, Recipe(), everything, remedies) == built
        order = list(fixed.params)
        assert order.index("scaler") < order.index("arch_width") < order.index("optimizer") \
            < order.index("dropout") < order.index("adversarial")
    first = ss.prescription(everything, remedies)
    rebuilt = ss.build_recipe(optuna.trial.FixedTrial(first), Recipe(), everything, remedies)
    assert rebuilt.activation == "leaky_relu" and rebuilt.grad_clip == 1.0


def test_replay_leaves_families_a_trial_never_searched_as_given(everything):
    """A resumed or joined study may hold trials made with fewer families (another diagnosis,
    an earlier version): replaying them keeps those families as given instead of failing."""
    few = [r for r in ss.select(everything, space="full") if r.name in ("optimizer", "dropout")]
    trial = next(live_trials(1, seed=3))
    made = ss.build_recipe(trial, Recipe(), everything, few)
    more = ss.select(everything, space="full")
    with pytest.raises(ValueError):  # a plain FixedTrial cannot replay it
        ss.build_recipe(optuna.trial.FixedTrial(dict(trial.params)), Recipe(), everything, more)
    rebuilt = ss.replay(dict(trial.params), Recipe(), everything, more)
    assert rebuilt == made
    assert (rebuilt.optimizer, rebuilt.dropout) == (made.optimizer, made.dropout)


def test_select_guided_and_full():
    d = diagnose(["overfitting"])
    guided = [r.name for r in ss.select(d)]
    treating = ["architecture", "augmentation", "dropout", "early_stopping", "l1", "optimizer",
                "weight_decay"]
    assert set(treating) <= set(guided) == set(treating) | set(getattr(ss, "GENERIC", ()))
    assert not {"resampling", "adversarial", "hygiene", "feature_selection", "restarts"} & set(guided)
    full = {r.name for r in ss.select(d, space="full")}
    assert "label_noise" not in full and {"resampling", "adversarial"} <= full
    with pytest.raises(ValueError):
        ss.select(d, space="everything")
    assert ss.remedies_for("class_imbalance") == ["architecture", "class_weights", "early_stopping",
                                                  "losses", "resampling", "weight_decay"]
    assert ss.remedies_for("duplicate_rows") == ["hygiene"]
    assert ss.remedies_for("target_leakage") == ["hygiene"]
    assert ss.remedies_for("high_dimensionality") == ["architecture", "dropout", "feature_selection",
                                                      "l1", "weight_decay"]


def test_class_weights_are_searched_for_every_classification_but_prescribed_for_imbalance():
    # the objective is balanced accuracy for every classification (doctor.metrics), so the
    # guided space offers class weights without class_imbalance too, keeping them as given
    # in the prescription; regression has no classes to weigh
    plain = diagnose(["slow_convergence"])
    assert "class_weights" in {r.name for r in ss.select(plain)}
    assert ss.prescription(plain, ss.select(plain))["class_weight"] is False
    imbalanced = diagnose(["class_imbalance"])
    assert ss.prescription(imbalanced, ss.select(imbalanced))["class_weight"] is True
    assert "class_weights" not in {r.name for r in ss.select(diagnose(["slow_convergence"],
                                                                      task="regression"))}


def test_prescription_is_as_given_plus_changes():
    d = diagnose(["overfitting"])
    first = ss.prescription(d, ss.select(d, space="full"))
    built = ss.build_recipe(optuna.trial.FixedTrial(first), d.recipe, d, ss.select(d, space="full"))
    assert built == replace(d.recipe, weight_decay=1e-3, dropout=0.25, early_stopping=5)


def test_not_applicable():
    reg = diagnose([], task="regression")
    for name in ("resampling", "class_weights", "losses", "adversarial"):
        assert not BY_NAME[name].applicable(reg.recipe, reg)
    user = replace(Recipe(), model=lambda n_in, n_out: nn.Sequential(nn.Linear(n_in, n_out)))
    assert not BY_NAME["architecture"].applicable(user, diagnose([], recipe=user))
    assert BY_NAME["architecture"].prescribe(diagnose(["underfitting"], recipe=user)) == {}
    assert not BY_NAME["label_noise"].applicable(Recipe(), diagnose([]))
    # label noise without flagged rows: nothing to drop, a robust loss instead
    assert not BY_NAME["label_noise"].applicable(Recipe(), diagnose(["label_noise"]))
    assert BY_NAME["losses"].prescribe(diagnose(["label_noise"]))["loss"] == "gce"


# --------------------------------------------------------------------------- prescriptions
def test_first_choice_repairs():
    sigmoid = replace(Recipe(), model=MLPSpec(activation="sigmoid"))
    p = ss.prescription(d := diagnose(["vanishing_gradient"], recipe=sigmoid), ss.select(d))
    assert (p["activation"], p["init"], p["norm"]) == ("relu", "kaiming", "batch")
    p = ss.prescription(d := diagnose(["vanishing_gradient"]), ss.select(d))  # already ReLU
    assert (p["activation"], p["init"]) == ("selu", "lecun")
    p = ss.prescription(d := diagnose(["dying_relu"]), ss.select(d))
    assert p["activation"] == "leaky_relu" and p["lr"] == pytest.approx(1e-4)
    p = ss.prescription(d := diagnose(["exploding_gradient"]), ss.select(d))
    assert p["lr"] == pytest.approx(1e-4) and p["grad_clip_on"] and p["grad_clip"] == 1.0
    p = ss.prescription(d := diagnose(["loss_oscillation"]), ss.select(d))
    assert p["schedule"] == "plateau" and p["lr"] == pytest.approx(1e-4)
    p = ss.prescription(d := diagnose(["slow_convergence"]), ss.select(d))
    assert p["lr"] == pytest.approx(1e-2) and p["epochs_factor"] == 2.0
    sgd = replace(Recipe(), optimizer="sgd", lr=0.01)
    p = ss.prescription(d := diagnose(["slow_convergence"], recipe=sgd), ss.select(d))
    assert p["optimizer"] == "adam" and "momentum" not in p
    p = ss.prescription(d := diagnose(["class_imbalance", "outliers"]), ss.select(d))
    assert p["class_weight"] and p["resample"] == "none" and p["scaler"] == "robust"
    p = ss.prescription(d := diagnose(["unscaled_features"]), ss.select(d))
    assert p["scaler"] == "standard"  # the recipe already scales: treated as given
    p = ss.prescription(d := diagnose(["unscaled_features"], recipe=replace(Recipe(), scaler="none")), ss.select(d))
    assert p["scaler"] == "standard"
    p = ss.prescription(d := diagnose(["unscaled_features", "outliers"]), ss.select(d))
    assert p["scaler"] == "robust" and p["clip"] == 0.01
    p = ss.prescription(d := diagnose(["underfitting"]), ss.select(d))
    built = ss.build_recipe(optuna.trial.FixedTrial(p), d.recipe, d, ss.select(d))
    assert built.model.hidden == (128, 128, 128) and built.epochs == 80 and built.lr == 1e-2


def test_epochs_capped_at_three_times_the_budget():
    d = diagnose(["underfitting"], recipe=replace(Recipe(), epochs=10))
    epochs = BY_NAME["epochs"]
    assert epochs.apply(optuna.trial.FixedTrial({"epochs_factor": 3.0}), d.recipe, d).epochs == 30
    longer = replace(d.recipe, epochs=25)  # even from a recipe that was already raised
    assert epochs.apply(optuna.trial.FixedTrial({"epochs_factor": 3.0}), longer, d).epochs == 30


# --------------------------------------------------------------------------- behaviour
def test_swapped_activation_is_in_the_network():
    recipe = BY_NAME["activation"].apply(optuna.trial.FixedTrial({"activation": "elu"}), Recipe(), None)
    kinds = {type(m) for m in recipe.build(5, 3).modules()}
    assert nn.ELU in kinds and nn.ReLU not in kinds


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_norm_layer_is_inserted(norm, layer):
    recipe = BY_NAME["normalization"].apply(optuna.trial.FixedTrial({"norm": norm}), Recipe(), None)
    net = recipe.build(5, 2)
    assert sum(isinstance(m, layer) for m in net.modules()) == len(Recipe().model.hidden)


def test_layer_norm_is_offered_for_classification_only():
    from search_spaces.normalization import choices

    def asked(task, recipe=Recipe()):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        d = diagnose(["vanishing_gradient"], recipe=recipe, task=task)
        for _ in range(20):
            t = study.ask()
            BY_NAME["normalization"].apply(t, recipe, d)
            study.tell(t, 0.0)
        return {t.params["norm"] for t in study.trials}, choices(recipe, d)

    assert asked("classification") == ({None, "batch", "layer"}, [None, "batch", "layer"])
    assert asked("regression") == ({None, "batch"}, [None, "batch"])
    # a regression recipe that already uses layer norm keeps it reachable
    assert "layer" in asked("regression", Recipe(norm="layer"))[1]


def test_architecture_resizes_the_mlp():
    params = {"arch_width": 0.5, "arch_depth": 1, "arch_residual": True}
    recipe = BY_NAME["architecture"].apply(optuna.trial.FixedTrial(params), Recipe(), None)
    assert recipe.model == MLPSpec(hidden=(32, 32, 32), activation="relu", residual=True)
    assert sum(isinstance(m, nn.Linear) for m in recipe.build(4, 2).modules()) == 4


def _row_weights(X, w):
    return {row.tobytes(): float(v) for row, v in zip(X, w)}


@pytest.mark.parametrize("name", [s for s in SAMPLERS if s != "none"])
def test_resample_changes_counts_and_keeps_weights_aligned(name):
    rng = np.random.default_rng(0)
    y = np.array([0] * 100 + [1] * 20)
    X = (rng.normal(size=(120, 3)) + y[:, None] * 1.0).astype(np.float32)
    w = rng.uniform(0.2, 0.9, 120).astype(np.float32)  # never 1.0: synthetic rows stand out
    Xr, yr, wr = resample(name, X, y, w, seed=0)
    assert Xr.dtype == np.float32 and len(Xr) == len(yr) == len(wr)
    before, after = np.bincount(y), np.bincount(yr, minlength=2)
    assert after[1] / after.sum() > before[1] / before.sum()  # the minority share grows
    original = _row_weights(X, w)
    for row, v in zip(Xr, wr):
        assert v == original.get(row.tobytes(), 1.0)
    assert resample(name, X, y, None, seed=0)[2] is None


def test_resample_tiny_classes():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(43, 2)).astype(np.float32)
    y = np.array([0] * 40 + [1] * 2 + [2])
    for name in ("smote", "adasyn", "borderline_smote", "smoteenn", "smotetomek"):
        notes: list[str] = []
        Xr, yr, _ = resample(name, X, y, None, seed=0, notes=notes)  # random oversampling
        assert np.bincount(yr, minlength=3)[2] > 1
        assert notes == [f"resampling {name} could not run on these training rows (a class has "
                         "only 1 training row); random oversampling ran instead"]
    assert resample("none", X, y, None, seed=0)[0] is X
    # three rows in the minority: SMOTE itself runs, with two neighbours instead of five
    notes = []
    Xr, yr, _ = resample("smote", X, np.array([0] * 40 + [1] * 3), None, seed=0, notes=notes)
    assert notes == []
    synthetic = {row.tobytes() for row in Xr} - {row.tobytes() for row in X}
    assert np.bincount(yr).tolist() == [40, 40] and len(synthetic) == 37


def test_resampling_touches_only_training_rows(table):
    sp = split(table, seed=0)
    plain = prepare(table, sp, Recipe())
    smote = prepare(table, sp, replace(Recipe(), resample="smote"))
    counts = np.bincount(smote.y_train.numpy())
    assert counts[0] == counts[1] and len(smote.y_train) > len(plain.y_train)
    assert (smote.X_val == plain.X_val).all() and (smote.y_val == plain.y_val).all()


def test_early_stopping_stops():
    rng = np.random.default_rng(0)  # random labels: the validation loss only rises
    df = pd.DataFrame(rng.normal(size=(120, 5)), columns=list("abcde"))
    df["target"] = rng.integers(0, 2, 120)
    table = from_frame(df, target="target")
    given = Recipe(model=MLPSpec(hidden=(64, 64)), epochs=200, lr=1e-2, batch_size=32)
    recipe = BY_NAME["early_stopping"].apply(
        optuna.trial.FixedTrial({"early_stopping_on": True, "early_stopping": 5}), given, None)
    run = Trainer(recipe).fit(prepare(table, split(table, seed=0), recipe))
    assert run.trace.info["stopped_early_at"] < 100
    assert len(run.trace.epochs) == run.trace.info["stopped_early_at"] + 1
    assert "restored_epoch" in run.trace.info


def test_adversarial_training_raises_robust_accuracy():
    # 2-D: `a` is right 90% of the time with a wide margin; `b` is always right but its margin
    # is tiny. Plain training leans on `b`; an attack of 0.5 std flips it.
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    s = 2 * y - 1
    df = pd.DataFrame({"a": s * np.where(rng.random(n) < 0.9, 1.0, -1.0) + rng.normal(0, 0.1, n),
                       "b": s * rng.uniform(0.0, 0.1, n), "target": y})
    table = from_frame(df, target="target")
    sp = split(table, seed=0)
    given = Recipe(model=MLPSpec(hidden=(32, 32)), epochs=30, lr=1e-2, batch_size=32)
    d = diagnose(["adversarial_vulnerability"], recipe=given)
    eps = 0.5
    scores = {}
    for method in (None, "fgsm"):
        params = {"adversarial": method, "adv_eps": eps, "adv_ratio": 0.5} if method else {"adversarial": None}
        recipe = BY_NAME["adversarial"].apply(optuna.trial.FixedTrial(params), given, d)
        data = prepare(table, sp, recipe)
        run = Trainer(recipe).fit(data)
        scores[method] = robust_score(run.model, data.X_val, data.y_val, eps, "classification")
    assert scores["fgsm"][1] >= scores[None][1] + 0.08
    assert scores["fgsm"][0] >= 0.85


# --------------------------------------------------------------------------- the base class
def test_base_class_requires_stage_and_keep():
    from doctor.remedy import STAGES
    from doctor.remedy import Remedy

    assert STAGES == ss.STAGES
    with pytest.raises(TypeError, match="stage"):
        type("Misplaced", (Remedy,), {"name": "x", "stage": "somewhere",
                                      "apply": lambda self, t, r, d: r, "keep": lambda self, r: {}})
    with pytest.raises(TypeError, match="keep"):
        type("Forgetful", (Remedy,), {"name": "x", "stage": "data", "apply": lambda self, t, r, d: r})
    plain = type("Plain", (Remedy,), {"name": "x", "apply": lambda self, t, r, d: r,
                                      "keep": lambda self, r: {}})()
    assert plain.stage == "robustness"  # the default runs last, after every declared stage
