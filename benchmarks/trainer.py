"""Throughput of the doctor's training loop against a bare torch loop over the same tensors.

    python benchmarks/trainer.py [--device cpu|cuda] [--repeats 5]

Prints samples/s and the ratio to the bare loop for: the Trainer without probes, the Trainer
with the default probes (their overhead), and a DataLoader loop for scale. Runs are
interleaved (bare, trainer, probes, … repeated) and the median is taken, so a noisy shared
machine affects all variants alike. Timings are ratios measured side by side in one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from doctor.prepare import Prepared
from doctor.preprocess import Preprocessor
from doctor.probes import default_probes
from doctor.recipe import Recipe
from doctor.trainer import Trainer


def make_data(n: int, d: int, device: str) -> Prepared:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    Xv = torch.randn(n // 5, d, generator=g)
    yv = (Xv[:, 0] + 0.5 * Xv[:, 1] > 0).long()
    return Prepared(Preprocessor(), X.to(device), y.to(device), Xv.to(device), yv.to(device),
                    None, "classification", 2)


def bare_loop(recipe: Recipe, data: Prepared) -> float:
    """The plain loop a careful engineer writes: in-memory tensors, one index op per batch."""
    torch.manual_seed(recipe.seed)
    model = recipe.build(data.n_features, data.n_outputs).to(data.X_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    X, y = data.X_train, data.y_train
    n, bs = len(X), recipe.batch_size
    gen = torch.Generator().manual_seed(recipe.seed)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        perm = torch.randperm(n, generator=gen).to(X.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():  # the same per-epoch validation the trainer does
            model.eval()
            nn.functional.cross_entropy(model(data.X_val), data.y_val).item()
            model.train()
    if X.is_cuda:
        torch.cuda.synchronize()
    return recipe.epochs * n / (time.perf_counter() - start)


def dataloader_loop(recipe: Recipe, data: Prepared) -> float:
    torch.manual_seed(recipe.seed)
    model = recipe.build(data.n_features, data.n_outputs).to(data.X_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.X_train, data.y_train),
                                         batch_size=recipe.batch_size, shuffle=True)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return recipe.epochs * len(data.X_train) / (time.perf_counter() - start)


def trainer_loop(recipe: Recipe, data: Prepared, probes) -> float:
    start = time.perf_counter()
    Trainer(recipe, probes=probes).fit(data)
    elapsed = time.perf_counter() - start
    return recipe.epochs * len(data.X_train) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from doctor.models import MLPSpec

    recipe = Recipe(model=MLPSpec(hidden=(256, 256)), epochs=5, batch_size=256)
    data = make_data(a.rows, 30, a.device)
    variants = {"bare torch loop": lambda: bare_loop(recipe, data),
                "Trainer, no probes": lambda: trainer_loop(recipe, data, []),
                "Trainer, default probes": lambda: trainer_loop(recipe, data, default_probes()),
                "DataLoader loop": lambda: dataloader_loop(recipe, data)}
    for f in variants.values():  # warm-up
        f()
    results: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.repeats):
        for k, f in variants.items():
            results[k].append(f())
    base = statistics.median(results["bare torch loop"])
    print(f"MLP 30→256→256→2, batch 256, {a.rows} rows, {recipe.epochs} epochs, device {a.device}, "
          f"median of {a.repeats} interleaved runs")
    print(f"{'loop':28s} {'samples/s':>12s} {'time vs bare':>13s}")
    for k, v in results.items():
        med = statistics.median(v)
        print(f"{k:28s} {med:12,.0f} {base / med:12.3f}×")


if __name__ == "__main__":
    main()
