"""Training checks: gradient, activation, loss-trajectory and fit symptoms, read from a `Trace`.

Design, after AUTOTRAINER (ICSE 2021): gradient symptoms are reported only when training
progress is poor (the score stays clearly below what a classical model reaches on the same
rows), which is what keeps their false alarms low; an anomaly in a run that learns fine is
not a disease. Every threshold is a field with its rationale; `docs/thresholds.md` has more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from doctor.checks._base import Check
from doctor.checks._base import Evidence
from doctor.checks._base import Symptom


# ----------------------------------------------------------------------------- helpers
def progress(ev: Evidence) -> dict:
    """How well the run learned, against the data's reference score (or chance)."""
    trace = ev.trace
    final_val = ev.val_score if ev.val_score is not None else (
        trace.epochs[-1]["val_score"] if trace.epochs else float("nan"))
    last = trace.info.get("restored_epoch", -1)  # early stopping restores the best epoch
    train = trace.epochs[last]["train_score"] if trace.epochs else float("nan")
    ref = ev.profile.reference if ev.profile is not None else None
    chance = 0.0
    if ev.data is not None and ev.data.task == "classification":
        chance = 1.0 / ev.data.n_outputs
    if not math.isfinite(final_val):
        final_val = chance
    if not math.isfinite(train):
        train = chance
    if ref is None or not math.isfinite(ref):
        ref = 1.0 if ev.data is not None and ev.data.task == "classification" else 1.0
    span = max(ref - chance, 1e-6)
    return {"val_score": final_val, "train_score": train, "reference": ref, "chance": chance,
            # share of the attainable gain over chance that the run reached (1 = as good as the reference)
            "attained": (final_val - chance) / span,
            "train_attained": (train - chance) / span}


def poor(ev: Evidence, gap: float = 0.1) -> bool:
    """The AUTOTRAINER gate: the validation score stays clearly below the reference.

    `attained < 1 - gap` means the run reached less than 90% of the gain over chance that a
    tuned classical model reaches on the same rows.
    """
    return ev.trace.diverged is not None or progress(ev)["attained"] < 1 - gap


def early_grad_readings(trace, share: float = 0.2) -> np.ndarray:
    """Per-layer gradient/weight norm ratios over the first `share` of training steps.

    Gradients shrink naturally as a healthy run converges, so vanishing is judged early.
    """
    if not trace.steps:
        return np.zeros((0, 0))
    last = trace.steps[-1]["step"]
    rows = [s for s in trace.steps if s["step"] <= max(share * last, trace.steps[0]["step"])]
    g = np.array([s["grad_norm"] for s in rows], dtype=float)
    w = np.array([s["weight_norm"] for s in rows], dtype=float)
    return g / np.maximum(w, 1e-12)


# ----------------------------------------------------------------------------- checks
@dataclass
class LossDivergence(Check):
    ids = ("loss_divergence",)
    #: The loss ended this many times above its minimum and above where it started: it grew
    #: by two orders of magnitude instead of falling ("orders of magnitude" in the contract).
    growth: float = 100.0
    #: … or it spiked to this many times its starting value at some point, even if it came
    #: back: three orders of magnitude is a blow-up, not noise (the weights it left behind are
    #: what the rest of training had to recover from).
    spike: float = 1e3

    def run(self, ev: Evidence) -> list[Symptom]:
        t = ev.trace
        if t.diverged is not None:
            return [Symptom("loss_divergence", 1.0,
                            f"Training blew up: the {t.diverged['reason']} (epoch "
                            f"{t.diverged['epoch'] + 1}), so the model learned nothing usable.",
                            dict(t.diverged))]
        losses = [e["train_loss"] for e in t.epochs]
        readings = [x for x in [s["loss"] for s in t.steps] + losses if math.isfinite(x)]
        start = t.steps[0]["loss"] if t.steps else (losses[0] if losses else math.nan)
        if readings and math.isfinite(start) and start > 0 and max(readings) >= self.spike * start:
            peak = max(readings)
            return [Symptom("loss_divergence", 0.8,
                            f"The loss blew up to {peak:.3g}, {peak / start:.0f}× its starting "
                            f"value{f', and ended at {losses[-1]:.3g}' if losses else ''}: the "
                            "steps are far too large.",
                            {"start_loss": start, "peak_loss": peak, "final_train_loss":
                             losses[-1] if losses else None, "threshold_spike": self.spike})]
        if len(losses) >= 2:
            lo = min(losses)
            if lo > 0 and losses[-1] > self.growth * lo and losses[-1] > losses[0]:
                return [Symptom("loss_divergence", 0.9,
                                f"The training loss grew from a minimum of {lo:.3g} to "
                                f"{losses[-1]:.3g}: it diverged instead of converging.",
                                {"min_train_loss": lo, "final_train_loss": losses[-1],
                                 "growth": losses[-1] / lo, "threshold": self.growth})]
        return []


