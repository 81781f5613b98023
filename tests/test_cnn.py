"""The Python API on any nn.Module: a small CNN on 8×8 digit images, functional activations,
DataLoaders, and checks that say when they cannot apply (issue #3)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import doctor
from doctor.api import make_case
from doctor.api import to_model
from doctor.checks import Evidence
from doctor.checks.model import AdversarialVulnerability
from doctor.data import from_arrays
from doctor.diagnosis import check_model
from doctor.errors import InputError
from doctor.models import ShapedInput
from doctor.recipe import Recipe

#: The digits 0-3 (720 images): enough rows for every split and for the checks' statistics,
#: few enough classes that the data profile's reference models take seconds on one core.
CLASSES = 4


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits as (N, 1, 8, 8) float images in [0, 1] and their labels."""
    X, y = load_digits(n_class=CLASSES, return_X_y=True)
    return torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y)


class SmallCNN(nn.Module):
    """Two 3×3 convolutions with ReLU modules, a max-pool and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (1, 8, 8), f"the CNN was handed {tuple(x.shape)}"
        x = self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.fc(x.flatten(1))


class FunctionalCNN(nn.Module):
    """The same network calling `F.relu`: no activation modules to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc(x.flatten(1))


def seeded(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls()


@pytest.fixture(scope="module")
def healthy(digits):
    """(the user's module, a copy of it taken before, the diagnosis)."""
    cnn = seeded(SmallCNN)
    before = copy.deepcopy(cnn)
    d = doctor.diagnose(cnn, digits, epochs=8, batch_size=32, device="cpu")
    return cnn, before, d


def test_table_keeps_the_image_shape(digits):
    X, y = digits
    table = from_arrays(X.numpy(), y.numpy())
    assert table.input_shape == (1, 8, 8)
    assert table.X.shape == (len(X), 64)
    assert list(table.X.columns[:2]) == ["x0_0_0", "x0_0_1"] and table.X.columns[-1] == "x0_7_7"
    np.testing.assert_allclose(table.X.iloc[3].to_numpy(), X[3].reshape(-1).numpy(), rtol=1e-6)
    assert table.subset(np.arange(10)).input_shape == (1, 8, 8)
    assert from_arrays(X.reshape(len(X), -1).numpy(), y.numpy()).input_shape is None


def test_conv_layers_get_gradient_norms_and_channel_statistics(healthy):
    _, _, d = healthy
    assert d.trace.layers == ["conv1", "conv2", "fc"]  # named as in the user's module
    grads = np.array([s["grad_norm"] for s in d.trace.steps])
    assert grads.shape[1] == 3 and np.isfinite(grads).all() and (grads[:, :2] > 0).all()
    last = {l["name"]: l for l in d.trace.activations[-1]["layers"]}
    assert set(last) == {"act1", "act2"}
    assert last["act1"]["units"] == 8 and last["act2"]["units"] == 16  # one unit per channel
    assert all(l["kind"] == "relu" and 0 <= l["dead"] <= 1 for l in last.values())
    assert d.baseline["val_score"] > 0.8  # the CNN learned the digits from shaped input


def test_healthy_cnn_has_no_training_breakdown(healthy):
    _, _, d = healthy
    assert not set(d.ids) & {"dying_relu", "loss_divergence", "exploding_gradient",
                             "vanishing_gradient"}
    # ReLU units were read, so dying ReLU was judged; the network has no sigmoid/tanh units
    assert "dying_relu" not in d.not_applicable
    assert "saturated_activations" in d.not_applicable
    assert "tanh" in d.not_applicable["saturated_activations"]


def test_the_users_module_is_left_unmodified(healthy):
    cnn, before, _ = healthy
    assert type(cnn) is SmallCNN and not isinstance(cnn, ShapedInput)
    assert [n for n, _ in cnn.named_modules()] == [n for n, _ in before.named_modules()]
    for (k, a), (_, b) in zip(cnn.state_dict().items(), before.state_dict().items()):
        assert torch.equal(a, b), k
    assert not cnn._forward_hooks and not cnn._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in cnn.modules())
    assert all(p.grad is None for p in cnn.parameters())


