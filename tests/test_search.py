"""The search (issue #4): pruning with reasons, the verified cure, the guided and full spaces.

Small and fast: 160-row tables, a handful of epochs and trials, in-memory studies.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from torch import nn

import doctor.search as search
import search_spaces
from doctor.remedy import Remedy
from helpers import blobs_frame

TrialState = optuna.trial.TrialState


@pytest.fixture(scope="module")
def small():
    """A healthy 160-row classification case and its diagnosis (10 epochs)."""
    from doctor.api import make_case
    from doctor.diagnosis import diagnose_table

    case = make_case(None, blobs_frame(160), target="label", epochs=10, batch_size=32)
    diagnosis, run, prepared = diagnose_table(case.table, case.split, case.recipe, device="cpu")
    return case, diagnosis, run, prepared


def healthy_net(n_features: int, n_outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, n_outputs))


def dead_net(n_features: int, n_outputs: int) -> nn.Module:
    """Every hidden ReLU unit dead from the start: a bias of -100 on standardised inputs."""
    net = healthy_net(n_features, n_outputs)
    with torch.no_grad():
        net[0].bias.fill_(-100.0)
        net[2].bias.fill_(-100.0)
    return net


class Sickness(Remedy):
    """A test family: `net` picks a healthy or a dead network; `lr` can make training diverge."""

    name = "sickness"
    stage = "optimisation"

    def apply(self, trial, recipe, diagnosis):
        net = trial.suggest_categorical("net", ["healthy", "dead"])
        lr = trial.suggest_categorical("lr", [0.1, 1e12])
        return replace(recipe, model=healthy_net if net == "healthy" else dead_net,
                       optimizer="sgd", lr=lr)

    def keep(self, recipe) -> dict[str, Any]:
        return {"net": "healthy", "lr": 0.1}


def study_with(small, queue: list[tuple[dict, dict | None]], trials: int) -> optuna.Study:
    case, diagnosis, _, _ = small
    study = optuna.create_study(direction="maximize", pruner=search.make_pruner(10),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for params, attrs in queue:
        study.enqueue_trial(params, user_attrs=attrs)
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, [Sickness()], "cpu")
    study.optimize(objective, n_trials=trials, catch=(Exception,))
    return study


# ----------------------------------------------------------------------------- pruning
def test_a_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(small):
    study = study_with(small, [({"net": "healthy", "lr": 1e12}, None),
                               ({"net": "healthy", "lr": 0.1}, None)], trials=2)
    diverged, healthy = study.trials
    assert diverged.state == TrialState.PRUNED
    reason = diverged.user_attrs["reason"]
    assert "loss became" in reason or "non-finite" in reason, reason
    assert diverged.user_attrs.get("symptoms") == ["loss_divergence"] or "non-finite" in reason
    assert healthy.state == TrialState.COMPLETE and healthy.value > 0.7


def test_diagnosis_aware_pruning_stops_a_sick_trial_but_never_the_prescription(small):
    dead = {"net": "dead", "lr": 0.1}
    study = study_with(small, [({"net": "healthy", "lr": 0.1}, None),
                               (dead, {"doctor:prescribed": True}),
                               (dead, None)], trials=3)
    healthy, prescribed, sick = study.trials
    assert healthy.state == TrialState.COMPLETE
    # the same dead network: run to the end as the prescription, stopped early otherwise
    assert prescribed.state == TrialState.COMPLETE
    assert prescribed.user_attrs["epochs_run"] == 10
    assert sick.state == TrialState.PRUNED
    assert sick.user_attrs["pruned_by"] == "diagnosis"
    assert sick.user_attrs["symptoms"] == ["dying_relu"]
    assert "dying_relu" in sick.user_attrs["reason"] and "dead" in sick.user_attrs["reason"]
    assert max(sick.intermediate_values) < 9  # before the last epoch


def test_a_retry_runs_the_abandoned_configuration_and_keeps_families_it_lacked(small):
    """An abandoned trial from a run whose space had no `lr` is run again as it was: its
    parameters come back, and `lr` (a family it did not have) is kept as given, not drawn."""
    case, diagnosis, _, _ = small
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params={"net": "healthy"},
        distributions={"net": optuna.distributions.CategoricalDistribution(["healthy", "dead"])},
        user_attrs={"doctor:retry_of": 7}))
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, [Sickness()], "cpu")
    study.optimize(objective, n_trials=1)
    retry, = study.trials
    assert retry.state == TrialState.COMPLETE and retry.value > 0.7  # lr as given (0.1), not 1e12
    assert retry.params == {"net": "healthy"}
    # a trial that is not a retry draws every parameter of the space
    study.optimize(objective, n_trials=1, catch=(Exception,))
    assert set(study.trials[1].params) == {"net", "lr"}


def test_a_study_with_other_choices_for_a_parameter_is_searched_with_its_own(small, tmp_path):
    """A study made by another version whose family offered other choices ("retired" is gone,
    or was never offered here) resumes: its trials ask with the study's choices instead of
    failing on Optuna's "dynamic value space" error."""
    case, diagnosis, _, _ = small
    old = optuna.distributions.CategoricalDistribution(["healthy", "dead", "retired"])
    lr = optuna.distributions.CategoricalDistribution([0.1, 1e12])

    def study_of_old_version() -> optuna.Study:
        storage = f"sqlite:///{tmp_path / f'old{len(list(tmp_path.iterdir()))}.db'}"
        study = optuna.create_study(storage=storage, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        study.add_trial(optuna.trial.create_trial(params={"net": "healthy", "lr": 0.1}, value=0.9,
                                                  distributions={"net": old, "lr": lr}))
        return study

    study = study_of_old_version()
    assert search.stored_choices(study) == {"net": ("healthy", "dead", "retired"), "lr": (0.1, 1e12)}
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, [Sickness()], "cpu",
                                 choices=search.stored_choices(study))
    study.optimize(objective, n_trials=3, catch=(Exception,))
    assert all(t.state != TrialState.FAIL for t in study.trials[1:])
    assert all(t.distributions["net"] == old for t in study.trials[1:])
    # without the study's choices every trial fails (the error this guards against)
    study = study_of_old_version()
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, [Sickness()], "cpu")
    study.optimize(objective, n_trials=1, catch=(Exception,))
    assert study.trials[1].state == TrialState.FAIL
    assert "dynamic value space" in study.trials[1].user_attrs["reason"]


