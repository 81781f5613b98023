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
    """Global importance per original column: integrated gradients and its cross-checks."""
    ex = report.get("explanations") or {}
    ig = {str(k): _num(v) for k, v in (ex.get("global_importance") or {}).items()}
    cols = [c for c in sorted(ig, key=lambda c: -(ig[c] if math.isfinite(ig[c]) else 0))][:15]
    if not cols:
        return None
    series = [("integrated gradients", ig, COLORS["best"])]
    for key, default, color in (("cross_check", "feature ablation", COLORS["baseline"]),
                                ("permutation", "permutation importance", "#2ca02c")):
        part = ex.get(key) or {}
        vals = {str(k): _num(v) for k, v in (part.get("global_importance") or {}).items()}
        if vals:
            series.append((str(part.get("method") or default).replace("_", " "), vals, color))
    n, k = len(cols), len(series)
    fig, (ax,) = _figure(width=SIZE[0])
    fig.set_figheight(max(2.2, (0.14 + 0.1 * k) * n + 1.0))
    ys = list(range(n))[::-1]
    h = 0.8 / k
    for i, (label, vals, color) in enumerate(series):
        off = (k - 1) / 2 * h - i * h
        ax.barh([y + off for y in ys], [vals.get(c, math.nan) for c in cols], height=h,
                color=color, label=_t(label))
    ax.set_yticks(ys, [_t(c) for c in cols])
    ax.set_xlabel("share of total importance", fontsize=8)
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
    for key, label, style in (("robust_eps", "--robust-eps", "--"), ("check_eps", "check's radius", ":")):
        x = _num(rob.get(key))
        if math.isfinite(x) and x > 0:
            ax.axvline(x, ls=style, color="#d1242f" if key == "robust_eps" else "gray", lw=1,
                       label=label)
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
    ts = cal.get("temperature_scaling") or {}
    runs = [("baseline", cal.get("baseline") or {}, "o-", COLORS["baseline"])]
    if ts.get("applied") and ts.get("bins_before"):
        runs.append(("best before temperature scaling",
                     {"bins": ts["bins_before"], "ece": ts.get("test_ece_before")}, "o--", "#9467bd"))
        runs.append((f"best, T = {_num(ts.get('temperature')):.2f}", cal.get("best") or {}, "o-",
                     COLORS["best"]))
    else:
        runs.append(("best", cal.get("best") or {}, "o-", COLORS["best"]))
    for name, c, style, color in runs:
        pts = [(_num(b.get("confidence")), _num(b.get("accuracy"))) for b in c.get("bins") or []
               if isinstance(b, dict)]
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if pts:
            ece = _num(c.get("ece"))
            label = f"{name} (ECE {ece:.3f})" if math.isfinite(ece) else name
            ax.plot(*zip(*pts), style, ms=3, color=color, label=label)
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


# ----------------------------------------------------------------------------- data profile
def _column_stats(report: dict) -> dict[str, dict]:
    stats = (report.get("profile") or {}).get("column_stats") or {}
    return {str(k): v for k, v in stats.items() if isinstance(v, dict)}


def missing_share(report: dict) -> str | None:
    """Share of empty cells per column (only when some column has any)."""
    stats = _column_stats(report)
    items = [(c, _num(v.get("missing_share"))) for c, v in stats.items()]
    items = [(c, v) for c, v in items if math.isfinite(v) and v > 0]
    if not items:
        return None
    return _bars(sorted(items, key=lambda kv: -kv[1])[:25], "Missing cells per column",
                 "share of rows missing", limits=(0, 1))


def column_scales(report: dict) -> str | None:
    """Spread (standard deviation) of each numeric column, log scale: unscaled features stand out."""
    stats = _column_stats(report)
    items = [(c, _num(v.get("std"))) for c, v in stats.items() if v.get("kind") == "numeric"]
    items = [(c, v) for c, v in items if math.isfinite(v) and v > 0]
    if len(items) < 2:
        return None
    items = sorted(items, key=lambda kv: -kv[1])[:25]
    return _bars(items, "Spread of each numeric column (raw data)", "standard deviation (log scale)",
                 log=True)