@dataclass
class ExplodingGradient(Check):
    ids = ("exploding_gradient",)
    #: A layer's gradient norm above its own weight norm times this means one plain SGD step
    #: at lr 1e-3 would move the weights by more than their size (DeepDiagnosis' update
    #: ratio bound of 1e-1 at lr ~1e-3 gives the same order).
    ratio: float = 100.0

    def run(self, ev: Evidence) -> list[Symptom]:
        t = ev.trace
        if not t.steps:
            return []
        g = np.array([s["grad_norm"] for s in t.steps], dtype=float)
        w = np.array([s["weight_norm"] for s in t.steps], dtype=float)
        nonfinite = int((~np.isfinite(g)).any(axis=1).sum())
        rel = np.where(np.isfinite(g), g, np.inf) / np.maximum(w, 1e-12)
        peak = float(np.nanmax(np.where(np.isfinite(g), g, np.nan))) if np.isfinite(g).any() else math.inf
        # Growth from the first readings is not used: a run escaping vanishing gradients
        # grows its gradients by orders of magnitude, and that is recovery, not explosion.
        evidence = {"nonfinite_readings": nonfinite, "max_grad_norm": peak,
                    "max_grad_to_weight": float(np.nanmax(rel)) if rel.size else None,
                    "threshold_ratio": self.ratio}
        big = nonfinite > 0 or np.nanmax(rel) > self.ratio
        if big and poor(ev):
            layer = int(np.nanargmax(np.nanmax(np.where(np.isfinite(rel), rel, 1e300), axis=0)))
            evidence["layer"] = t.layers[layer] if layer < len(t.layers) else layer
            return [Symptom("exploding_gradient", 0.85,
                            "Gradient norms became very large"
                            + (" or non-finite" if nonfinite else "")
                            + f" (largest {peak:.3g}, {evidence['max_grad_to_weight']:.3g}× the "
                            "weight norm), so updates overshoot.", evidence)]
        return []


@dataclass
class VanishingGradient(Check):
    ids = ("vanishing_gradient",)
    #: Median gradient/weight norm ratio below this: even at lr 1 a step changes the weights by
    #: less than a millionth of their size — nothing learns whatever the learning rate.
    floor: float = 1e-6
    #: The input-side layer's ratio this far below the output layer's (AUTOTRAINER's
    #: first/last-layer gradient ratio beta_1 = 1e-3): early layers barely learn.
    depth_ratio: float = 1e-3

    def run(self, ev: Evidence) -> list[Symptom]:
        r = early_grad_readings(ev.trace)
        if r.size == 0 or r.shape[1] < 2 or not np.isfinite(r).all() or not poor(ev):
            return []
        per_layer = np.median(r, axis=0)
        med = float(np.median(per_layer))
        depth = float(per_layer[0] / max(per_layer[-1], 1e-30))
        if med < self.floor or depth < self.depth_ratio:
            return [Symptom("vanishing_gradient", 0.85,
                            f"Gradients are vanishing: relative to its weights, the first layer's "
                            f"gradient is {per_layer[0]:.2g} (output layer {per_layer[-1]:.2g}), so "
                            "the early layers barely learn.",
                            {"grad_to_weight_per_layer": [float(x) for x in per_layer],
                             "layers": ev.trace.layers, "median": med,
                             "first_over_last": depth, "threshold_floor": self.floor,
                             "threshold_depth_ratio": self.depth_ratio})]
        return []