def test_a_prescription_queued_twice_at_once_runs_once(small):
    """Two workers joining at the same moment each queue the prescription: the later twin
    steps aside when it starts, and a different queued configuration still runs."""
    healthy = {"net": "healthy", "lr": 0.1}
    study = study_with(small, [(healthy, {"doctor:prescribed": True}),
                               (healthy, {"doctor:prescribed": True}),
                               ({"net": "dead", "lr": 0.1}, None)], trials=3)
    first, twin, other = study.trials
    assert first.state == TrialState.COMPLETE
    assert twin.state == TrialState.PRUNED and "trial 0" in twin.user_attrs["reason"]
    assert "epochs_run" not in twin.user_attrs  # it did not train
    assert "same queued configuration" not in other.user_attrs.get("reason", "")


def test_a_trial_as_good_as_the_best_is_never_stopped_for_a_symptom(small):
    """The first trial has no best to compare with; it is not protected and is stopped, the
    protection rule itself keeps trials at or above the best."""
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.8))
    trial = study.ask()
    assert search._protected(trial, 0.8) and search._protected(trial, 0.9)
    assert not search._protected(trial, 0.79)


def test_sick_trial_judges_vanishing_gradients_on_recent_readings():
    from doctor.trace import Trace

    sick = search.SickTrial()
    steps = [{"step": i, "grad_norm": [1e-3, 1.0], "weight_norm": [1.0, 1.0]} for i in range(10)]
    trace = Trace(layers=["a", "b"], steps=steps)
    assert sick.vanishing_now(trace) is None  # exactly at the 1e-3 threshold: not below it
    trace.steps = [{**s, "grad_norm": [1e-5, 1.0]} for s in steps]
    assert sick.vanishing_now(trace) is not None
    # a run that escaped: early readings vanish, the recent half is healthy
    trace.steps = [{**s, "grad_norm": [1e-5, 1.0] if i < 5 else [0.5, 1.0]}
                   for i, s in enumerate(steps)]
    assert sick.vanishing_now(trace) is None


def test_hyperband_is_available_for_the_comparison():
    assert isinstance(search.make_pruner(40, "hyperband"), optuna.pruners.HyperbandPruner)
    assert isinstance(search.make_pruner(40), optuna.pruners.MedianPruner)
    with pytest.raises(ValueError, match="median"):
        search.make_pruner(40, "random")


# ----------------------------------------------------------------------------- the verified cure
def candidate(label: str, scores: list[float], outputs: list[torch.Tensor], y: torch.Tensor,
              trial: int | None) -> search.Candidate:
    c = search.Candidate(label, None, {}, trial)
    c.seeds = list(range(len(scores)))
    c.scores = list(scores)
    c.outputs = outputs
    c.y_val = [y] * len(scores)
    return c


def logits_with_accuracy(y: torch.Tensor, correct: np.ndarray) -> torch.Tensor:
    """Two-class logits that are right exactly on the rows where `correct` is True."""
    pred = torch.where(torch.as_tensor(correct), y, 1 - y)
    return nn.functional.one_hot(pred, 2).float() * 4.0