# ----------------------------------------------------------------------------- symptoms
def _bars(items: list[tuple[Any, float]], title: str, xlabel: str, *, highlight: Any = (),
          threshold: float | None = None, threshold_label: str = "threshold", log: bool = False,
          limits: tuple[float, float] | None = None) -> str | None:
    """Horizontal bars, one per (label, value); highlighted labels in red."""
    items = [(str(k), _num(v)) for k, v in items]
    items = [(k, v) for k, v in items if math.isfinite(v) and (v > 0 or not log)]
    if not items:
        return None
    n = len(items)
    fig, (ax,) = _figure()
    fig.set_figheight(max(2.0, 0.24 * n + 1.1))
    ys = list(range(n))[::-1]
    hi = {str(h) for h in highlight}
    ax.barh(ys, [v for _, v in items], height=0.7,
            color=["#d1242f" if k in hi else COLORS["baseline"] for k, _ in items])
    ax.set_yticks(ys, [_t(k) for k, _ in items])
    if threshold is not None and math.isfinite(_num(threshold)):
        ax.axvline(_num(threshold), ls="--", color="gray", lw=1, label=_t(threshold_label))
        ax.legend(fontsize=7)
    if log:
        ax.set_xscale("log")
    if limits:
        ax.set_xlim(*limits)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title.replace("\\", "\\\\").replace("$", r"\$"), fontsize=9)
    return _png(fig)


def _epoch_series(report: dict, key: str, run: str = "baseline") -> list[tuple[float, float]]:
    tr = (report.get("traces") or {}).get(run) or {}
    epochs = [e for e in tr.get("epochs") or [] if isinstance(e, dict)]
    pts = [(_num(e.get("epoch", i)) + 1, _num(e.get(key))) for i, e in enumerate(epochs)]
    return [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]


def _series_plot(series: list[tuple[str, list, str, str]], title: str, ylabel: str, *,
                 hline: tuple[float, str] | None = None, vline: tuple[float, str] | None = None,
                 marks: list[tuple[float, float]] | None = None, log: bool | None = None,
                 xlabel: str = "epoch") -> str | None:
    series = [(label, pts, style, color) for label, pts, style, color in series if pts]
    if not series:
        return None
    fig, (ax,) = _figure()
    values = []
    for label, pts, style, color in series:
        ax.plot(*zip(*pts), style, color=color, lw=1.5, ms=3, label=label)
        values += [y for _, y in pts]
    if hline is not None and math.isfinite(_num(hline[0])):
        ax.axhline(_num(hline[0]), ls=":", color="gray", label=_t(hline[1]))
    if vline is not None and math.isfinite(_num(vline[0])):
        ax.axvline(_num(vline[0]), ls="--", color="#d1242f", lw=1, label=_t(vline[1]))
    if marks:
        ax.plot(*zip(*marks), "v", color="#d1242f", ms=6, label="loss went up")
    if log is None:
        _log_if_wide(ax, values)
    elif log:
        ax.set_yscale("log")
    if xlabel in ("epoch", "step", "training rows"):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _losses(report: dict) -> list[tuple[str, list, str, str]]:
    return [("training loss", _epoch_series(report, "train_loss"), "-", COLORS["baseline"]),
            ("validation loss", _epoch_series(report, "val_loss"), "--", COLORS["best"])]


def _sym_loss_divergence(sym: dict, report: dict) -> str | None:
    tr = (report.get("traces") or {}).get("baseline") or {}
    div = tr.get("diverged") if isinstance(tr.get("diverged"), dict) else {}
    at = _num(div.get("epoch")) + 1 if div else math.nan
    return _series_plot(_losses(report), "Loss of your recipe: it diverges", "loss (log scale)",
                        vline=(at, "diverged") if math.isfinite(at) else None,
                        log=all(y > 0 for _, pts, _, _ in _losses(report) for _, y in pts))


