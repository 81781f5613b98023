"""FGSM and PGD attacks on the scaled features, and robust accuracy.

Perturbations are L-infinity balls of radius `eps` in the standardised feature space, so
`eps = 0.1` means a tenth of a training standard deviation per feature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    out = model(x)
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.reshape(-1), y)


def input_gradient_reason(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          task: str) -> str | None:
    """Why gradient attacks cannot run on `model`, or None when they can.

    FGSM and PGD follow the loss's gradient with respect to the inputs; a model that detaches
    its inputs, or uses them as indices (an embedding lookup), has none. Tried on the given rows, in eval mode; the
    parameters' gradients are not touched (only the input's gradient is asked for).
    """
    was = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        g, = torch.autograd.grad(_loss(model, x, y, task), x, allow_unused=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"the model's loss has no gradient with respect to its inputs ({first})"
    finally:
        model.train(was)
    if g is None:
        return ("the model's loss has no gradient with respect to its inputs (they do not reach "
                "it differentiably)")
    return None


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, task: str, *,
            method: str = "pgd", steps: int = 10, alpha: float | None = None) -> torch.Tensor:
    """Adversarial inputs: FGSM (one signed-gradient step) or PGD (`steps` projected steps).

    The model's train/eval mode and its parameter gradients are left as they were.
    """
    grads_before = [p.grad for p in model.parameters()]
    x0 = x.detach()
    if method == "fgsm":
        steps, alpha = 1, eps
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    adv = x0.clone()
    if method == "pgd":  # random start inside the ball (Madry et al. 2018)
        adv = adv + torch.empty_like(adv).uniform_(-eps, eps)
    for _ in range(steps):
        adv.requires_grad_(True)
        g, = torch.autograd.grad(_loss(model, adv, y, task), adv)
        adv = (adv.detach() + alpha * g.sign()).clamp(x0 - eps, x0 + eps)
    for p, g in zip(model.parameters(), grads_before):
        p.grad = g
    return adv.detach()


def robust_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, task: str, *,
                 method: str = "pgd") -> tuple[float, float]:
    """(clean accuracy, accuracy under attack) for classification; flip-free share for both."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean_pred = model(x).argmax(1) if task == "classification" else model(x).reshape(-1)
        adv = perturb(model, x, y, eps, task, method=method)
        with torch.no_grad():
            adv_out = model(adv)
        if task == "classification":
            return float((clean_pred == y).float().mean()), float((adv_out.argmax(1) == y).float().mean())
        return 0.0, 0.0
    finally:
        model.train(was)


#: The radii of the robustness curve (L-inf, standardised units); 0.05 is the radius the
#: adversarial_vulnerability check attacks at.
CURVE_EPS = (0.0, 0.01, 0.03, 0.05, 0.1, 0.2)


def curve_eps(*extra: float | None) -> list[float]:
    """The curve's radii plus any extra ones (e.g. --robust-eps), sorted, without repeats."""
    vals = {round(float(e), 6) for e in CURVE_EPS}
    vals |= {round(float(e), 6) for e in extra if e is not None and e > 0}
    return sorted(vals)


def robust_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
                 eps_values=CURVE_EPS) -> list[dict]:
    """Accuracy under FGSM and PGD at a range of epsilons (classification only).

    Each point is ``{"eps", "fgsm", "pgd"}``; at eps 0 both are the clean accuracy. Seeded, so
    the same model and rows give the same curve (PGD starts at a random point of the ball).
    """
    if task != "classification" or len(x) == 0:
        return []
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's random streams stay as they were
        torch.manual_seed(0)
        return _curve(model, x, y, task, eps_values)


def _curve(model, x, y, task, eps_values) -> list[dict]:
    out = []
    for eps in eps_values:
        if eps == 0:
            clean, _ = robust_score(model, x, y, 1e-12, task, method="fgsm")
            out.append({"eps": 0.0, "fgsm": clean, "pgd": clean})
            continue
        _, f = robust_score(model, x, y, eps, task, method="fgsm")
        _, p = robust_score(model, x, y, eps, task, method="pgd")
        out.append({"eps": eps, "fgsm": f, "pgd": p})
    return out