def test_dead_relu_cnn_is_diagnosed(digits, healthy):
    cnn = seeded(SmallCNN)
    with torch.no_grad():  # every first-layer unit starts (and stays) below zero on [0, 1] pixels
        cnn.conv1.weight.mul_(0.01)
        cnn.conv1.bias.fill_(-5.0)
    d = doctor.diagnose(cnn, digits, epochs=4, batch_size=32, device="cpu")
    assert d.has("dying_relu")
    assert d.get("dying_relu").evidence["dead_share_per_layer"]["act1"] == 1.0
    assert not healthy[2].has("dying_relu")


def test_huge_learning_rate_cnn_is_diagnosed(digits, healthy):
    d = doctor.diagnose(seeded(SmallCNN), digits, optimizer="sgd", lr=50.0, epochs=4,
                        batch_size=32, device="cpu")
    assert set(d.ids) & {"loss_divergence", "exploding_gradient"}
    assert not set(healthy[2].ids) & {"loss_divergence", "exploding_gradient"}


def test_functional_activation_cnn(digits):
    d = doctor.diagnose(seeded(FunctionalCNN), digits, epochs=3, batch_size=32, device="cpu")
    assert d.trace.layers == ["conv1", "conv2", "fc"]
    last = {l["name"]: l for l in d.trace.activations[-1]["layers"]}
    # no activation modules: the inputs of the hidden weighted layers are read instead; the
    # first weighted layer is a Conv2d whose input is the image, so it is skipped
    assert set(last) == {"input of conv2", "input of fc"}
    assert last["input of conv2"]["kind"] == "relu" and last["input of conv2"]["units"] == 8
    assert "dying_relu" not in d.not_applicable


def test_dataloader_of_image_batches(digits):
    X, y = digits
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=50,
                                         shuffle=True)
    case = make_case(SmallCNN(), loader, epochs=2, device="cpu")
    assert case.table.input_shape == (1, 8, 8) and case.table.n_rows == len(X)
    d = doctor.diagnose(seeded(SmallCNN), loader, epochs=2, batch_size=32, device="cpu")
    assert d.trace.layers == ["conv1", "conv2", "fc"]
    bad = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=50)
    with pytest.raises(InputError, match="DataLoader must yield"):
        doctor.diagnose(SmallCNN(), bad, epochs=1, device="cpu")


def test_model_without_activation_layers_says_so(digits):
    flat_linear = nn.Sequential(nn.Flatten(), nn.Linear(64, CLASSES))  # logistic regression on pixels
    d = doctor.diagnose(flat_linear, digits, epochs=3, batch_size=32, device="cpu")
    assert d.trace.activations[-1]["layers"] == []
    for sid in ("dying_relu", "saturated_activations"):
        assert sid not in d.ids
        assert "no activation layers were found" in d.not_applicable[sid]
    assert "single trainable weighted layer" in d.not_applicable["vanishing_gradient"]
    assert "exploding_gradient" not in d.not_applicable  # one layer's gradient is still read


def test_adversarial_check_needs_input_gradients(digits):
    class Detached(SmallCNN):
        def forward(self, x):
            return super().forward(x.detach())

    X, y = digits
    data = SimpleNamespace(task="classification", X_val=X[:200].reshape(200, -1), y_val=y[:200])
    check = AdversarialVulnerability()
    blocked = Evidence(model=ShapedInput(Detached(), (1, 8, 8)), data=data)
    assert "gradient" in check.not_applicable(blocked)["adversarial_vulnerability"]
    assert check.run(blocked) == []
    assert check.not_applicable(Evidence(model=ShapedInput(SmallCNN(), (1, 8, 8)), data=data)) == {}
    regression = SimpleNamespace(task="regression", X_val=data.X_val, y_val=y[:200].float())
    assert check.not_applicable(Evidence(model=ShapedInput(SmallCNN(), (1, 8, 8)),
                                         data=regression)) == {
        "adversarial_vulnerability": "classification only"}