def test_cure_acceptance_keeps_the_recipe_when_the_gain_is_within_noise():
    from doctor.metrics import score_tensor

    rng = np.random.default_rng(0)
    y = torch.as_tensor(rng.integers(0, 2, 60))
    # 60 validation rows, three seeds each: per seed, the search's best gets 4 rows right that
    # the recipe gets wrong and 3 wrong that it gets right: a net gain of 1 row in 60
    outs_u, outs_c = [], []
    for _ in range(3):
        base = rng.random(60) < 0.8
        cure = base.copy()
        cure[rng.choice(np.flatnonzero(~base), 4, replace=False)] = True
        cure[rng.choice(np.flatnonzero(base), 3, replace=False)] = False
        outs_u.append(logits_with_accuracy(y, base))
        outs_c.append(logits_with_accuracy(y, cure))
    user = candidate("recipe as given", [score_tensor(o, y, "classification") for o in outs_u],
                     outs_u, y, None)
    cure = candidate("trial 4", [score_tensor(o, y, "classification") for o in outs_c], outs_c, y, 4)
    assert cure.mean > user.mean  # the search's best is higher …
    chosen, record = search.decide(user, [cure], "classification")
    assert chosen is user  # … by less than the noise of 60 rows and three seeds
    assert not record["accepted"] and record["margin"] > record["gain"] > 0
    assert "within noise" in record["decision"]


def test_a_cure_picked_among_several_needs_a_wider_margin(monkeypatch):
    """The best of several noisy candidates is noise picked for being high: the gain it must
    show grows with the number it was picked from (Šidák), unless it is the prescription."""
    from doctor.recipe import Recipe

    monkeypatch.setattr(search, "seed_se", lambda a, b: 0.03)
    monkeypatch.setattr(search, "paired_se", lambda a, b, task, seed=0: 0.04)  # SE 0.05
    assert search.standard_errors_for(1) == 1.0
    assert 1.7 < search.standard_errors_for(4) < 1.75
    y = torch.as_tensor([0, 1] * 10)
    outs = [logits_with_accuracy(y, np.ones(20, bool))] * 3
    user = candidate("recipe as given", [0.50] * 3, outs, y, None)
    user.recipe = Recipe()

    def trial(n: int, score: float, prescribed: bool = False):
        c = candidate(f"trial {n}", [score] * 3, outs, y, n)
        c.recipe, c.prescribed = Recipe(lr=0.01 * (n + 1)), prescribed
        return c

    best = trial(1, 0.56)  # 1.2 standard errors above the recipe as given
    chosen, record = search.decide(user, [best], "classification")
    assert chosen is best and record["standard_errors"] == 1.0
    chosen, record = search.decide(user, [best, trial(2, 0.52), trial(3, 0.51), trial(4, 0.50)],
                                   "classification")
    # picked among four, the best is judged with the others: their mean gains 0.0225 < 0.05
    assert chosen is user and not record["accepted"]
    assert record["gain"] == pytest.approx(0.0225) and record["margin"] == pytest.approx(0.05)
    assert record["group"]["members"] == ["trial 1", "trial 2", "trial 3", "trial 4"]
    assert "within noise" in record["decision"] and "4 trials together" in record["decision"]
    # the same gain from the prescription (named before any score) is one comparison
    rx = trial(1, 0.56, prescribed=True)
    chosen, record = search.decide(user, [rx, trial(2, 0.52), trial(3, 0.51)], "classification")
    assert chosen is rx and record["standard_errors"] == 1.0


def test_several_trials_that_all_beat_the_recipe_are_judged_together(monkeypatch):
    """Three trials, each above the recipe as given: their mean gain clears one standard error,
    though the best's own gain is under the 1.73 standard errors of a best-of-four pick. The
    kept trial is the best of them; the prescription's trial, beaten, stays out of the group."""
    from doctor.recipe import Recipe

    monkeypatch.setattr(search, "seed_se", lambda a, b: 0.06)
    monkeypatch.setattr(search, "paired_se", lambda a, b, task, seed=0: 0.08)  # SE 0.10
    y = torch.as_tensor([0, 1] * 10)
    outs = [logits_with_accuracy(y, np.ones(20, bool))] * 3
    user = candidate("recipe as given", [0.58] * 3, outs, y, None)
    user.recipe = Recipe()
    trials = []
    for n, score in [(4, 0.75), (1, 0.72), (10, 0.73)]:
        c = candidate(f"trial {n}", [score] * 3, outs, y, n)
        c.recipe = Recipe(lr=0.001 * n)
        trials.append(c)
    rx = candidate("trial 0", [0.40] * 3, outs, y, 0)
    rx.recipe, rx.prescribed = Recipe(weight_decay=0.01), True
    assert trials[0].mean - user.mean < 0.10 * search.standard_errors_for(4)
    chosen, record = search.decide(user, trials + [rx], "classification")
    assert chosen is trials[0] and record["accepted"]
    assert record["group"]["members"] == ["trial 4", "trial 1", "trial 10"]
    assert record["gain"] == pytest.approx(0.7333 - 0.58, abs=1e-3) and record["margin"] == pytest.approx(0.10)
    assert record["decision"].startswith("took trial 4, the best of them")