def _last_activations(trace) -> list[dict]:
    return trace.activations[-1]["layers"] if trace.activations else []


@dataclass
class DyingReLU(Check):
    ids = ("dying_relu",)
    #: A unit is dead when it outputs 0 for every row of the probe batch; a layer with more
    #: than half of its units dead has lost most of its capacity (SageMaker Debugger's rule).
    layer_share: float = 0.5

    def run(self, ev: Evidence) -> list[Symptom]:
        layers = [l for l in _last_activations(ev.trace) if "dead" in l]
        bad = [l for l in layers if l["dead"] >= self.layer_share]
        if not bad:
            return []
        worst = max(bad, key=lambda l: l["dead"])
        return [Symptom("dying_relu", min(1.0, 0.5 + worst["dead"] / 2),
                        f"{worst['dead']:.0%} of the ReLU units in layer '{worst['name']}' output "
                        "zero for every input: they are dead and no longer learn.",
                        {"dead_share_per_layer": {l["name"]: l["dead"] for l in layers},
                         "threshold": self.layer_share})]


@dataclass
class SaturatedActivations(Check):
    ids = ("saturated_activations",)
    #: More than half of a tanh/sigmoid layer's outputs at the flat ends (|tanh| > 0.99,
    #: sigmoid within 0.01 of 0 or 1), where the derivative is under 2% of its peak
    #: (DeepDiagnosis and SageMaker Debugger flag 50% of units).
    layer_share: float = 0.5

    def run(self, ev: Evidence) -> list[Symptom]:
        layers = [l for l in _last_activations(ev.trace) if "saturated" in l]
        bad = [l for l in layers if l["saturated"] >= self.layer_share]
        if not bad:
            return []
        worst = max(bad, key=lambda l: l["saturated"])
        return [Symptom("saturated_activations", 0.4 + worst["saturated"] / 2,
                        f"{worst['saturated']:.0%} of the outputs of {worst['kind']} layer "
                        f"'{worst['name']}' sit at the flat ends, where gradients almost vanish.",
                        {"saturated_share_per_layer": {l["name"]: l["saturated"] for l in layers},
                         "threshold": self.layer_share})]


def score_swings(curve: list[float] | np.ndarray, amplitude: float) -> int:
    """AUTOTRAINER's oscillation count: the curve's local maxima and local minima, paired in
    order; the pairs at least `amplitude` apart."""
    a = np.asarray(curve, dtype=float)
    if len(a) < 3 or not np.isfinite(a).all():
        return 0
    inner = range(1, len(a) - 1)
    peaks = [a[i] for i in inner if a[i] >= a[i - 1] and a[i] >= a[i + 1]]
    dips = [a[i] for i in inner if a[i] <= a[i - 1] and a[i] <= a[i + 1]]
    return int(sum(1 for hi, lo in zip(peaks, dips) if hi - lo >= amplitude))


