"""diagnose(): profile the data, train the recipe as given with probes, judge the evidence."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from doctor.checks import DataProfile
from doctor.checks import Symptom

if TYPE_CHECKING:
    from doctor.recipe import Recipe
    from doctor.trace import Trace


@dataclass
class Diagnosis:
    """What `diagnose()` returns and what guides `tune()`."""

    symptoms: list[Symptom]
    recipe: Recipe
    task: str
    n_classes: int = 0
    profile: DataProfile | None = None
    trace: Trace | None = None
    baseline: dict[str, Any] = field(default_factory=dict)  # metrics of the recipe as given
    #: Symptom ids the doctor could not judge for this model and data, each with the reason
    #: (e.g. no ReLU units → no dying-ReLU verdict). Absent from `symptoms` is then "not
    #: judged", not "healthy". Filled by `not_judged`.
    not_applicable: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.symptoms]

    def has(self, symptom_id: str) -> bool:
        return any(s.id == symptom_id for s in self.symptoms)

    def get(self, symptom_id: str) -> Symptom | None:
        return next((s for s in self.symptoms if s.id == symptom_id), None)


def check_model(recipe: Recipe, n_features: int, n_outputs: int) -> None:
    """Build the recipe's network and run it on two rows, once, before any training.

    A model that cannot be built or run on the data is reported here, clearly, instead of
    failing inside every trial.
    """
    import torch

    from doctor.errors import InputError

    from doctor.models import ShapedInput

    name = recipe.describe_model()
    try:
        net = recipe.build(n_features, n_outputs)
    except InputError:
        raise
    except Exception as e:  # the user's factory may raise anything
        raise InputError(f"--model {name}: building the network raised {type(e).__name__}: {e}; "
                         f"it is called as FUNC(n_features={n_features}, n_outputs={n_outputs})") from None
    if isinstance(net, ShapedInput):
        given = f"inputs of shape (batch, {', '.join(map(str, net.shape))})"
        advice = "build it for inputs of that shape"
    else:
        given = f"this data's {n_features} preprocessed features"
        advice = "build it for the n_features it is given"
    try:
        with torch.no_grad():
            net.eval()
            out = net(torch.zeros(2, n_features))
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"--model {name}: the network cannot run on {given} "
                         f"({type(e).__name__}: {first}); {advice}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_outputs):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"--model {name}: the network returns {shape} for 2 rows; it must return "
                         f"(batch, {n_outputs}) logits")


def diagnose_table(table, split, recipe: Recipe, *, device: str = "cpu", probes=None,
                   checks=None, on_epoch=None):
    """Profile the data, train the recipe as given with probes, and judge the evidence.

    Returns (diagnosis, run, prepared): the trained baseline and its tensors are kept for the
    cure check and the explanations.
    """
    from doctor.checks import Evidence
    from doctor.checks.data import data_checks
    from doctor.checks.data import profile_data
    from doctor.checks.model import model_checks
    from doctor.checks.training import link_causes
    from doctor.checks.training import training_checks
    from doctor.prepare import prepare
    from doctor.probes import default_probes
    from doctor.trainer import Trainer

    profile = profile_data(table, split, seed=recipe.seed, recipe=recipe)
    prepared = prepare(table, split, recipe, device=device)
    check_model(recipe, prepared.n_features, prepared.n_outputs)
    run = Trainer(recipe, probes=default_probes() if probes is None else probes,
                  on_epoch=on_epoch).fit(prepared)
    ev = Evidence(profile=profile, trace=run.trace, model=run.model, data=prepared,
                  val_score=run.val_score)
    stages = [data_checks(), training_checks(), model_checks()] if checks is None else [checks]
    for stage in stages:
        found = [s for c in stage for s in c.run(ev)]
        ev.found = ev.found + found
    symptoms = with_remedies(link_causes(ev.found))
    diagnosis = Diagnosis(symptoms, recipe, table.task,
                          len(table.classes) if table.classes else 0, profile, run.trace,
                          {"val_score": run.val_score, "val_loss": run.val_loss},
                          not_judged(ev, stages))
    return diagnosis, run, prepared


def not_judged(ev, stages) -> dict[str, str]:
    """Why each symptom the stages' checks look for could not be judged, in contract order.

    Two sources: what the probes could not find in this network (`probe_gaps`: no weighted
    layers → no gradient verdicts, no ReLU units → no dying-ReLU verdict, …) and each check's
    own `not_applicable` (regression has no calibration, a model that is not differentiable
    in its inputs cannot be attacked, …). Only ids of checks that ran are listed, and never
    one that was found.
    """
    from doctor.checks import SYMPTOMS

    ran = {i for stage in stages for c in stage for i in c.ids}
    reasons = probe_gaps(ev.trace) if ev.trace is not None else {}
    for stage in stages:
        for c in stage:
            reasons.update(c.not_applicable(ev))
    found = {s.id for s in ev.found}
    return {i: reasons[i] for i in SYMPTOMS if i in reasons and i in ran and i not in found}


def probe_gaps(trace: Trace) -> dict[str, str]:
    """Gradient and activation symptoms the probes' readings of this network cannot judge."""
    out: dict[str, str] = {}
    if not trace.layers:
        why = ("no trainable linear or convolution layer was found in the network, so there are "
               "no per-layer gradient norms to read")
        out["exploding_gradient"] = out["vanishing_gradient"] = why
    elif not trace.steps:
        out["exploding_gradient"] = out["vanishing_gradient"] = "no gradient readings were recorded"
    elif len(trace.layers) == 1:
        out["vanishing_gradient"] = (f"the network has a single trainable weighted layer "
                                     f"('{trace.layers[0]}'); vanishing gradients are judged by "
                                     "comparing the input-side layers with the output layer")
    if not trace.activations:
        out["dying_relu"] = out["saturated_activations"] = "no activation statistics were recorded"
        return out
    layers = trace.activations[-1]["layers"]
    if not layers:
        why = ("no activation layers were found: the network has no activation modules, and no "
               "hidden linear or convolution layer whose inputs could be read instead")
        out["dying_relu"] = out["saturated_activations"] = why
        return out
    names = list(dict.fromkeys(f"{l.get('name')} ({l.get('kind')})" for l in layers))
    read = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    if not any("dead" in l for l in layers):
        out["dying_relu"] = f"no ReLU units were found among the activations read: {read}"
    if not any("saturated" in l for l in layers):
        out["saturated_activations"] = (f"no sigmoid or tanh units were found among the "
                                        f"activations read: {read}")
    return out