def test_a_group_is_scored_as_the_mean_of_its_members_on_the_same_rows():
    from doctor.metrics import score_tensor

    rng = np.random.default_rng(5)
    y = torch.as_tensor(rng.integers(0, 2, 50))
    masks = [rng.random(50) < p for p in (0.6, 0.8, 0.9)]
    outs = [[logits_with_accuracy(y, m)] * 2 for m in masks]
    cs = [candidate(f"trial {i}", [score_tensor(o[0], y, "classification")] * 2, o, y, i)
          for i, o in enumerate(outs)]
    g = search.group_of(cs[1:])
    assert g.scores == pytest.approx([(cs[1].mean + cs[2].mean) / 2] * 2)
    # the bootstrap of a group against one of its members: only the other member differs
    half = candidate("half", [0.0] * 2, outs[2], y, None)
    se_group = search.paired_se(g, cs[1], "classification")
    se_single = search.paired_se(half, cs[1], "classification")
    assert se_group == pytest.approx(se_single / 2, rel=1e-6) and se_group > 0


def test_a_tie_goes_to_the_prescription_when_it_changes_the_recipe():
    # A 1:20 imbalance whose few rare validation rows both recipes get right: equal scores.
    from doctor.recipe import Recipe

    y = torch.as_tensor(np.r_[np.zeros(57, dtype=int), np.ones(3, dtype=int)])
    outs = [logits_with_accuracy(y, np.ones(60, dtype=bool))] * 3
    user = candidate("recipe as given", [1.0] * 3, outs, y, None)
    user.recipe = Recipe()
    pres = candidate("trial 0", [1.0] * 3, outs, y, 0)
    pres.recipe, pres.prescribed = Recipe(class_weight=True), True
    chosen, record = search.decide(user, [pres], "classification")
    assert chosen is pres and record["accepted"] and "prescription" in record["decision"]
    # the same tie with a trial the diagnosis did not prescribe keeps the recipe as given
    other = candidate("trial 3", [1.0] * 3, outs, y, 3)
    other.recipe = Recipe(class_weight=True)
    assert search.decide(user, [other], "classification")[0] is user
    # and a prescription that is the recipe as given (a healthy diagnosis) changes nothing
    same = candidate("trial 0", [1.0] * 3, outs, y, 0)
    same.recipe, same.prescribed = Recipe(), True
    assert search.decide(user, [same], "classification")[0] is user


def test_cure_acceptance_takes_a_clearly_better_cure_and_the_best_mean_over_seeds():
    rng = np.random.default_rng(1)
    y = torch.as_tensor(rng.integers(0, 2, 80))
    from doctor.metrics import score_tensor

    def runs(share: float, seed: int):
        r = np.random.default_rng(seed)
        return [logits_with_accuracy(y, r.random(80) < share) for _ in range(3)]

    outs_u, outs_lucky, outs_good = runs(0.6, 2), runs(0.75, 3), runs(0.95, 4)
    sc = lambda outs: [score_tensor(o, y, "classification") for o in outs]  # noqa: E731
    user = candidate("recipe as given", sc(outs_u), outs_u, y, None)
    # trial 1 had the higher search value; over three seeds trial 2 is better
    lucky = candidate("trial 1", sc(outs_lucky), outs_lucky, y, 1)
    good = candidate("trial 2", sc(outs_good), outs_good, y, 2)
    chosen, record = search.decide(user, [lucky, good], "classification")
    assert chosen is good
    assert record["accepted"] and record["gain"] > record["margin"] > 0
    assert record["seeds"] == 3 and [c["label"] for c in record["candidates"]] == \
        ["recipe as given", "trial 1", "trial 2"]
    assert len(record["candidates"][2]["val_scores"]) == 3