@dataclass
class LossOscillation(Check):
    """The loss or the training score bounces instead of settling.

    Two readings of one trace, either suffices (each gated by an unsettled or poor run):
    epochs whose loss *rises* clearly, and AUTOTRAINER's OL rule on the training-score curve
    (ICSE 2021, parameters zeta = 0.03, eta = 0.2 as published). The score reading catches
    runs whose epoch-mean loss is smoothed by averaging over many small batches while the
    model the epoch ends with jumps around (RMSprop 0.03 on diabetes: 7 loss rises in 29
    epochs, 10 score swings in 30).
    """

    ids = ("loss_oscillation",)
    #: An epoch whose training loss is this much (relative) above the previous one is a swing …
    rise: float = 0.1
    #: … that also exceeds this share of the starting loss (ignores noise near zero loss) …
    floor: float = 0.01
    #: … and a run with swings in at least this share of its epochs oscillates
    #: (AUTOTRAINER: swings in 20% of the checked epochs).
    share: float = 0.25
    #: Score reading: a local max/min pair of the training score (balanced accuracy or R² on
    #: the probe rows) at least this far apart is one oscillation (AUTOTRAINER zeta = 0.03:
    #: three points of accuracy, above the epoch-to-epoch jitter of a converging run) …
    score_amplitude: float = 0.03
    #: … and at least this many per epoch trained oscillates (AUTOTRAINER eta = 0.2).
    score_share: float = 0.2
    min_epochs: int = 5

    def run(self, ev: Evidence) -> list[Symptom]:
        loss = np.array(ev.trace.column("train_loss"), dtype=float)
        if len(loss) < self.min_epochs or not np.isfinite(loss).all() or ev.trace.diverged:
            return []
        d = np.diff(loss)
        swings = (d > self.rise * loss[:-1]) & (d > self.floor * loss[0])
        frac = float(swings.mean())
        score = np.array(ev.trace.column("train_score"), dtype=float)
        bounces = score_swings(score, self.score_amplitude)
        need = math.ceil(self.score_share * len(score))
        unsettled = loss[-1] > 1.5 * loss.min() or poor(ev)
        by_loss, by_score = frac >= self.share, len(score) >= self.min_epochs and bounces >= need
        if (by_loss or by_score) and unsettled:
            what = []
            if by_loss:
                what.append(f"the training loss swings up in {int(swings.sum())} of {len(d)} "
                            "epochs")
            if by_score:
                what.append(f"the training score rises and falls by ≥{self.score_amplitude:g} "
                            f"{bounces} times in {len(score)} epochs")
            text = " and ".join(what)
            sev = 0.5 + max(frac, min(1.0, bounces / max(len(score), 1))) / 2
            return [Symptom("loss_oscillation", min(1.0, sev),
                            f"{text[0].upper() + text[1:]} instead of settling: the steps are too "
                            "large or too noisy.",
                            {"swing_epochs": int(swings.sum()), "epochs": len(loss),
                             "swing_share": frac, "final_over_min_loss": float(loss[-1] / loss.min()),
                             "threshold_share": self.share, "threshold_rise": self.rise,
                             "score_swings": bounces, "score_swings_needed": need,
                             "threshold_score_amplitude": self.score_amplitude,
                             "threshold_score_share": self.score_share})]
        return []