def _sym_loss_oscillation(sym: dict, report: dict) -> str | None:
    pts = _epoch_series(report, "train_loss")
    ups = [(x, y) for (px, py), (x, y) in zip(pts, pts[1:]) if y > py]
    return _series_plot([("training loss", pts, "o-", COLORS["baseline"])],
                        "Training loss per epoch: it swings instead of settling", "loss",
                        marks=ups or None)


def _sym_slow_convergence(sym: dict, report: dict) -> str | None:
    pts = _epoch_series(report, "train_loss")
    if not pts or not pts[0][1]:
        return None
    rel = [(x, y / pts[0][1]) for x, y in pts]
    return _series_plot([("training loss / first epoch's", rel, "o-", COLORS["baseline"])],
                        "Training loss relative to the first epoch: it falls too slowly",
                        "share of the first epoch's loss", hline=(1.0, "no progress"), log=False)


def _sym_overfitting(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    return _series_plot(_losses(report), "Training vs validation loss: validation rises", "loss",
                        vline=(_num(ev.get("val_loss_min_epoch")), "lowest validation loss"))


def _sym_underfitting(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    series = [("training score", _epoch_series(report, "train_score"), "-", COLORS["baseline"]),
              ("validation score", _epoch_series(report, "val_score"), "--", COLORS["best"])]
    return _series_plot(series, "Scores per epoch against what the data allows", "score",
                        hline=(_num(ev.get("reference")), "simple reference model"), log=False)


def _grad_per_layer(report: dict) -> list[tuple[str, float]]:
    tr = (report.get("traces") or {}).get("baseline") or {}
    steps = [s for s in tr.get("steps") or [] if isinstance(s, dict)]
    n = max((len(s.get("grad_norm") or []) for s in steps), default=0)
    layers = list(tr.get("layers") or []) + [f"layer {i}" for i in range(n)]
    out = []
    for j in range(n):
        vals = sorted(v for v in (_num(_at(s.get("grad_norm"), j)) for s in steps) if math.isfinite(v))
        if vals:
            out.append((f"{j}: {layers[j]}", vals[len(vals) // 2]))
    return out


def _sym_vanishing_gradient(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    ratios = ev.get("grad_to_weight_per_layer")
    if isinstance(ratios, list) and ratios:
        names = list(ev.get("layers") or []) + [str(i) for i in range(len(ratios))]
        return _bars([(f"{j}: {names[j]}", r) for j, r in enumerate(ratios)],
                     "Gradient / weight norm per layer (input layer first)",
                     "median ratio (log scale)", log=True,
                     threshold=ev.get("threshold_floor"), threshold_label="floor")
    return _bars(_grad_per_layer(report), "Median gradient norm per layer (input layer first)",
                 "gradient norm (log scale)", log=True)


def _sym_exploding_gradient(sym: dict, report: dict) -> str | None:
    tr = (report.get("traces") or {}).get("baseline") or {}
    pts = []
    for s in tr.get("steps") or []:
        if isinstance(s, dict):
            g = [_num(v) for v in s.get("grad_norm") or []]
            g = [v for v in g if math.isfinite(v)]
            if g:
                pts.append((_num(s.get("step")), max(g)))
    pts = [(x, y) for x, y in pts if math.isfinite(x) and y > 0]
    if pts:
        return _series_plot([("largest layer gradient norm", pts, "-", COLORS["baseline"])],
                            "Gradient norm over training steps", "gradient norm (log scale)",
                            log=True, xlabel="step")
    return _bars(_grad_per_layer(report), "Median gradient norm per layer",
                 "gradient norm (log scale)", log=True)


def _sym_layer_shares(key: str, title: str):
    def draw(sym: dict, report: dict) -> str | None:
        shares = (sym.get("evidence") or {}).get(key) or {}
        if not isinstance(shares, dict):
            return None
        return _bars(list(shares.items()), title, "share of units", limits=(0, 1))
    return draw


def _sym_column_shares(title: str, xlabel: str):
    def draw(sym: dict, report: dict) -> str | None:
        cols = (sym.get("evidence") or {}).get("columns") or {}
        if not isinstance(cols, dict):
            return None
        items = [(c, (v or {}).get("share") if isinstance(v, dict) else v) for c, v in cols.items()]
        return _bars(sorted(items, key=lambda kv: -_num(kv[1]) if math.isfinite(_num(kv[1])) else 0)[:25],
                     title, xlabel)
    return draw


def _sym_unscaled_features(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    spreads = ev.get("spreads") if isinstance(ev.get("spreads"), dict) else {}
    items = [(c, _num(v)) for c, v in spreads.items()]  # the check's own measure of spread
    items = [(c, v) for c, v in items if math.isfinite(v) and v > 0]
    if len(items) < 2:
        stats = _column_stats(report)
        items = [(c, _num(v.get("std"))) for c, v in stats.items() if v.get("kind") == "numeric"]
        items = [(c, v) for c, v in items if math.isfinite(v) and v > 0]
    if len(items) < 2:  # from the evidence alone
        items = []
        for key in ("smallest_spread", "largest_spread"):
            d = ev.get(key) or {}
            if isinstance(d, dict) and d.get("column") is not None:
                items.append((d["column"], d.get("spread")))
        for c, d in (ev.get("offset_columns") or {}).items():
            if isinstance(d, dict):
                items.append((c, d.get("spread")))
        items = list(dict(items).items())
    items = sorted(items, key=lambda kv: -_num(kv[1]) if math.isfinite(_num(kv[1])) else 0)[:25]
    return _bars(items, "Spread of each numeric column: very different scales",
                 "spread (log scale)", log=True)


def _sym_class_imbalance(sym: dict, report: dict) -> str | None:
    counts = (report.get("profile") or {}).get("class_counts") or \
        (sym.get("evidence") or {}).get("counts") or {}
    if not isinstance(counts, dict) or not counts:
        return None
    items = sorted(counts.items(), key=lambda kv: -_num(kv[1]) if math.isfinite(_num(kv[1])) else 0)[:25]
    rarest = items[-1][0] if items else None
    return _bars(items, "Rows per class", "rows", highlight=[rarest])


def _sym_duplicate_rows(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    rows = _num((report.get("data") or {}).get("rows"))
    dup = _num(ev.get("duplicate_rows"))
    if not math.isfinite(dup):
        return None
    items = [("extra copies", dup)] + ([("distinct rows", rows - dup)] if math.isfinite(rows) else [])
    return _bars(items, "Rows that repeat an earlier row", "rows", highlight=["extra copies"])


def _sym_constant_features(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    const = set((ev.get("columns") or {}).keys()) if isinstance(ev.get("columns"), dict) else set()
    stats = _column_stats(report)
    items = [(c, _num(v.get("distinct"))) for c, v in stats.items()]
    if not items:
        items = [(c, 1) for c in const]
    items = sorted(items, key=lambda kv: kv[1])[:25]
    return _bars(items, "Distinct values per column (constant columns in red)",
                 "distinct values (log scale)", highlight=const, log=True)


def _sym_target_leakage(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    cols = ev.get("columns") or {}
    items = [(c, (v or {}).get("single_feature_score")) for c, v in cols.items() if isinstance(v, dict)]
    others = ev.get("other_features_at_most") or {}
    items += [(c, v) for c, v in others.items() if isinstance(others, dict)]
    return _bars(items, "How well each column alone predicts the target",
                 _t(str(ev.get("score") or "score")), highlight=list(cols),
                 threshold=ev.get("threshold"), limits=(0, 1.05))


def _sym_high_dimensionality(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    return _bars([("input features", ev.get("features")), ("training rows", ev.get("training_rows"))],
                 f"Features vs rows ({_num(ev.get('rows_per_feature')):.3g} rows per feature)",
                 "count (log scale)", highlight=["input features"], log=True)


def _sym_limited_data(sym: dict, report: dict) -> str | None:
    curve = (sym.get("evidence") or {}).get("curve") or (report.get("profile") or {}).get("learning_curve")
    pts = [(_num(p.get("rows")), _num(p.get("score"))) for p in curve or [] if isinstance(p, dict)]
    pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
    return _series_plot([("reference model", pts, "o-", COLORS["baseline"])],
                        "Learning curve: the score still climbs with more rows", "held-out score",
                        log=False, xlabel="training rows")


def _sym_adversarial(sym: dict, report: dict) -> str | None:
    ev = sym.get("evidence") or {}
    rows = [r for r in (report.get("robustness") or {}).get("baseline") or [] if isinstance(r, dict)]
    pts = [(_num(r.get("eps")), _num(r.get("pgd"))) for r in rows]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if pts:
        lin = [(0.0, _num(ev.get("linear_clean"))), (_num(ev.get("eps")), _num(ev.get("linear_robust")))]
        lin = [(x, y) for x, y in lin if math.isfinite(x) and math.isfinite(y)]
        series = [("your network (PGD)", pts, "o-", COLORS["baseline"])]
        if len(lin) == 2:
            series.append(("linear model (PGD)", lin, "s:", "gray"))
        return _series_plot(series, "Accuracy under attack against perturbation size", "accuracy",
                            vline=(_num(ev.get("eps")), "radius the check attacks at"), log=False,
                            xlabel="eps (L-inf, standardised features)")
    return _bars([(k, ev.get(k)) for k in ("clean_accuracy", "robust_accuracy", "linear_clean",
                                            "linear_robust")],
                 "Accuracy, clean and under attack", "accuracy", limits=(0, 1))


def _sym_poor_calibration(sym: dict, report: dict) -> str | None:
    base = (report.get("calibration") or {}).get("baseline") or {}
    pts = [(_num(b.get("confidence")), _num(b.get("accuracy"))) for b in base.get("bins") or []
           if isinstance(b, dict)]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if pts:
        fig, (ax,) = _figure(width=4.5)
        ax.plot(*zip(*pts), "o-", ms=3, color=COLORS["baseline"], label="your recipe")
        ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean confidence", fontsize=8)
        ax.set_ylabel("observed accuracy", fontsize=8)
        ax.set_title("Reliability of your recipe's probabilities", fontsize=9)
        ax.legend(fontsize=7)
        return _png(fig)
    ev = sym.get("evidence") or {}
    return _bars([("measured ECE", ev.get("ece")), ("calibrated model, by chance", ev.get("chance_ece_95"))],
                 "Expected calibration error", "ECE", highlight=["measured ECE"],
                 threshold=ev.get("threshold"))


def _sym_evidence(sym: dict, report: dict) -> str | None:
    """Fallback: the symptom's numeric evidence as bars (thresholds as their own bars)."""
    ev = sym.get("evidence") or {}
    items = [(k, v) for k, v in ev.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(_num(v))][:12]
    if not items:
        return None
    vals = [abs(_num(v)) for _, v in items if _num(v) != 0]
    log = bool(vals) and all(_num(v) > 0 for _, v in items) and max(vals) / min(vals) > 100
    return _bars(items, f"Evidence: {str(sym.get('id', '')).replace('_', ' ')}", "value",
                 highlight=[k for k, _ in items if not str(k).startswith("threshold")], log=log)


#: symptom id → the figure that shows its evidence
SYMPTOM_FIGURES: dict[str, Callable[[dict, dict], str | None]] = {
    "loss_divergence": _sym_loss_divergence,
    "loss_oscillation": _sym_loss_oscillation,
    "slow_convergence": _sym_slow_convergence,
    "overfitting": _sym_overfitting,
    "underfitting": _sym_underfitting,
    "vanishing_gradient": _sym_vanishing_gradient,
    "exploding_gradient": _sym_exploding_gradient,
    "dying_relu": _sym_layer_shares("dead_share_per_layer", "Dead ReLU units per layer"),
    "saturated_activations": _sym_layer_shares("saturated_share_per_layer",
                                               "Saturated units per layer"),
    "missing_values": _sym_column_shares("Missing cells per column", "share of rows missing"),
    "unscaled_features": _sym_unscaled_features,
    "outliers": _sym_column_shares("Outlying values per column", "share of the column's values"),
    "class_imbalance": _sym_class_imbalance,
    "duplicate_rows": _sym_duplicate_rows,
    "constant_features": _sym_constant_features,
    "target_leakage": _sym_target_leakage,
    "high_dimensionality": _sym_high_dimensionality,
    "limited_data": _sym_limited_data,
    "adversarial_vulnerability": _sym_adversarial,
    "poor_calibration": _sym_poor_calibration,
}


def symptom_figure(sym: dict, report: dict) -> str | None:
    """The figure of one symptom's evidence: its own kind of plot, else its numbers as bars."""
    fn = SYMPTOM_FIGURES.get(str(sym.get("id")))
    src = None
    if fn is not None:
        try:
            src = fn(sym, report)
        except Exception:  # odd evidence: fall back to the plain numbers
            src = None
    return src or _sym_evidence(sym, report)


#: What each figure reads from the record: a figure is a pure function of these parts, so a
#: figure already drawn in this process for the same parts is reused (`draw`).
INPUTS = {"loss_curves": ("traces",), "gradient_norms": ("traces",), "unit_fractions": ("traces",),
          "class_counts": ("profile",), "learning_curve": ("profile",), "missing_share": ("profile",),
          "column_scales": ("profile",), "trial_history": ("trials", "study"),
          "importance": ("explanations",), "robustness": ("robustness",),
          "reliability": ("calibration",)}
SYMPTOM_INPUTS = ("traces", "profile", "robustness", "calibration", "data")
_CACHE: dict[tuple[str, str], str | None] = {}
_CACHE_SIZE = 128


def _digest(name: str, parts: dict) -> tuple[str, str]:
    import hashlib
    import json

    text = json.dumps(parts, sort_keys=True, default=str, allow_nan=True)
    return name, hashlib.sha1(text.encode()).hexdigest()


def _remember(key: tuple[str, str], fn: Callable[[], str | None]) -> str | None:
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = fn()
    return _CACHE[key]


def draw(name: str, report: dict) -> str | None:
    """The named figure of a record (reused when the same data was drawn before)."""
    fn = PLOTS[name][0]
    parts = {k: report.get(k) for k in INPUTS.get(name, tuple(report))}
    return _remember(_digest(name, parts), lambda: fn(report))


def draw_symptom(sym: dict, report: dict) -> str | None:
    """`symptom_figure`, reused when the same symptom and data were drawn before."""
    parts = {"symptom": sym, **{k: report.get(k) for k in SYMPTOM_INPUTS}}
    return _remember(_digest("symptom", parts), lambda: symptom_figure(sym, report))


#: name → (function, alt text); the report renders each figure at most once.
PLOTS: dict[str, tuple[Callable[[dict], str | None], str]] = {
    "loss_curves": (loss_curves, "Loss curves: training and validation loss per epoch, baseline and best"),
    "gradient_norms": (gradient_norms, "Gradient norms per layer over training steps (log scale)"),
    "unit_fractions": (unit_fractions, "Dead and saturated unit fractions per layer over epochs"),
    "class_counts": (class_counts, "Class counts: rows per class"),
    "learning_curve": (learning_curve, "Learning curve: held-out score against training rows"),
    "trial_history": (trial_history, "Trial history: objective value per trial and best so far"),
    "importance": (importance, "Global importance per column: integrated gradients, feature ablation and permutation importance"),
    "robustness": (robustness, "Robustness curve: accuracy against perturbation size, baseline and best"),
    "reliability": (reliability, "Reliability diagram: accuracy against confidence, baseline and best"),
    "missing_share": (missing_share, "Missing cells: share of empty cells per column"),
    "column_scales": (column_scales, "Column scales: standard deviation of each numeric column"),
}