def test_a_network_built_for_another_shape_is_an_input_error():
    class ThreeChannels(SmallCNN):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))

    recipe = Recipe(model=to_model(ThreeChannels(), (1, 8, 8)))
    with pytest.raises(InputError, match=r"shape \(batch, 1, 8, 8\)"):
        check_model(recipe, 64, 10)
    with pytest.raises(InputError, match="samples of shape"):
        check_model(recipe, 63, 10)  # a remedy that changed the columns cannot reshape


def test_classifier_and_explanations_on_images(digits):
    from doctor.explain import explain

    X, y = digits
    clf = doctor.DoctorClassifier(seeded(SmallCNN), trials=0, epochs=4, batch_size=32,
                                  device="cpu").fit(X, y)
    assert clf.input_shape_ == (1, 8, 8) and isinstance(clf.model_, ShapedInput)
    proba = clf.predict_proba(X[:20])
    assert proba.shape == (20, CLASSES) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert clf.score(X, y) > 0.6
    np.testing.assert_array_equal(clf.predict(X[:20]), clf.predict(X[:20].reshape(20, -1).numpy()))
    with pytest.raises(InputError, match="samples of shape"):
        clf.predict(X[:5].reshape(5, 1, 4, 16))
    Xp = clf.preprocessor_.transform(
        __import__("pandas").DataFrame(X[:40].reshape(40, -1).numpy(), columns=clf.columns_))
    rec = explain(clf.model_, Xp, feature_names=clf.columns_, task="classification",
                  n_classes=CLASSES, permutation=False)
    imp = rec["global_importance"]
    assert len(imp) == 64 and math.isclose(sum(imp.values()), 1.0, rel_tol=1e-6)
    # the corner pixels are blank in every digit: Integrated Gradients gives them nothing
    assert imp["x0_0_0"] < 1e-6 < max(imp.values())


def test_tune_on_images_runs_trials(digits):
    result = doctor.tune(seeded(SmallCNN), digits, epochs=2, batch_size=32, trials=2,
                         space="full", device="cpu")
    states = [t.state.name for t in result.study.trials]
    assert len(states) == 2 and "COMPLETE" in states
    assert result.best_recipe.model is not None


def test_report_lists_the_checks_that_could_not_judge(digits, tmp_path):
    import json

    from doctor.pipeline import run_diagnose

    case = make_case(seeded(SmallCNN), digits, epochs=3, batch_size=32, device="cpu")
    report = run_diagnose(case, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["not_applicable"] == report["not_applicable"]
    assert "saturated_activations" in saved["not_applicable"]
    assert {"data", "symptoms", "baseline"} <= set(saved)  # the contract's keys stay
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="not-judged"' in html
    # robustness (FGSM/PGD) and calibration ran through the reshaping wrapper on flat rows
    assert report["robustness"]["baseline"] and report["calibration"]["baseline"]


def test_module_surgery_remedies_apply_to_the_cnn():
    template = SmallCNN()
    recipe = Recipe(model=to_model(template, (1, 8, 8)), norm="batch", dropout=0.2,
                    activation="tanh", init="kaiming")
    net = recipe.build(64, CLASSES)
    assert isinstance(net, ShapedInput) and net.shape == (1, 8, 8)
    kinds = [type(m) for m in net.net.modules()]
    assert nn.BatchNorm2d in kinds and nn.Dropout in kinds and nn.Tanh in kinds
    assert nn.ReLU not in kinds
    net.train()
    assert net(torch.rand(5, 64)).shape == (5, CLASSES)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Tanh)) for m in template.modules())


def test_gradient_probe_reads_trainable_layers_of_the_users_network():
    from doctor.probes.gradients import weighted_layers

    net = SmallCNN()
    assert [n for n, _ in weighted_layers(ShapedInput(net, (1, 8, 8)))] == ["conv1", "conv2", "fc"]
    net.conv1.requires_grad_(False)  # a frozen layer never has a gradient: not read as vanishing
    assert [n for n, _ in weighted_layers(ShapedInput(net, (1, 8, 8)))] == ["conv2", "fc"]