@dataclass
class SlowConvergence(Check):
    ids = ("slow_convergence",)
    #: Less than this relative fall of the training loss over the whole budget …
    min_drop: float = 0.2
    #: … or a loss still falling by more than this (relative) over the last third of the
    #: epochs while the score is poor: the budget ran out long before convergence.
    still_falling: float = 0.05

    def run(self, ev: Evidence) -> list[Symptom]:
        loss = np.array(ev.trace.column("train_loss"), dtype=float)
        if len(loss) < 2 or not np.isfinite(loss).all() or ev.trace.diverged or not poor(ev):
            return []
        if "stopped_early_at" in ev.trace.info:  # validation stopped improving: the budget
            return []                            # was not what held the run back
        drop = float((loss[0] - loss[-1]) / max(abs(loss[0]), 1e-12))
        k = max(1, len(loss) // 3)
        tail = float((loss[-k - 1] - loss[-1]) / max(abs(loss[-k - 1]), 1e-12))
        if drop < self.min_drop or tail > self.still_falling:
            p = progress(ev)
            return [Symptom("slow_convergence", 0.7,
                            f"The loss fell only {drop:.0%} over {len(loss)} epochs and the model "
                            f"reaches {p['val_score']:.3f} against {p['reference']:.3f} for a simple "
                            "reference: it learns far too slowly for the budget.",
                            {"loss_drop": drop, "last_third_drop": tail, "epochs": len(loss),
                             "val_score": p["val_score"], "reference": p["reference"],
                             "threshold_drop": self.min_drop, "threshold_tail": self.still_falling})]
        return []


@dataclass
class Overfitting(Check):
    ids = ("overfitting",)
    #: The validation loss ends this much above its minimum while the training loss kept
    #: falling (the classic U-curve; AUTOTRAINER's "turn bad" rule, made relative).
    val_rise: float = 0.25
    #: … or the training score is this far above the validation score at the end
    #: (AUTOTRAINER's gap rule uses 0.1 on accuracy; balanced accuracy on small validation
    #: sets is noisier, hence a wider margin).
    gap: float = 0.15
    min_epochs: int = 5

    def run(self, ev: Evidence) -> list[Symptom]:
        t = ev.trace
        if len(t.epochs) < self.min_epochs or t.diverged:
            return []
        vl = np.array(t.column("val_loss"), dtype=float)
        tl = np.array(t.column("train_loss"), dtype=float)
        if not (np.isfinite(vl).all() and np.isfinite(tl).all()):
            return []
        best = int(vl.argmin())
        rise = float(vl[-1] / max(vl[best], 1e-12) - 1)
        u_curve = rise > self.val_rise and tl[-1] < 0.9 * tl[best] and len(vl) - 1 - best >= 3
        if "restored_epoch" in t.info:  # early stopping kept the weights of the best epoch
            u_curve = False
        p = progress(ev)
        gap = p["train_score"] - p["val_score"]
        if u_curve or gap > self.gap:
            return [Symptom("overfitting", min(1.0, 0.4 + max(rise / 2, gap)),
                            f"The model memorises the training rows: validation loss rose {rise:.0%} "
                            f"above its minimum (epoch {best + 1}) while training loss kept falling; "
                            f"train score {p['train_score']:.3f} vs validation {p['val_score']:.3f}.",
                            {"val_loss_min_epoch": best + 1, "val_loss_rise": rise,
                             "train_score": p["train_score"], "val_score": p["val_score"],
                             "score_gap": gap, "threshold_rise": self.val_rise,
                             "threshold_gap": self.gap})]
        return []


@dataclass
class Underfitting(Check):
    ids = ("underfitting",)
    #: Validation below 85% of the reference's gain over chance, and the training score no
    #: better: the model cannot even fit the rows it sees.
    attained: float = 0.85

    def run(self, ev: Evidence) -> list[Symptom]:
        if not ev.trace.epochs:
            return []
        p = progress(ev)
        if p["attained"] < self.attained and p["train_attained"] < self.attained + 0.05:
            return [Symptom("underfitting", min(1.0, 0.4 + (1 - p["attained"]) / 2),
                            f"Both training ({p['train_score']:.3f}) and validation "
                            f"({p['val_score']:.3f}) scores stay far below what the data allows "
                            f"({p['reference']:.3f} for a simple reference model).",
                            {**p, "threshold_attained": self.attained})]
        return []


def training_checks() -> list[Check]:
    return [VanishingGradient(), ExplodingGradient(), DyingReLU(), SaturatedActivations(),
            LossDivergence(), LossOscillation(), SlowConvergence(), Overfitting(), Underfitting()]


#: Root cause → symptoms it explains. When both are found, the consequence names its cause
#: and the report lists the cause first (a far too large learning rate shows as divergence,
#: exploding gradients and dead units at once).
ROOT_CAUSES: dict[str, tuple[str, ...]] = {
    "loss_divergence": ("exploding_gradient", "dying_relu", "loss_oscillation", "underfitting",
                        "slow_convergence", "poor_calibration"),
    "exploding_gradient": ("dying_relu", "loss_oscillation", "underfitting"),
    "vanishing_gradient": ("slow_convergence", "underfitting"),
    "saturated_activations": ("vanishing_gradient", "slow_convergence", "underfitting"),
    "dying_relu": ("underfitting", "slow_convergence"),
    "slow_convergence": ("underfitting",),
    "label_noise": ("overfitting",),
    "high_dimensionality": ("overfitting",),
}


def link_causes(symptoms: list[Symptom]) -> list[Symptom]:
    """Name each symptom's root cause and order causes before their consequences."""
    from dataclasses import replace

    found = {s.id for s in symptoms}
    cause_of: dict[str, str] = {}
    for cause, effects in ROOT_CAUSES.items():
        if cause in found:
            for e in effects:
                if e in found and e not in cause_of and e != cause:
                    cause_of[e] = cause
    # resolve chains to the deepest cause
    for e in list(cause_of):
        c, seen = cause_of[e], {e}
        while c in cause_of and c not in seen:
            seen.add(c)
            c = cause_of[c]
        cause_of[e] = c
    linked = [replace(s, caused_by=cause_of.get(s.id)) for s in symptoms]
    return sorted(linked, key=lambda s: (s.caused_by is not None, -s.severity))