def test_near_tied_trials_go_to_the_prescription():
    from doctor.metrics import score_tensor

    rng = np.random.default_rng(2)
    y = torch.as_tensor(rng.integers(0, 2, 60))
    outs_u, outs_rx, outs_t = [], [], []
    for _ in range(3):
        mask = rng.random(60) < 0.9
        other = mask.copy()  # per seed, 3 rows better and 2 worse than the prescription
        other[rng.choice(np.flatnonzero(~mask), 3, replace=False)] = True
        other[rng.choice(np.flatnonzero(mask), 2, replace=False)] = False
        outs_rx.append(logits_with_accuracy(y, mask))
        outs_t.append(logits_with_accuracy(y, other))
        outs_u.append(logits_with_accuracy(y, rng.random(60) < 0.5))
    sc = lambda outs: [score_tensor(o, y, "classification") for o in outs]  # noqa: E731
    user = candidate("recipe as given", sc(outs_u), outs_u, y, None)
    other = candidate("trial 7", sc(outs_t), outs_t, y, 7)
    rx = candidate("trial 0", sc(outs_rx), outs_rx, y, 0)
    rx.prescribed = True
    assert other.mean > rx.mean
    chosen, record = search.decide(user, [other, rx], "classification")
    assert chosen is rx  # the prescription, since the other trial is better only within noise
    assert record["among_trials"]["replaced_default"] is False and record["accepted"]


def test_a_broken_recipe_is_replaced_without_a_margin():
    y = torch.as_tensor([0, 1] * 10)
    outs = [logits_with_accuracy(y, np.ones(20, bool))] * 2
    user = candidate("recipe as given", [float("-inf")], [torch.full((20, 2), float("nan"))], y, None)
    cure = candidate("trial 0", [1.0, 1.0], outs, y, 0)
    chosen, record = search.decide(user, [cure], "classification", user_broken=True)
    assert chosen is cure and record["accepted"]


def test_the_prescription_is_judged_even_when_it_ranked_below_the_top_trials():
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 10)}
    for i, v in enumerate([0.9, 0.8, 0.85, 0.7, 0.6]):
        attrs = {"doctor:prescribed": True} if i == 3 else {}
        study.add_trial(optuna.trial.create_trial(params={"x": float(i)}, distributions=dist,
                                                  value=v, user_attrs=attrs))
    assert [t.number for t in search._candidates(study, 3)] == [0, 2, 1, 3]
    # among the top ones already: not added twice
    assert [t.number for t in search._candidates(study, 4)] == [0, 2, 1, 3]
    plain = optuna.create_study(direction="maximize")
    for i, v in enumerate([0.9, 0.8]):
        plain.add_trial(optuna.trial.create_trial(params={"x": float(i)}, distributions=dist, value=v))
    assert [t.number for t in search._candidates(plain, 3)] == [0, 1]


def test_verification_cost_is_bounded():
    # small table: three candidates, three seeds
    assert search.verify_plan(100, [40, 40, 40], 40) == (3, 3)
    # 8,000 rows x 20 epochs: fewer candidates first, then fewer seeds
    assert search.verify_plan(8000, [20, 20, 20], 20) == (1, 2)
    assert search.verify_plan(100_000, [20, 20, 20], 20) == (1, 1)
    assert search.verify_plan(100, [], 40) == (0, 3)


def test_fit_reports_the_seeds_and_scores_of_the_verified_cure(small, tmp_path):
    from doctor.pipeline import run_fit

    case = small[0]
    report = run_fit(case, tmp_path / "out", storage=None, study="v", trials=3)
    best = report["best"]
    assert best["seeds"] and len(best["seeds"]) == len(best["seed_val_scores"])
    ver = best["verification"]
    assert ver["candidates"][0]["label"] == "recipe as given"
    assert ver["cost"]["sample_epochs"] <= ver["cost"]["limit_sample_epochs"]
    assert best["kept_recipe_as_given"] == (best["trial"] is None)
    assert best["kept_recipe_as_given"] == (not ver["accepted"])
    for key in ("params", "metrics", "symptoms"):  # the contract's keys are kept
        assert key in best


def test_a_prescription_that_is_the_recipe_as_given_shares_its_runs(tmp_path):
    """Raw-scale wine with the doctor's default recipe: the only finding is unscaled columns,
    which the default recipe's scaler already treats, so the prescription is the recipe as
    given. The cure check does not train the same networks twice, and the verdict says why the
    recipe is kept rather than calling it a failed remedy."""
    from sklearn import datasets

    from doctor.api import make_case
    from doctor.pipeline import run_fit

    case = make_case(None, datasets.load_wine(as_frame=True).frame, target="target")
    report = run_fit(case, tmp_path / "out", storage=None, study="same", trials=2)
    assert [s["id"] for s in report["symptoms"]] == ["unscaled_features"]
    ver = report["best"]["verification"]
    user, *cands = ver["candidates"]
    rx = next(c for c in cands if c["prescribed"])
    assert rx["same_as_given"] and rx["val_scores"] == user["val_scores"]
    trained = 1 + sum(not c["same_as_given"] for c in cands)
    assert ver["cost"]["runs"] == trained * ver["seeds"]
    assert report["best"]["kept_recipe_as_given"] and ver.get("same_as_given")
    assert "already treats what was found" in report["verdict"]


