"""`Recipe`: the training exactly as the user gave it, plus the seams that remedies fill.

A recipe is a frozen dataclass changed only through `dataclasses.replace`; its defaults mean
"as given" (no schedule, no clipping, no resampling …), so the diagnosis trains the user's
recipe unchanged and every remedy is a visible difference from it.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import Callable

import numpy as np
from torch import nn

from doctor.errors import InputError
from doctor.models import MLPSpec
from doctor.models import build_mlp

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@dataclass(frozen=True)
class UserModel:
    """A reference to the user's factory, `FILE.py:FUNC`; loading it runs the user's code."""

    ref: str

    @property
    def path(self) -> Path:
        return Path(self.ref.rsplit(":", 1)[0])

    @property
    def func(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    def factory(self) -> Callable[[int, int], nn.Module]:
        return load_factory(self.ref)




@dataclass(frozen=True)
class Recipe:
    """How to train: model, optimiser, budget as given, and the remedy seams."""

    model: Any = field(default_factory=MLPSpec)
    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 40
    batch_size: int = 64
    seed: int = 0
    # --- seams that remedies fill; the defaults leave the user's recipe untouched
    momentum: float = 0.0
    weight_decay: float = 0.0
    l1: float = 0.0  # λ of an L1 penalty λ·Σ|w| on the weights, added to the loss (search_spaces/l1.py)
    schedule: str | None = None  # "step" | "cosine" | "onecycle" | "plateau" | "warmup"
    grad_clip: float | None = None
    init: str | None = None  # "xavier" | "kaiming" | "orthogonal" | "lecun"
    activation: str | None = None  # swap every activation module of the network
    norm: str | None = None  # "batch" | "layer": inserted after each hidden linear layer
    dropout: float = 0.0
    loss: str = "default"  # "default" | "focal" | "smoothing" | "gce" | "logit_adjusted"
    class_weight: bool = False
    resample: str | None = None  # an imbalanced-learn sampler name (search_spaces/resampling.py)
    noisy_rows: str | None = None  # "drop" | "downweight" the rows flagged as label noise
    input_noise: float = 0.0
    mixup: float = 0.0
    adversarial: str | None = None  # "fgsm" | "pgd"
    adv_eps: float = 0.0
    adv_ratio: float = 0.5
    early_stopping: int | None = None  # patience in epochs, restoring the best weights
    restarts: int = 1  # seeds warmed up briefly; the best on validation trains on (trainer.py)
    scaler: str = "standard"
    imputer: str = "median"
    clip: float | None = None
    drop_duplicates: bool = False  # drop exact copies (features and target) among training rows
    drop_constant: bool = False  # drop columns holding one value on the training rows
    drop_columns: tuple[str, ...] = ()  # columns left out entirely (e.g. flagged as leaking)
    select: str | None = None  # reduce a wide table: "mutual_info" | "l1" | "pca" (doctor.preprocess)
    select_rows_per_feature: float = 5.0  # keep n_train / this many features

    def __post_init__(self) -> None:
        # JSON gives lists back; a tuple keeps the recipe hashable and equal to the original
        object.__setattr__(self, "drop_columns", tuple(str(c) for c in self.drop_columns))
        if int(self.restarts) < 1:
            raise InputError(f"restarts must be at least 1, got {self.restarts}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if int(self.epochs) < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")

    def build(self, n_features: int, n_outputs: int) -> nn.Module:
        """Build the network, then apply the recipe's module surgery (see `doctor.surgery`)."""
        from doctor import surgery

        if isinstance(self.model, MLPSpec):
            net = build_mlp(self.model, n_features, n_outputs)
        else:
            factory = self.model.factory() if isinstance(self.model, UserModel) else self.model
            net = factory(n_features, n_outputs)
            if not isinstance(net, nn.Module):
                raise InputError(f"{_model_name(self.model)} returned {type(net).__name__}, not a "
                                 "torch.nn.Module; return the network")
        return surgery.apply_recipe(net, self)

    def describe_model(self) -> str:
        return _model_name(self.model)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view: the model becomes its spec or its `FILE.py:FUNC` reference."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        if isinstance(self.model, MLPSpec):
            out["model"] = {"mlp": {**asdict(self.model), "hidden": list(self.model.hidden)}}
        elif isinstance(self.model, UserModel):
            out["model"] = {"user": self.model.ref}
        else:
            out["model"] = {"callable": _model_name(self.model)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        d = dict(d)
        m = d.pop("model")
        if "mlp" in m:
            model: Any = MLPSpec(**{**m["mlp"], "hidden": tuple(m["mlp"]["hidden"])})
        elif "user" in m:
            model = UserModel(m["user"])
        else:
            raise InputError(f"the recipe's model {m['callable']!r} was a Python callable; it "
                             "cannot be rebuilt from a file")
        known = {f.name for f in fields(cls)}
        return cls(model=model, **{k: v for k, v in d.items() if k in known})


def _model_name(model: Any) -> str:
    if isinstance(model, MLPSpec):
        return f"doctor MLP {list(model.hidden)} {model.activation}"
    if isinstance(model, UserModel):
        return model.ref
    return getattr(model, "__qualname__", type(model).__name__)


def default_budget(n_train: int) -> tuple[int, int]:
    """The doctor's epochs and batch size when the user gives none.

    About 50,000 samples seen in total (a second or two on one CPU core for a small MLP), at
    least 20 epochs so that loss-trajectory checks have a curve to read, at most 100.
    """
    batch = 64 if n_train < 5000 else 256
    epochs = int(np.clip(50_000 / max(n_train, 1), 20, 100))
    return epochs, batch


def load_factory(ref: str) -> Callable[[int, int], nn.Module]:
    """Import `FUNC` from `FILE.py` (`--model FILE.py:FUNC`). This runs the user's code.

    Every way it can fail is an `InputError` naming the file: no such file, not a .py file, the
    import raising (syntax errors and `sys.exit` included), no such function.
    """
    if not isinstance(ref, str) or ":" not in ref or not ref.rsplit(":", 1)[1].strip():
        raise InputError(f"--model must look like FILE.py:FUNC, got '{ref}'")
    file, func = ref.rsplit(":", 1)
    func = func.strip()
    path = Path(file)
    if path.is_dir():
        raise InputError(f"--model: '{file}' is a folder; pass the path of your Python file")
    if not path.is_file():
        raise InputError(f"--model: no such file '{file}'; pass the path of your Python file")
    if path.suffix != ".py":
        raise InputError(f"--model: '{file}' is not a Python file (.py); pass FILE.py:FUNC")
    if not func.isidentifier():
        raise InputError(f"--model: '{func}' is not a Python function name; pass FILE.py:FUNC")
    name = f"doctor_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"--model: cannot import '{file}'; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # the user's code may raise anything, or exit
        sys.modules.pop(name, None)
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise InputError(f"--model: importing '{file}' raised {what}; fix the file") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        defined = sorted(k for k, v in vars(module).items()
                         if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == name)
        hint = f" (it defines {', '.join(defined[:5])})" if defined else ""
        raise InputError(f"--model: '{file}' has no function '{func}'{hint}; define "
                         f"{func}(n_features, n_outputs) returning a torch.nn.Module")
    return fn