def with_remedies(symptoms: list[Symptom]) -> list[Symptom]:
    """Fill each symptom's remedies from the remedies whose `treats` names it."""
    from dataclasses import replace

    from search_spaces import remedies_for

    return [replace(s, remedies=tuple(remedies_for(s.id))) for s in symptoms]


def diagnose(model: Any = None, data: Any = None, *, y: Any = None, target: str | None = None,
             task: str | None = None, optimizer: str = "adam", lr: float = 1e-3,
             epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
             device: str = "auto") -> Diagnosis:
    """Diagnose a network and its data: the Python face of `doctor diagnose`.

    Any `nn.Module` works, whatever its structure: weighted layers and activations are found
    by walking the module and by hooks (activations called as functions are read at the
    inputs of the following weighted layer). Samples with more than one axis, such as images
    `(N, channels, height, width)`, reach the network in that shape; the data checks see one
    column per element.

    Args:
        model: None (the doctor's MLP), a factory `f(n_features, n_outputs) -> nn.Module`, an
            `nn.Module` instance (copied, never modified), or "FILE.py:FUNC". For image input
            a factory gets `n_features` = elements per sample (64 for 1×8×8).
        data: a CSV path, a DataFrame holding the target column, an (X, y) pair, an array or
            tensor X with `y=` (rows × features, or N × C × H × W images), or a DataLoader
            yielding (X, y) batches.
        target, task: as the CLI's --target / --task.
        optimizer, lr, epochs, batch_size: the training recipe, exactly as given.

    Returns:
        The `Diagnosis`: `.symptoms` (contract symptoms), `.baseline`, `.trace` (per-layer
        gradient norms, per-channel unit statistics), `.profile`, and `.not_applicable`: the
        symptom ids that could not be judged for this model, each with the reason.

    Example:
        >>> import doctor, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
        >>> d = doctor.diagnose(None, X, y=y, epochs=5)
        >>> isinstance(d.ids, list)
        True

        A small CNN on (N, 1, 8, 8) images:

        >>> import torch
        >>> from torch import nn
        >>> imgs = torch.rand(120, 1, 8, 8); labels = (imgs.mean((1, 2, 3)) > 0.5).long()
        >>> cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
        >>> d = doctor.diagnose(cnn, (imgs, labels), epochs=2)
        >>> d.trace.layers, "saturated_activations" in d.not_applicable
        (['0', '3'], True)
    """
    from doctor.api import make_case

    case = make_case(model, data, y=y, target=target, task=task, optimizer=optimizer, lr=lr,
                     epochs=epochs, batch_size=batch_size, seed=seed, device=device)
    diagnosis, _, _ = diagnose_table(case.table, case.split, case.recipe, device=case.device)
    return diagnosis