# ----------------------------------------------------------------------------- the spaces
def test_guided_space_holds_the_prescribed_families_and_the_regularisers():
    from doctor.checks import Symptom
    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe

    recipe = Recipe(optimizer="sgd", lr=1e-6)
    diagnosis = Diagnosis([Symptom("slow_convergence", 0.7, "slow")], recipe, "classification", 2)
    names = {r.name for r in search_spaces.select(diagnosis, "guided")}
    treating = set(search_spaces.remedies_for("slow_convergence"))
    assert treating <= names
    assert {"weight_decay", "dropout", "early_stopping", "lr_schedule"} <= names
    assert "adversarial" not in names  # slow families stay for the symptoms that need them
    remedies = search_spaces.select(diagnosis, "guided")
    rx = search_spaces.prescription(diagnosis, remedies)
    assert rx["optimizer"] == "adam"  # the prescription treats the symptom …
    assert rx["weight_decay_on"] is False and rx["dropout"] == 0.0  # … and keeps the rest as given
    prior = search_spaces.regularised(diagnosis, remedies, rx)
    assert prior["optimizer"] == "adam" and prior["lr"] == rx["lr"]  # the prescription …
    assert prior["weight_decay_on"] is True and prior["weight_decay"] > 0  # … regularised
    assert prior["dropout"] > 0 and prior["early_stopping_on"] is True
    assert search_spaces.build_recipe(optuna.trial.FixedTrial(prior), recipe, diagnosis,
                                      remedies).weight_decay > 0


def test_guided_enqueues_the_prescription_then_its_prior_and_full_enqueues_nothing(small,
                                                                                   monkeypatch):
    case, diagnosis, _, _ = small
    monkeypatch.setattr(search, "ENQUEUE_PRIOR", True)  # off by default (measured), on here
    common = dict(storage=None, trials=2, device="cpu")
    # a clean bill of health: the prescription is the recipe as given, the prior regularises it
    healthy = replace(diagnosis, symptoms=[])
    guided = search.tune(case.table, case.split, case.recipe, healthy, study_name="g",
                         space="guided", **common)
    first, second = guided.study.trials
    assert first.user_attrs.get("doctor:prescribed") is True
    assert first.params == {k: v for k, v in guided.prescription.items()}
    assert second.user_attrs.get("doctor:prior") == "regularised"
    full = search.tune(case.table, case.split, case.recipe, diagnosis, study_name="f",
                       space="full", **common)
    assert full.prescription == {}
    assert "doctor:prescription" not in full.study.user_attrs
    for t in full.study.trials:
        assert "fixed_params" not in t.system_attrs
        assert not t.user_attrs.get("doctor:prescribed") and not t.user_attrs.get("doctor:prior")
    assert set(full.remedies) == {r.name for r in search_spaces.select(diagnosis, "full")}


def test_stalled_counts_the_finished_trials_after_the_best():
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # not finished: not counted
    assert search._stalled(study, 2) and not search._stalled(study, 3)
    study.add_trial(optuna.trial.create_trial(value=0.95))  # a new best: the stall starts over
    assert not search._stalled(study, 1)
    assert not search._stalled(optuna.create_study(), 1)  # nothing scored yet


def test_a_stalled_guided_search_widens_to_every_family_and_replays_its_trials(small, monkeypatch):
    case, diagnosis, _, _ = small
    monkeypatch.setattr(search, "WIDEN", True)
    monkeypatch.setattr(search, "_stalled", lambda study, stall: True)
    res = search.tune(case.table, case.split, case.recipe, diagnosis, storage=None,
                      study_name="widen", trials=4, space="guided", device="cpu")
    guided = {r.name for r in search_spaces.select(diagnosis, "guided")}
    extra = [r for r in search_spaces.select(diagnosis, "full") if r.name not in guided]
    extra_params = {k for r in extra for k in r.keep(case.recipe)}
    assert extra_params
    trials = res.study.trials
    assert trials[0].user_attrs.get("doctor:prescribed") and not trials[0].user_attrs.get("doctor:widened")
    assert not set(trials[0].params) & extra_params  # the prescription runs as queued
    assert not trials[1].user_attrs.get("doctor:widened")  # the first half stays guided
    for t in trials[2:]:
        assert t.user_attrs.get("doctor:widened") is True
        assert set(t.params) & extra_params  # the families the guided space left out, drawn
    assert set(res.remedies) == {r.name for r in search_spaces.select(diagnosis, "full")}
    assert res.study.user_attrs["doctor:remedies"] == res.remedies
    from doctor.pipeline import trials_section

    assert [row.get("widened", False) for row in trials_section(res.study)] == [False, False, True, True]
    remedies = search.result_remedies(res)
    for t in trials:  # a guided trial replays as it ran: the extra families as given
        rebuilt = search_spaces.replay(t.params, case.recipe, diagnosis, remedies)
        assert rebuilt == search_spaces.replay(
            t.params, case.recipe, diagnosis,
            [r for r in remedies if r.name in guided or t.user_attrs.get("doctor:widened")])
    # a widened trial retried after its worker died runs widened again, with the same values
    widened = trials[-1]
    res.study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=widened.params, distributions=widened.distributions,
        user_attrs={"doctor:retry_of": widened.number, "doctor:widened": True}))
    guided_remedies = [r for r in remedies if r.name in guided]
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, guided_remedies,
                                 "cpu", wider=remedies, widen_from=None)
    res.study.optimize(objective, n_trials=1)
    assert res.study.trials[-1].params == widened.params


