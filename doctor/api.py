"""The public edge: turn what a Python user or the CLI passes into one `Case`."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from doctor import data as data_mod
from doctor.errors import InputError
from doctor.models import MLPSpec
from doctor.models import ShapedInput
from doctor.prepare import resolve_device
from doctor.recipe import Recipe
from doctor.recipe import UserModel
from doctor.recipe import default_budget


@dataclass
class Case:
    """One problem: the table, its split, the recipe as given and the device."""

    table: data_mod.Table
    split: data_mod.Split
    recipe: Recipe
    device: str


def configure_torch() -> None:
    """One thread per process, for torch and for the OpenMP/BLAS pools scikit-learn uses
    (their spin-waiting threads ran 15-80× slower whenever another job shared the cores),
    and flush subnormal floats (Adam states of dead units decay into them, 3× slower)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    threadpool_limits(limits=1)


def to_table(data: Any, *, y: Any = None, target: str | None = None, task: str | None = None) -> data_mod.Table:
    """One `Table` from a CSV path, a DataFrame, (X, y), X with `y=`, or a DataLoader.

    Samples with more than one axis (images as (channels, height, width)) stay whole in the
    table's `input_shape`; the table itself holds one column per element.
    """
    if isinstance(data, (str, Path)):
        return data_mod.read_csv(data, target=target, task=task)
    if isinstance(data, pd.DataFrame) and y is None:
        return data_mod.from_frame(data, target=target, task=task)
    if isinstance(data, tuple) and len(data) == 2 and y is None:
        data, y = data
    if isinstance(data, torch.utils.data.DataLoader):
        data, y = _from_loader(data)
    if y is None:
        raise InputError("pass the labels: data=(X, y), y=..., or a DataFrame with a target column")
    return data_mod.from_arrays(data, y, task=task)


def _from_loader(loader: torch.utils.data.DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """All (X, y) batches of a DataLoader, concatenated; each sample keeps its shape."""
    xs, ys = [], []
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise InputError(f"the DataLoader must yield (X, y) batches, got "
                             f"{type(batch).__name__}; wrap your data in a TensorDataset(X, y)")
        xs.append(_numpy(batch[0]))
        ys.append(_numpy(batch[1]).reshape(-1))
    if not xs:
        raise InputError("the DataLoader yielded no batches; pass a DataLoader over your data")
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise InputError(f"the DataLoader's batches have different sample shapes {sorted(shapes)}; "
                         "every sample must have the same shape")
    return np.concatenate(xs), np.concatenate(ys)


def _numpy(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def to_model(model: Any, input_shape: tuple[int, ...] | None = None) -> Any:
    """The recipe's model from what the user passed.

    With an `input_shape` (image-shaped samples), a user's network — module, factory or
    `FILE.py:FUNC` — is built through `_ShapedFactory`, so it receives `(batch, *input_shape)`
    tensors; the doctor's own MLP (model None) reads the flat rows as they are.
    """
    if model is None:
        return MLPSpec()
    if isinstance(model, MLPSpec):
        return model
    if isinstance(model, str):
        model = UserModel(str(Path(model.rsplit(":", 1)[0]).resolve()) + ":" + model.rsplit(":", 1)[1]
                          if ":" in model else model)
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model)
        model = _ModuleCopy(template)
    elif not isinstance(model, UserModel) and not callable(model):
        raise InputError(f"model must be None, an nn.Module, a factory or 'FILE.py:FUNC', got "
                         f"{type(model).__name__}")
    if input_shape:
        return _ShapedFactory(model, tuple(input_shape))
    return model


class _ModuleCopy:
    """A factory that hands out fresh copies of a user's module instance (never the original)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.__qualname__ = type(module).__name__

    def __call__(self, n_features: int, n_outputs: int) -> nn.Module:
        return copy.deepcopy(self.module)


class _ShapedFactory:
    """Builds the user's network and wraps it in `ShapedInput`, for samples of `shape`.

    The factory is still called as `f(n_features, n_outputs)`, with `n_features` the number of
    elements of one sample (64 for 1×8×8 images); the network it returns gets its inputs as
    `(batch, *shape)`.
    """

    def __init__(self, model: Any, shape: tuple[int, ...]) -> None:
        self.model = model
        self.shape = shape
        self.__qualname__ = model.ref if isinstance(model, UserModel) else \
            getattr(model, "__qualname__", type(model).__name__)

    def __call__(self, n_features: int, n_outputs: int) -> Any:
        size = int(np.prod(self.shape))
        if n_features != size:
            raise InputError(f"the data has {n_features} features per row after preprocessing, "
                             f"but samples of shape {self.shape} have {size}; a remedy that "
                             "changes the columns cannot apply to shaped input")
        factory = self.model.factory() if isinstance(self.model, UserModel) else self.model
        net = factory(n_features, n_outputs)
        return ShapedInput(net, self.shape) if isinstance(net, nn.Module) else net


def make_case(model: Any, data: Any, *, y: Any = None, target: str | None = None,
              task: str | None = None, optimizer: str = "adam", lr: float = 1e-3,
              epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
              device: str = "auto") -> Case:
    configure_torch()
    table = to_table(data, y=y, target=target, task=task)
    split = data_mod.split(table, seed=seed)
    d_epochs, d_batch = default_budget(len(split.train))
    # With no --epochs the budget is the doctor's choice, and so is stopping early: patience
    # 10 epochs with the best weights restored. A budget the user gives is trained as given.
    recipe = Recipe(model=to_model(model, table.input_shape), optimizer=optimizer, lr=float(lr),
                    epochs=int(d_epochs if epochs is None else epochs),
                    batch_size=int(d_batch if batch_size is None else batch_size),
                    seed=int(seed), early_stopping=None if epochs is not None else 10)
    dev = check_device(device)
    return Case(table, split, recipe, dev)


def check_device(device: str) -> str:
    if device not in ("auto", "cpu", "mps") and not device.startswith("cuda"):
        raise InputError(f"--device must be auto, cpu, cuda, cuda:N or mps, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is available here; use --device cpu or auto")
    if device.startswith("cuda:"):
        try:
            idx = int(device.split(":", 1)[1])
        except ValueError:
            raise InputError(f"--device {device}: expected cuda:N with a number N") from None
        if idx >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are only {torch.cuda.device_count()} GPU(s)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: Apple's MPS is not available here; use --device cpu")
    return str(resolve_device(device))


def with_seed(recipe: Recipe, seed: int) -> Recipe:
    return replace(recipe, seed=seed)


def predict_arrays(model: nn.Module, X: np.ndarray, task: str, *, y_mean: float = 0.0,
                   y_std: float = 1.0, temperature: float = 1.0, device: str = "cpu"):
    """(predictions as class indices or values, probabilities or None) for preprocessed rows."""
    model.eval()
    with torch.no_grad():
        xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        out = torch.cat([model(xt[i:i + 8192]) for i in range(0, len(xt), 8192)]) if len(xt) else \
            model(xt)
    out = out.float().cpu()
    if task == "classification":
        proba = torch.softmax(torch.nan_to_num(out) / temperature, 1).numpy()
        return proba.argmax(1), proba
    return out.reshape(-1).numpy() * y_std + y_mean, None


def logits_of(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The network's raw outputs for preprocessed rows (eval mode, no gradients, batched)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model(X[i:i + 8192]) for i in range(0, len(X), 8192)] or [model(X)]
        return torch.cat(parts).reshape(len(X), -1).float()
    finally:
        model.train(was)
