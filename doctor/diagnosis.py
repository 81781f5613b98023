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

    name = recipe.describe_model()
    try:
        net = recipe.build(n_features, n_outputs)
    except InputError:
        raise
    except Exception as e:  # the user's factory may raise anything
        raise InputError(f"--model {name}: building the network raised {type(e).__name__}: {e}; "
                         f"it is called as FUNC(n_features={n_features}, n_outputs={n_outputs})") from None
    try:
        with torch.no_grad():
            net.eval()
            out = net(torch.zeros(2, n_features))
    except Exception as e:
        raise InputError(f"--model {name}: the network cannot run on this data's {n_features} "
                         f"preprocessed features ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "build it for the n_features it is given") from None
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

    profile = profile_data(table, split, seed=recipe.seed)
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
                          {"val_score": run.val_score, "val_loss": run.val_loss})
    return diagnosis, run, prepared


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

    Args:
        model: None (the doctor's MLP), a factory `f(n_features, n_outputs) -> nn.Module`, an
            `nn.Module` instance (copied, never modified), or "FILE.py:FUNC".
        data: a CSV path, a DataFrame holding the target column, an (X, y) pair, an array or
            tensor X with `y=`, or a DataLoader yielding (X, y) batches.
        target, task: as the CLI's --target / --task.
        optimizer, lr, epochs, batch_size: the training recipe, exactly as given.

    Returns:
        The `Diagnosis`: `.symptoms` (contract symptoms), `.baseline`, `.trace`, `.profile`.

    Example:
        >>> import doctor, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
        >>> d = doctor.diagnose(None, X, y=y, epochs=5)
        >>> isinstance(d.ids, list)
        True
    """
    from doctor.api import make_case

    case = make_case(model, data, y=y, target=target, task=task, optimizer=optimizer, lr=lr,
                     epochs=epochs, batch_size=batch_size, seed=seed, device=device)
    diagnosis, _, _ = diagnose_table(case.table, case.split, case.recipe, device=case.device)
    return diagnosis