def test_a_diverging_sgd_recipe_gets_adam_as_the_competing_treatment():
    from doctor.checks import Symptom
    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe

    recipe = Recipe(optimizer="sgd", lr=25.0)
    diverging = Diagnosis([Symptom("loss_divergence", 0.9, "nan loss")], recipe, "classification", 2)
    remedies = search_spaces.select(diverging, "guided")
    rx = search_spaces.prescription(diverging, remedies)
    assert (rx["optimizer"], rx["lr"]) == ("sgd", 0.01)  # the smaller step, the user's optimiser
    (family, rival), = search_spaces.competing(diverging, remedies, rx)
    assert family == "optimizer" and (rival["optimizer"], rival["lr"]) == ("adam", 1e-3)
    assert "momentum" not in rival  # Adam asks for none: the SGD parameter is settled away
    others = {k: v for k, v in rx.items() if k not in ("optimizer", "lr", "momentum")}
    assert {k: rival[k] for k in others} == others  # every other prescribed change stays
    assert search_spaces.build_recipe(optuna.trial.FixedTrial(rival), recipe, diverging,
                                      remedies).optimizer == "adam"
    # nothing competes where the literature names one first choice
    adam = Diagnosis([Symptom("loss_divergence", 0.9, "nan loss")],
                     Recipe(optimizer="adam", lr=0.5), "classification", 2)
    assert search_spaces.competing(adam, remedies, search_spaces.prescription(adam, remedies)) == []
    slow = Diagnosis([Symptom("slow_convergence", 0.7, "slow")], Recipe(optimizer="sgd", lr=1e-6),
                     "classification", 2)
    assert search_spaces.competing(slow, remedies, search_spaces.prescription(slow, remedies)) == []


def test_guided_enqueues_the_competing_treatment_second(small):
    from doctor.checks import Symptom

    case, diagnosis, _, _ = small
    recipe = replace(case.recipe, optimizer="sgd", lr=25.0)
    sick = replace(diagnosis, recipe=recipe,
                   symptoms=[Symptom("loss_divergence", 0.9, "nan loss")])
    res = search.tune(case.table, case.split, recipe, sick, storage=None, study_name="c",
                      trials=3, device="cpu")
    first, second, third = res.study.trials
    assert first.user_attrs.get("doctor:prescribed") is True and first.params["optimizer"] == "sgd"
    assert second.user_attrs.get("doctor:competing") == "optimizer"
    assert (second.params["optimizer"], second.params["lr"]) == ("adam", 1e-3)
    assert not second.user_attrs.get("doctor:prescribed")  # a rival, judged like any trial
    assert not third.user_attrs.get("doctor:competing")  # then the sampler's own draws
    from doctor.pipeline import trials_section

    assert [r.get("competing") for r in trials_section(res.study)] == [None, "optimizer", None]
    one = search.tune(case.table, case.split, recipe, sick, storage=None, study_name="one",
                      trials=1, device="cpu")
    assert [t.state.name for t in one.study.trials] == ["COMPLETE"]  # no rival left waiting


def test_cure_splits_validate_each_row_at_most_once_and_keep_the_test_rows():
    from doctor.data import Split
    from doctor.data import from_frame

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(190, dtype=int), np.ones(10, dtype=int)]  # 10 rows of a rare class
    table = from_frame(pd.DataFrame({"a": rng.normal(size=200), "y": y}), target="y")
    order = rng.permutation(200)
    sp = Split(np.sort(order[:120]), np.sort(order[120:160]), np.sort(order[160:]))
    splits = search.cure_splits(table, sp, [1, 2, 3])
    pool = set(sp.train) | set(sp.val)
    seen: set[int] = set()
    for s in splits:
        assert set(s.train) | set(s.val) == pool and not set(s.train) & set(s.val)
        assert not seen & set(s.val)  # disjoint validation folds
        seen |= set(s.val)
        assert abs(len(s.val) - len(sp.val)) <= 1 and list(s.test) == list(sp.test)
        assert (table.y_codes()[s.val] == 1).sum() >= 1  # stratified: the rare class in each
    # the same seeds give the same folds (every candidate is judged on the same rows)
    again = search.cure_splits(table, sp, [1, 2, 3])
    assert all(list(a.val) == list(b.val) for a, b in zip(splits, again))
    # more seeds than folds wrap around; regression folds are plain k-fold
    assert len(search.cure_splits(table, sp, list(range(7)))) == 7
    reg = from_frame(pd.DataFrame({"a": rng.normal(size=200), "t": rng.normal(size=200)}), target="t",
                     task="regression")
    assert len(search.cure_splits(reg, sp, [1, 2])) == 2 and search.cure_splits(reg, sp, []) == []


