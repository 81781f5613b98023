"""Model checks on the trained network: adversarial vulnerability and calibration.

They run only when training itself worked: a diverged or non-learning network is fragile and
miscalibrated as a consequence, and the training symptom is the one to treat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from doctor.calibration import expected_calibration_error
from doctor.checks._base import Check
from doctor.checks._base import Evidence
from doctor.checks._base import Symptom
from doctor.robustness import input_gradient_reason
from doctor.robustness import robust_score

#: Training symptoms after which the model checks say nothing (the training is the disease).
BROKEN_TRAINING = ("loss_divergence", "exploding_gradient", "vanishing_gradient", "dying_relu",
                   "underfitting", "slow_convergence")
MAX_ROWS = 1000


def skip_reason(ev: Evidence) -> str | None:
    if ev.model is None or ev.data is None:
        return "no trained model"
    if ev.data.task != "classification":
        return "classification only"
    broken = [s.id for s in ev.found if s.id in BROKEN_TRAINING]
    if broken:
        return f"training is broken ({', '.join(broken)}); treat that first"
    return None


def _linear_reference(ev: Evidence) -> torch.nn.Module:
    """A logistic regression on the same preprocessed rows, as a torch module to attack."""
    from sklearn.linear_model import LogisticRegression

    d = ev.data
    X, y = d.X_train.cpu().numpy(), d.y_train.cpu().numpy()
    lr = LogisticRegression(max_iter=1000).fit(X, y)
    coef, bias = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: two logits, 0 and w·x + b
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.array([0.0, bias[0]])
    lin = torch.nn.Linear(X.shape[1], coef.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return lin.to(d.X_val.device)


@dataclass
class AdversarialVulnerability(Check):
    ids = ("adversarial_vulnerability",)
    #: L-inf radius in standardised units: a twentieth of a training standard deviation per
    #: feature, far below measurement noise for most tabular columns.
    eps: float = 0.05
    #: PGD accuracy this much lower than clean accuracy …
    drop: float = 0.2
    #: … and this much lower than a logistic regression's under the same attack: inputs of
    #: many dimensions make every model fragile (Goodfellow et al. 2015); the symptom is a
    #: network more fragile than a plain linear model on the same features.
    excess: float = 0.1

    def not_applicable(self, ev: Evidence) -> dict[str, str]:
        reason = skip_reason(ev)
        if reason is None:  # the attack needs the loss's gradient with respect to the inputs
            reason = input_gradient_reason(ev.model, ev.data.X_val[:2], ev.data.y_val[:2],
                                           ev.data.task)
        return {} if reason is None else {"adversarial_vulnerability": reason}

    def run(self, ev: Evidence) -> list[Symptom]:
        if self.not_applicable(ev):
            return []
        d = ev.data
        X, y = d.X_val[:MAX_ROWS], d.y_val[:MAX_ROWS]
        clean, robust = robust_score(ev.model, X, y, self.eps, d.task)
        ref_clean, ref_robust = robust_score(_linear_reference(ev), X, y, self.eps, d.task)
        drop, ref_drop = clean - robust, ref_clean - ref_robust
        if drop >= self.drop and drop - ref_drop >= self.excess:
            return [Symptom("adversarial_vulnerability", min(1.0, 0.3 + drop),
                            f"Perturbing each scaled feature by at most {self.eps} drops accuracy "
                            f"from {clean:.3f} to {robust:.3f} (a linear model: {ref_clean:.3f} → "
                            f"{ref_robust:.3f}): small input changes flip many predictions.",
                            {"eps": self.eps, "attack": "PGD-10, L-inf", "clean_accuracy": clean,
                             "robust_accuracy": robust, "linear_clean": ref_clean,
                             "linear_robust": ref_robust, "threshold_drop": self.drop,
                             "threshold_excess": self.excess})]
        return []


@dataclass
class PoorCalibration(Check):
    ids = ("poor_calibration",)
    #: ECE below this is well calibrated for practical purposes (Guo et al. 2017 report
    #: 0.01–0.05 after temperature scaling) …
    ece_min: float = 0.05
    #: … and the measured ECE must also exceed what a perfectly calibrated model would show on
    #: this many validation rows by chance: the 95th percentile of ECE when labels are drawn
    #: from the model's own probabilities.
    quantile: float = 0.95
    min_rows: int = 100
    n_bins: int = 10

    def not_applicable(self, ev: Evidence) -> dict[str, str]:
        reason = skip_reason(ev)
        if reason is None and len(ev.data.y_val) < self.min_rows:
            reason = (f"only {len(ev.data.y_val)} validation rows; calibration is judged on at "
                      f"least {self.min_rows}")
        if reason is None and any(s.id == "label_noise" for s in ev.found):
            # observed frequencies of suspect labels cannot judge the probabilities
            reason = "label noise was found: the observed frequencies of suspect labels cannot " \
                     "judge the probabilities"
        return {} if reason is None else {"poor_calibration": reason}

    def run(self, ev: Evidence) -> list[Symptom]:
        if self.not_applicable(ev):
            return []
        model = ev.model
        was = model.training
        model.eval()
        with torch.no_grad():
            proba = torch.softmax(model(ev.data.X_val), 1).cpu().numpy().astype(np.float64)
        model.train(was)
        y = ev.data.y_val.cpu().numpy()
        if not np.isfinite(proba).all():
            return []
        ece = expected_calibration_error(proba, y, self.n_bins)
        rng = np.random.default_rng(0)
        cum = proba.cumsum(1)
        null = []
        for _ in range(50):
            u = rng.random((len(y), 1))
            y_sim = (u > cum).sum(1).clip(0, proba.shape[1] - 1)
            null.append(expected_calibration_error(proba, y_sim, self.n_bins))
        floor = float(np.quantile(null, self.quantile))
        if ece >= self.ece_min and ece > floor:
            return [Symptom("poor_calibration", min(1.0, 0.3 + 2 * ece),
                            f"Predicted probabilities disagree with observed frequencies: expected "
                            f"calibration error {ece:.3f} on {len(y)} validation rows (a calibrated "
                            f"model would show at most {floor:.3f} by chance).",
                            {"ece": ece, "chance_ece_95": floor, "rows": int(len(y)),
                             "bins": self.n_bins, "threshold": self.ece_min})]
        return []


def model_checks() -> list[Check]:
    return [AdversarialVulnerability(), PoorCalibration()]
