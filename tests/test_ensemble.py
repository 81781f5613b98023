"""The shipped model on small tables: several seeds of the chosen recipe, averaged."""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from torch import nn

from doctor.models import SeedEnsemble
from helpers import blobs_frame


def test_ensemble_averages_probabilities_and_regression_outputs():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    x = torch.randn(5, 3)
    out = SeedEnsemble([a, b], "classification")(x)
    mean = (a(x).softmax(-1) + b(x).softmax(-1)) / 2
    assert torch.allclose(out.softmax(-1), mean, atol=1e-6)  # read as logits: the mean probability
    assert torch.allclose(out.exp().sum(-1), torch.ones(5), atol=1e-6)
    r1, r2 = nn.Linear(3, 1), nn.Linear(3, 1)
    assert torch.allclose(SeedEnsemble([r1, r2], "regression")(x), (r1(x) + r2(x)) / 2)


@pytest.fixture(scope="module")
def trained():
    from doctor.api import make_case
    from doctor.prepare import prepare
    from doctor.trainer import Trainer

    case = make_case(None, blobs_frame(200), target="label", epochs=8, batch_size=32)
    prepared = prepare(case.table, case.split, case.recipe)
    return case, prepared, Trainer(case.recipe).fit(prepared)


def test_members_are_other_seeds_of_the_recipe_and_the_average_is_scored(trained):
    from doctor.refit import SEED_STRIDE
    from doctor.refit import add_members

    case, prepared, first = trained
    run, info = add_members(case.recipe, first, prepared, 3)
    assert info == {"members": 3, "seeds": [0, SEED_STRIDE, 2 * SEED_STRIDE]}
    assert isinstance(run.model, SeedEnsemble) and run.model.members[0] is first.model
    w = [m[0].weight for m in run.model.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])  # really other seeds
    assert run.trace is first.trace  # the probes read one network
    assert 0.0 <= run.val_score <= 1.0  # the average is scored on the validation rows
    assert (run.val_score, run.val_loss) != (first.val_score, first.val_loss)
    same, one = add_members(case.recipe, first, prepared, 1)
    assert same is first and one == {"members": 1, "seeds": [0]}


def test_a_member_that_diverges_is_left_out(trained, monkeypatch):
    from doctor.refit import SEED_STRIDE
    from doctor.refit import add_members
    from doctor.trainer import Trainer

    case, prepared, first = trained
    fit = Trainer.fit

    def broken_second(self, data):
        run = fit(self, data)
        if self.recipe.seed == SEED_STRIDE:
            run.trace.diverged = {"reason": "loss became NaN"}
        return run

    monkeypatch.setattr(Trainer, "fit", broken_second)
    run, info = add_members(case.recipe, first, prepared, 3)
    assert info["members"] == 2 and info["seeds"] == [0, 2 * SEED_STRIDE]


def test_ensemble_size_follows_the_table_size():
    from doctor.refit import ENSEMBLE_MAX_ROWS
    from doctor.refit import ENSEMBLE_MEMBERS
    from doctor.refit import ensemble_size

    assert ensemble_size(300) == ENSEMBLE_MEMBERS > 1
    assert ensemble_size(ENSEMBLE_MAX_ROWS + 1) == 1


def test_an_ensemble_bundle_loads_with_weights_only_and_predicts_the_same(trained, tmp_path):
    from doctor.bundle import Bundle
    from doctor.refit import add_members

    case, prepared, first = trained
    run, _ = add_members(case.recipe, first, prepared, 3)
    t = case.table
    b = Bundle(run.model, case.recipe, prepared.pre, t.task, t.target, t.classes,
               prepared.y_mean, prepared.y_std)
    b.save(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["members"] == 3
    frame = blobs_frame(200).drop(columns=["label"])
    again = Bundle.load(tmp_path / "b")
    assert isinstance(again.model, SeedEnsemble) and len(again.model.members) == 3
    np.testing.assert_allclose(again.predict_frame(frame)[f"proba_{t.classes[0]}"],
                               b.predict_frame(frame)[f"proba_{t.classes[0]}"], atol=1e-6)
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["members"] = 0
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    from doctor.errors import InputError

    with pytest.raises(InputError, match="members"):
        Bundle.load(tmp_path / "b")


def test_fit_ships_the_ensemble_it_scored(tmp_path):
    from doctor.api import make_case
    from doctor.bundle import Bundle
    from doctor.pipeline import run_fit

    case = make_case(None, blobs_frame(160), target="label", epochs=6, batch_size=32)
    report = run_fit(case, tmp_path / "o", storage=None, study="e", trials=2)
    assert report["best"]["ensemble"]["members"] == 3
    assert report["best"]["refit"]["members"] == 3
    bundle = Bundle.load(tmp_path / "o")
    assert isinstance(bundle.model, SeedEnsemble) and len(bundle.model.members) == 3


def test_a_large_table_ships_one_network(tmp_path, monkeypatch):
    import doctor.refit
    from doctor.api import make_case
    from doctor.bundle import Bundle
    from doctor.pipeline import run_fit

    monkeypatch.setattr(doctor.refit, "ENSEMBLE_MAX_ROWS", 50)  # 96 training rows: "large"
    case = make_case(None, blobs_frame(160), target="label", epochs=6, batch_size=32)
    report = run_fit(case, tmp_path / "o", storage=None, study="e", trials=2)
    assert report["best"]["ensemble"]["members"] == 1
    assert not isinstance(Bundle.load(tmp_path / "o").model, SeedEnsemble)