def test_the_paired_bootstrap_takes_validation_folds_of_different_sizes():
    # cure_splits' folds may differ by a row; each seed's rows are resampled on their own
    rng = np.random.default_rng(3)
    ys = [torch.as_tensor(rng.integers(0, 2, n)) for n in (57, 56, 56)]
    good = [logits_with_accuracy(y, rng.random(len(y)) < 0.9) for y in ys]
    poor = [logits_with_accuracy(y, rng.random(len(y)) < 0.6) for y in ys]
    a, b = search.Candidate("a", None, {}, 0), search.Candidate("b", None, {}, None)
    for c, outs in ((a, good), (b, poor)):
        c.seeds, c.scores, c.outputs, c.y_val = [1, 2, 3], [0.0] * 3, outs, ys
    se = search.paired_se(a, b, "classification")
    assert 0.0 < se < 0.1


def test_unequal_classes_get_class_weights_as_the_competing_treatment():
    from doctor.checks import DataProfile
    from doctor.checks import Symptom
    from doctor.data import from_frame
    from doctor.data import split as split_rows
    from doctor.diagnosis import Diagnosis
    from doctor.recipe import Recipe

    def diagnosis(counts, symptoms=(), recipe=Recipe()):
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(len(counts)), counts)
        df = pd.DataFrame({"x": rng.normal(size=len(y)), "target": y})
        t = from_frame(df, task="classification")
        return Diagnosis(list(symptoms), recipe, "classification", len(counts),
                         profile=DataProfile(t, split_rows(t)))

    # 2:1 and no imbalance symptom: balanced accuracy is the objective, so the prescription
    # with class weights on is tried right after it
    two_to_one = diagnosis([200, 100])
    remedies = search_spaces.select(two_to_one, "guided")
    rx = search_spaces.prescription(two_to_one, remedies)
    assert rx["class_weight"] is False
    (family, rival), = search_spaces.competing(two_to_one, remedies, rx)
    assert family == "class_weights" and rival == {**rx, "class_weight": True}
    # near-equal classes, an imbalance the prescription already treats, or a recipe that
    # weights its classes already: nothing competes
    assert search_spaces.competing(diagnosis([110, 100]), remedies, rx) == []
    imbalanced = diagnosis([600, 100], [Symptom("class_imbalance", 0.5, "1:6",
                                                {"counts": {"0": 600, "1": 100}})])
    assert search_spaces.competing(
        imbalanced, remedies, search_spaces.prescription(imbalanced, remedies)) == []
    weighted = diagnosis([200, 100], recipe=Recipe(class_weight=True))
    assert search_spaces.competing(
        weighted, remedies, search_spaces.prescription(weighted, remedies)) == []


def test_a_resampler_that_cannot_run_is_noted_on_its_trial_and_in_the_report():
    """ADASYN cannot run where no minority row has a majority neighbour (imbalanced-learn
    refuses the division by zero), so random oversampling runs instead; the trial's parameters
    still say `adasyn`, so the trial says what ran, and the report's trial table carries it."""
    from doctor.api import make_case
    from doctor.diagnosis import diagnose_table
    from doctor.pipeline import trials_section
    from search_spaces.resampling import Resampling

    rng = np.random.default_rng(0)
    y = np.array([0] * 150 + [1] * 30)
    frame = pd.DataFrame(rng.normal(size=(180, 3)) + 20.0 * y[:, None], columns=["a", "b", "c"])
    case = make_case(None, frame.assign(label=y), target="label", epochs=5, batch_size=32)
    diagnosis, _, _ = diagnose_table(case.table, case.split, case.recipe, device="cpu")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"resample": "adasyn"})
    study.enqueue_trial({"resample": "smote"})
    objective = search.Objective(case.table, case.split, case.recipe, diagnosis, [Resampling()], "cpu")
    study.optimize(objective, n_trials=2, catch=(Exception,))
    fell_back, ran = study.trials
    assert fell_back.state == ran.state == TrialState.COMPLETE
    (note,) = fell_back.user_attrs["notes"]
    assert "adasyn" in note and "random oversampling ran instead" in note
    assert "notes" not in ran.user_attrs
    rows = trials_section(study)
    assert rows[0]["notes"] == [note] and "notes" not in rows[1]
