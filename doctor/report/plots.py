"""One function per report figure: each takes the report record and returns a PNG as base64.

A function returns None when its data is absent, so the HTML can be rebuilt from report.json
alone and a diagnose-only record simply has fewer figures. Figures are drawn on a bare
`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global backend switch), small
(6 × 3 in at 80 dpi) so the self-contained HTML stays small. Every label that comes from user
data goes through `_t`, which escapes `$` so matplotlib never parses it as mathtext.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Any
from typing import Callable

SIZE = (6.0, 3.0)
DPI = 80
#: baseline / best colours, used the same way in every figure
COLORS = {"baseline": "#1f77b4", "best": "#ff7f0e"}
MAX_LABEL = 28


def _t(s: Any) -> str:
    """A plain-text label: shortened, with `$` escaped (no mathtext from user data)."""
    s = str(s)
    if len(s) > MAX_LABEL:
        s = s[:MAX_LABEL - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _num(v: Any) -> float:
    """A float, NaN for None, strings or non-finite values (JSON turned NaN into None)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _at(seq: Any, i: int) -> Any:
    return seq[i] if isinstance(seq, (list, tuple)) and i < len(seq) else None


def _figure(ncols: int = 1, width: float | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width or SIZE[0], SIZE[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return fig, axes


def _png(fig) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _traces(report: dict) -> list[tuple[str, dict]]:
    traces = report.get("traces") or {}
    return [(k, traces[k]) for k in ("baseline", "best") if isinstance(traces.get(k), dict)]


def _log_if_wide(ax, values: list[float]) -> None:
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if pos and len(pos) == len([v for v in values if math.isfinite(v)]) and max(pos) / min(pos) > 100:
        ax.set_yscale("log")


# ----------------------------------------------------------------------------- training
def loss_curves(report: dict) -> str | None:
    """Training and validation loss per epoch, baseline and best recipe."""
    fig, (ax,) = _figure()
    drawn, values = False, []
    for name, tr in _traces(report):
        epochs = [e for e in tr.get("epochs") or [] if isinstance(e, dict)]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            pts = [(_num(e.get("epoch", i)), _num(e.get(key))) for i, e in enumerate(epochs)]
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if pts:
                ax.plot(*zip(*pts), style, color=COLORS[name], lw=1.5,
                        label=f"{name} {key.split('_')[0]}")
                values += [y for _, y in pts]
                drawn = True
    if not drawn:
        return None
    _log_if_wide(ax, values)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.set_title("Loss curves (solid: training, dashed: validation)", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def gradient_norms(report: dict) -> str | None:
    """Gradient L2 norm of each weighted layer over training steps (log scale)."""
    runs = [(n, tr) for n, tr in _traces(report) if tr.get("steps")]
    if not runs:
        return None
    fig, axes = _figure(len(runs), width=SIZE[0] if len(runs) == 1 else 8.0)
    drawn = False
    for ax, (name, tr) in zip(axes, runs):
        steps = [s for s in tr["steps"] if isinstance(s, dict)]
        n_layers = max((len(s.get("grad_norm") or []) for s in steps), default=0)
        layers = list(tr.get("layers") or []) + [f"layer {i}" for i in range(n_layers)]
        for j in range(n_layers):
            pts = [(_num(s.get("step")), _num(_at(s.get("grad_norm"), j))) for s in steps]
            pts = [(x, y) for x, y in pts if math.isfinite(x) and y > 0]
            if pts:
                ax.plot(*zip(*pts), lw=1, label=_t(layers[j]))
                drawn = True
        ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=8)
        ax.set_title(f"Gradient norm per layer ({name})", fontsize=9)
        if n_layers <= 8 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    return _png(fig) if drawn else None


def unit_fractions(report: dict) -> str | None:
    """Share of dead (ReLU, solid) and saturated (tanh/sigmoid, dashed) units per layer."""
    runs = []
    for name, tr in _traces(report):
        series: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for rec in tr.get("activations") or []:
            for layer in rec.get("layers") or []:
                for key in ("dead", "saturated"):
                    if key in layer and math.isfinite(_num(layer[key])):
                        series.setdefault((str(layer.get("name")), key), []).append(
                            (_num(rec.get("epoch")), _num(layer[key])))
        if series:
            runs.append((name, series))
    if not runs:
        return None
    fig, axes = _figure(len(runs), width=SIZE[0] if len(runs) == 1 else 8.0)
    for ax, (name, series) in zip(axes, runs):
        for (layer, key), pts in series.items():
            ax.plot(*zip(*pts), "-" if key == "dead" else "--", lw=1.2, label=_t(f"{layer} {key}"))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("fraction of units", fontsize=8)
        ax.set_title(f"Dead / saturated units ({name})", fontsize=9)
        if len(series) <= 8:
            ax.legend(fontsize=6)
    return _png(fig)


# ----------------------------------------------------------------------------- data
def class_counts(report: dict) -> str | None:
    """Rows per class (the 30 most frequent)."""
    counts = (report.get("profile") or {}).get("class_counts") or {}
    items = sorted(((str(k), _num(v)) for k, v in counts.items()), key=lambda kv: -kv[1])[:30]
    items = [(k, v) for k, v in items if math.isfinite(v)]
    if not items:
        return None
    fig, (ax,) = _figure()
    ax.bar(range(len(items)), [v for _, v in items], color=COLORS["baseline"])
    ax.set_xticks(range(len(items)), [_t(k) for k, _ in items], rotation=45 if len(items) > 6 else 0,
                  ha="right" if len(items) > 6 else "center")
    ax.set_ylabel("rows", fontsize=8)
    ax.set_title("Class counts", fontsize=9)
    return _png(fig)


def learning_curve(report: dict) -> str | None:
    """A reference model's held-out score against the number of training rows."""
    prof = report.get("profile") or {}
    pts = [(_num(p.get("rows")), _num(p.get("score"))) for p in prof.get("learning_curve") or []
           if isinstance(p, dict)]
    pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
    if not pts:
        return None
    fig, (ax,) = _figure()
    ax.plot(*zip(*pts), "o-", color=COLORS["baseline"], label="reference model")
    ref = prof.get("reference") or {}
    if math.isfinite(_num(ref.get("score"))):
        ax.axhline(_num(ref["score"]), ls=":", color="gray",
                   label=_t(f"reference score ({ref.get('model') or 'all rows'})"))
    ax.set_xlabel("training rows", fontsize=8)
    ax.set_ylabel("held-out score", fontsize=8)
    ax.set_title("Learning curve", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


# ----------------------------------------------------------------------------- search
def trial_history(report: dict) -> str | None:
    """The objective value of each finished trial and the best so far."""
    direction = str((report.get("study") or {}).get("direction", "maximize")).lower()
    better = min if direction.startswith("min") else max
    pts = [(_num(t.get("number")), _num(t.get("value"))) for t in report.get("trials") or []
           if isinstance(t, dict)]
    pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
    if not pts:
        return None
    fig, (ax,) = _figure()
    ax.plot(*zip(*pts), "o", ms=4, color=COLORS["baseline"], alpha=0.7, label="trial")
    best, run = [], None
    for x, y in pts:
        run = y if run is None else better(run, y)
        best.append((x, run))
    ax.step(*zip(*best), where="post", color=COLORS["best"], lw=1.5, label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial", fontsize=8)
    ax.set_ylabel("objective (validation)", fontsize=8)
    ax.set_title("Trial history", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


# ----------------------------------------------------------------------------- model
def importance(report: dict) -> str | None:
    """Global importance per original column: integrated gradients vs feature ablation."""
    ex = report.get("explanations") or {}
    ig = {str(k): _num(v) for k, v in (ex.get("global_importance") or {}).items()}
    fa = {str(k): _num(v) for k, v in ((ex.get("cross_check") or {}).get("global_importance") or {}).items()}
    cols = [c for c in sorted(ig, key=lambda c: -(ig[c] if math.isfinite(ig[c]) else 0))][:15]
    if not cols:
        return None
    n = len(cols)
    fig, (ax,) = _figure(width=SIZE[0])
    fig.set_figheight(max(2.2, 0.22 * n + 1.0))
    ys = list(range(n))[::-1]
    h = 0.4 if fa else 0.8
    ax.barh([y + (h / 2 if fa else 0) for y in ys], [ig[c] for c in cols], height=h,
            color=COLORS["best"], label="integrated gradients")
    if fa:
        ax.barh([y - h / 2 for y in ys], [fa.get(c, math.nan) for c in cols], height=h,
                color=COLORS["baseline"], label=_t(str((ex.get("cross_check") or {}).get(
                    "method", "cross-check")).replace("_", " ")))
    ax.set_yticks(ys, [_t(c) for c in cols])
    ax.set_xlabel("share of total |attribution|", fontsize=8)
    ax.set_title("Global importance per column", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def robustness(report: dict) -> str | None:
    """Accuracy under FGSM (dashed) and PGD (solid) against the perturbation size eps."""
    rob = report.get("robustness") or {}
    fig, (ax,) = _figure()
    drawn = False
    for name in ("baseline", "best"):
        rows = [r for r in rob.get(name) or [] if isinstance(r, dict)]
        for key, style in (("pgd", "-"), ("fgsm", "--")):
            pts = [(_num(r.get("eps")), _num(r.get(key))) for r in rows]
            pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", ms=3, color=COLORS[name], label=f"{name} {key}")
                drawn = True
    if not drawn:
        return None
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("eps (L-inf, standardised features)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_title("Robustness to adversarial perturbations", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def reliability(report: dict) -> str | None:
    """Reliability diagram: observed accuracy against mean confidence per bin."""
    cal = report.get("calibration") or {}
    fig, (ax,) = _figure(width=4.5)
    drawn = False
    for name in ("baseline", "best"):
        c = cal.get(name) or {}
        pts = [(_num(b.get("confidence")), _num(b.get("accuracy"))) for b in c.get("bins") or []
               if isinstance(b, dict)]
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if pts:
            ece = _num(c.get("ece"))
            label = f"{name} (ECE {ece:.3f})" if math.isfinite(ece) else name
            ax.plot(*zip(*pts), "o-", ms=3, color=COLORS[name], label=label)
            drawn = True
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence", fontsize=8)
    ax.set_ylabel("observed accuracy", fontsize=8)
    ax.set_title("Reliability diagram", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


#: name → (function, alt text); the report renders each figure at most once.
PLOTS: dict[str, tuple[Callable[[dict], str | None], str]] = {
    "loss_curves": (loss_curves, "Loss curves: training and validation loss per epoch, baseline and best"),
    "gradient_norms": (gradient_norms, "Gradient norms per layer over training steps (log scale)"),
    "unit_fractions": (unit_fractions, "Dead and saturated unit fractions per layer over epochs"),
    "class_counts": (class_counts, "Class counts: rows per class"),
    "learning_curve": (learning_curve, "Learning curve: held-out score against training rows"),
    "trial_history": (trial_history, "Trial history: objective value per trial and best so far"),
    "importance": (importance, "Global importance per column: integrated gradients and feature ablation"),
    "robustness": (robustness, "Robustness curve: accuracy against perturbation size, baseline and best"),
    "reliability": (reliability, "Reliability diagram: accuracy against confidence, baseline and best"),
}
