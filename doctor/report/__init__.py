"""The report: `report.json` (the record) and `report.html` (one self-contained page).

Compute a record, then render (house rule 11): `build_view(report)` turns the report.json
record into a plain page model (sections, formatted numbers, figures as base64 PNG) and
`report.html.j2` only lays it out. Jinja2 autoescapes everything, so column names, class
labels and file names from the user's data always appear as text, and the page's
Content-Security-Policy lets no script run and nothing be fetched. Every symptom gets a figure
of its own evidence (`plots.symptom_figure`); the general figures (training curves, trial
history, importances, robustness, reliability, data profile) sit in their sections. Every key
except `data` and `symptoms` may be missing (`diagnose` writes only a few); the page shows
what is there.

Example:
    >>> html = render_html({"data": {"rows": 3, "columns": 2, "target": "y",
    ...                              "task": "regression"}, "symptoms": []})
    >>> "No symptoms found" in html
    True
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from doctor.report import plots as _plots

__all__ = ["build_view", "json_safe", "render_html", "write_report"]

TEMPLATE = "report.html.j2"
#: Content-Security-Policy of the page: nothing is fetched, nothing runs. Images are inline
#: PNGs, styles inline; a browser refuses anything else, so the page is provably offline.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")
#: metrics where a smaller number is better (the verdict table colours the change)
LOWER_IS_BETTER = ("rmse", "mae", "mse", "log_loss", "loss", "ece", "brier")
METRIC_ORDER = ("balanced_accuracy", "accuracy", "f1_macro", "roc_auc", "r2", "rmse", "mae")
ACRONYMS = {"relu": "ReLU", "pgd": "PGD", "fgsm": "FGSM", "ece": "ECE", "lr": "LR", "r2": "R²"}


# ----------------------------------------------------------------------------- writing
def json_safe(obj: Any) -> Any:
    """A JSON-safe copy: non-finite floats → None, numpy/torch scalars → Python, keys → str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    try:
        return json_safe(float(obj)) if not isinstance(obj, (bytes, bytearray)) else str(obj)
    except (TypeError, ValueError):
        return str(obj)


def write_report(out_dir: Path, report: dict) -> None:
    """Write `out_dir/report.json` (strict JSON, no NaN) and the self-contained `report.html`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = json_safe(report)
    (out_dir / "report.json").write_text(json.dumps(safe, indent=2, allow_nan=False), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(safe), encoding="utf-8")


def render_html(report: dict) -> str:
    """The report as one HTML page: inline CSS and PNGs, no scripts, nothing fetched."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
                             autoescape=True, undefined=jinja2.ChainableUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(v=build_view(json_safe(report)))


# ----------------------------------------------------------------------------- formatting
def fmt(v: Any, limit: int = 240) -> str:
    """A short human-readable rendering of any JSON value."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str):
        return v if len(v) <= limit else v[:limit - 1] + "…"
    if isinstance(v, dict):
        s = "; ".join(f"{k}: {fmt(x, 60)}" for k, x in v.items())
    elif isinstance(v, list):
        shown = ", ".join(fmt(x, 60) for x in v[:12])
        s = f"[{shown}{f', … ({len(v) - 12} more)' if len(v) > 12 else ''}]"
    else:
        s = str(v)
    return s if len(s) <= limit else s[:limit - 1] + "…"


def title(ident: Any) -> str:
    words = str(ident).replace("_", " ").split()
    words = [ACRONYMS.get(w.lower(), w) for w in words]
    return " ".join(words)[:1].upper() + " ".join(words)[1:] if words else str(ident)


def anchor(prefix: str, ident: Any) -> str:
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]+', '-', str(ident))}"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


class _Figures:
    """Draws each figure at most once and places it in the first section that asks for it."""

    def __init__(self, report: dict) -> None:
        self.report, self.cache, self.placed = report, {}, {}

    def get(self, name: str) -> dict | None:
        if name not in self.cache:
            alt = _plots.PLOTS[name][1]
            try:
                src = _plots.draw(name, self.report)
            except Exception as e:  # a figure must never cost the user the report
                src, alt = None, f"{alt} (could not be drawn: {e})"
            self.cache[name] = {"name": name, "alt": alt, "src": src} if src else None
        return self.cache[name]

    def symptom(self, sym: dict, where: str) -> dict | None:
        """The figure of one symptom's own evidence (placed in its section)."""
        name = anchor("symptom", sym.get("id"))
        if name in self.placed:
            return None
        try:
            src = _plots.draw_symptom(sym, self.report)
        except Exception:  # a figure must never cost the user the report
            src = None
        if not src:
            return None
        self.placed[name] = where
        return {"name": name, "src": src,
                "alt": f"{title(sym.get('id'))}: the evidence behind this symptom"}

    def take(self, name: str, where: str) -> dict | None:
        """The figure if it exists and was not placed yet (then it is placed at `where`)."""
        fig = self.get(name)
        if fig is None or name in self.placed:
            return None
        self.placed[name] = where
        return fig


# ----------------------------------------------------------------------------- sections
def _metrics_rows(base: dict, best: dict) -> list[dict]:
    keys = [k for k in METRIC_ORDER if k in base or k in best]
    keys += [k for k in list(base) + list(best) if k not in keys]
    rows = []
    for k in dict.fromkeys(keys):
        a, b = base.get(k), best.get(k)
        if (a is not None and _num(a) is None) or (b is not None and _num(b) is None):
            continue  # not a scalar metric (a confusion matrix, a note)
        row = {"name": title(k), "baseline": fmt(a), "best": fmt(b), "change": "", "good": None}
        if _num(a) is not None and _num(b) is not None:
            d = b - a
            row["change"] = f"{d:+.4g}"
            lower = any(k.lower().endswith(s) for s in LOWER_IS_BETTER)
            row["good"] = None if abs(d) < 1e-12 else (d < 0) == lower
        rows.append(row)
    return rows


def _verdict(r: dict) -> dict:
    syms = [s for s in r.get("symptoms") or [] if isinstance(s, dict)]
    base, best = r.get("baseline") or {}, r.get("best") or {}
    text = r.get("verdict") or ("No symptoms found: the data and the recipe look healthy." if not syms
                                else f"Found {len(syms)} symptom(s).")
    status = {str(c.get("id")): str(c.get("status") or "") for c in r.get("cure") or []
              if isinstance(c, dict)}
    before = {s.get("id") for s in syms}
    bm, tm = base.get("metrics") or {}, best.get("metrics") or {}
    key = next((k for k in ("balanced_accuracy", "r2", "accuracy") if k in bm), None)
    gain = None
    if key and _num(bm.get(key)) is not None and _num(tm.get(key)) is not None:
        d = tm[key] - bm[key]
        gain = {"metric": title(key), "before": fmt(bm[key]), "after": fmt(tm[key]),
                "change": f"{d:+.3f}", "good": None if abs(d) < 1e-12 else d > 0}
    return {"text": text, "gain": gain,
            "found": [{"title": title(s.get("id")), "anchor": anchor("symptom", s.get("id")),
                       "status": status.get(str(s.get("id")), "")}
                      for s in syms],
            "fixed_by": [title(x) for x in best.get("remedies_applied") or []],
            # after the cure: symptoms the recipe as given also had, then ones that are new
            "remaining": ([title(x) for x in best.get("symptoms") or [] if x in before]
                          if best else None),
            "new": [title(x) for x in best.get("symptoms") or [] if x not in before],
            "has_best": bool(best.get("metrics")),
            "held_out": base.get("held_out") or ("test rows" if best else "held-out rows"),
            "metrics": _metrics_rows(base.get("metrics") or {}, best.get("metrics") or {})}


def _symptoms(r: dict, figs: _Figures) -> list[dict]:
    out, syms = [], [s for s in r.get("symptoms") or [] if isinstance(s, dict)]
    for s in sorted(syms, key=lambda s: (bool(s.get("caused_by")), -(_num(s.get("severity")) or 0))):
        sev = min(1.0, max(0.0, _num(s.get("severity")) or 0.0))
        a = anchor("symptom", s.get("id"))
        fig = figs.symptom(s, a)
        out.append({
            "id": str(s.get("id")), "anchor": a, "title": title(s.get("id")),
            "stage": str(s.get("stage") or ""), "severity": f"{sev:.2f}",
            "severity_pct": round(100 * sev), "level": "high" if sev >= 0.66 else "medium" if sev >= 0.33 else "low",
            "summary": str(s.get("summary") or ""),
            "evidence": [(str(k), fmt(v)) for k, v in (s.get("evidence") or {}).items()],
            "remedies": [title(x) for x in s.get("remedies") or []],
            "caused_by": {"title": title(s["caused_by"]), "anchor": anchor("symptom", s["caused_by"])}
            if s.get("caused_by") else None,
            "figure": fig,
        })
    return out


def _not_judged(r: dict) -> list[dict]:
    """The symptoms the doctor could not judge for this model, each with its reason."""
    na = r.get("not_applicable")
    if not isinstance(na, dict):
        return []
    return [{"title": title(k), "reason": fmt(v, 400)} for k, v in na.items()]


def _treatment(r: dict, figs: _Figures) -> dict | None:
    study, trials, best = r.get("study") or {}, r.get("trials") or [], r.get("best") or {}
    if not (study or trials or best.get("params")):
        return None
    imp = sorted(((str(k), _num(v) or 0.0) for k, v in (r.get("param_importances") or {}).items()),
                 key=lambda kv: -kv[1])
    top = max((v for _, v in imp), default=0.0) or 1.0
    return {
        "study": [(title(k), fmt(v)) for k, v in study.items() if not isinstance(v, (dict, list))],
        "prescription": [(str(k), fmt(v)) for k, v in (study.get("prescription") or {}).items()],
        "figure": figs.take("trial_history", "treatment"),
        "trials": [{"number": fmt(t.get("number")), "state": str(t.get("state") or ""),
                    "value": fmt(t.get("value")), "params": fmt(t.get("params") or {}, 400),
                    "symptoms": ", ".join(title(x) for x in t.get("symptoms") or []),
                    "reason": "; ".join(fmt(x) for x in [t.get("reason"), *(t.get("notes") or [])]
                                        if x),
                    "prescribed": bool(t.get("prescribed")),
                    "competing": str(t.get("competing") or ""),
                    "widened": bool(t.get("widened")),
                    "best": t.get("number") == study.get("best_trial")}
                   for t in trials if isinstance(t, dict)],
        "importances": [(k, fmt(v), round(100 * v / top)) for k, v in imp],
        "params": [(str(k), fmt(v)) for k, v in (best.get("params") or {}).items()],
        "remedies": [title(x) for x in best.get("remedies_applied") or []],
        "kept": bool(best.get("kept_recipe_as_given")),
        "notes": [fmt(n) for n in best.get("notes") or []],
        "members": int((best.get("ensemble") or {}).get("members") or 1),
        "remaining": [title(x) for x in best.get("symptoms") or []],
    }


def _cure(r: dict) -> list[dict]:
    return [{"title": title(c.get("id")), "anchor": anchor("symptom", c.get("id")),
             "status": str(c.get("status") or ""), "before": fmt(c.get("before") or {}, 300),
             "after": fmt(c.get("after") or {}, 300)}
            for c in r.get("cure") or [] if isinstance(c, dict)]


def _explanations(r: dict, figs: _Figures) -> dict | None:
    ex = r.get("explanations") or {}
    if not ex:
        return None
    ig = ex.get("global_importance") or {}
    cc = ex.get("cross_check") or {}
    fa = cc.get("global_importance") or {}
    perm = ex.get("permutation") or {}
    pm = perm.get("global_importance") or {}
    rho = _num(cc.get("rank_correlation"))
    rho_p = _num(perm.get("rank_correlation_with_ig"))
    per_class = ex.get("per_class") or {}
    cols = list(ig)[:10]
    return {
        "method": title(ex.get("method") or ""), "baseline": fmt(ex.get("baseline")),
        "target": fmt(ex.get("target")) if ex.get("target") else "",
        "n_rows": fmt(ex.get("n_rows")), "n_steps": fmt(ex.get("n_steps")),
        "cross_method": title(cc.get("method") or ""),
        "perm_method": title(perm.get("method") or "") if pm else "",
        "perm_note": (f"scored as the {perm.get('scoring')} against {perm.get('against')}, "
                      f"{perm.get('n_repeats')} shuffles per column" if pm else
                      str(perm.get("error") or "")),
        "delta": fmt(ex.get("convergence_delta")), "rho": fmt(rho), "rho_perm": fmt(rho_p),
        "disagree": bool(cc.get("disagree", rho is not None and rho < 0.5)
                         or (perm.get("comparison") or {}).get("disagree")),
        "agreement": str(ex.get("agreement") or ""),
        "figure": figs.take("importance", "explanations"),
        "importance": [(str(c), fmt(ig.get(c)), fmt(fa.get(c)), fmt(pm.get(c)) if pm else "")
                       for c in list(ig)[:30]],
        "class_names": [str(k) for k in per_class],
        "per_class": [(str(c), [fmt((per_class[k] or {}).get(c)) for k in per_class]) for c in cols],
        "rows_selection": str(ex.get("rows_selection") or "explained rows"),
        "score_name": "confidence" if "per_class" in ex else
        "|error|" if ex.get("rows_selection") == "largest errors" else "|output|",
        "rows": [{"index": fmt(x.get("index")), "predicted": fmt(x.get("predicted")),
                  "true": fmt(x.get("true")) if "true" in x else "",
                  "confidence": fmt(x.get("confidence", x.get("score"))),
                  "attributions": [(str(k), fmt(v)) for k, v in (x.get("attributions") or {}).items()]}
                 for x in ex.get("rows") or [] if isinstance(x, dict)],
    }


def _robustness(r: dict, figs: _Figures) -> dict | None:
    rob = r.get("robustness") or {}
    if not (rob.get("baseline") or rob.get("best")):
        return None
    curves = {name: [p for p in rob.get(name) or [] if isinstance(p, dict)] for name in ("baseline", "best")}
    eps_all = sorted({_num(p.get("eps")) for c in curves.values() for p in c} - {None})
    by = {name: _Near({_num(p.get("eps")): p for p in c}) for name, c in curves.items()}
    rows = []
    for e in eps_all:
        row = [fmt(e)]
        for name in ("baseline", "best"):
            p = by[name].get(e) or {}
            row += [fmt(p.get("fgsm")) if p else "", fmt(p.get("pgd")) if p else ""]
        marked = _num(rob.get("robust_eps"))
        rows.append({"cells": row, "marked": marked is not None and abs(e - marked) < 1e-6})
    summary = ""
    eps = _num(rob.get("robust_eps")) or _num(rob.get("check_eps"))
    if eps is not None and by["baseline"].get(eps) and by["best"].get(eps):
        a, b = _num(by["baseline"][eps].get("pgd")), _num(by["best"][eps].get("pgd"))
        if a is not None and b is not None:
            summary = (f"Under PGD attacks of size {eps:g}, accuracy is {a:.3f} for your recipe and "
                       f"{b:.3f} for the cured model ({b - a:+.3f}).")
    elif eps is not None and by["baseline"].get(eps):
        a = _num(by["baseline"][eps].get("pgd"))
        if a is not None:
            summary = f"Under PGD attacks of size {eps:g}, your recipe's accuracy is {a:.3f}."
    return {"figure": figs.take("robustness", "robustness"), "rows": rows,
            "has_best": bool(curves["best"]), "summary": summary,
            "attack": str(rob.get("attack") or ""), "held_out": str(rob.get("held_out") or ""),
            "robust_eps": fmt(rob.get("robust_eps")) if rob.get("robust_eps") else ""}


class _Near(dict):
    """Points by eps, looked up with a tolerance (radii went through JSON and rounding)."""

    def get(self, key, default=None):
        if key is None:
            return default
        for k, v in self.items():
            if k is not None and abs(k - key) <= 1e-6 * max(1.0, abs(key)):
                return v
        return default


def _calibration(r: dict, figs: _Figures) -> dict | None:
    cal = r.get("calibration") or {}
    if not any(isinstance(cal.get(n), dict) and cal[n] for n in ("baseline", "best")):
        return None
    ts = cal.get("temperature_scaling") or {}
    rows = [(name, fmt((cal.get(name) or {}).get("ece"))) for name in ("baseline", "best")
            if isinstance(cal.get(name), dict) and cal[name]]
    if ts.get("applied"):
        rows = [("baseline", fmt((cal.get("baseline") or {}).get("ece"))),
                ("best, before temperature scaling", fmt(ts.get("test_ece_before"))),
                (f"best, temperature {fmt(ts.get('temperature'))} (shipped)",
                 fmt((cal.get("best") or {}).get("ece")))]
    held = (cal.get("best") or cal.get("baseline") or {}).get("held_out") or ""
    return {"figure": figs.take("reliability", "calibration"), "rows": rows,
            "held_out": str(held), "temperature": str(ts.get("reason") or ""),
            "applied": bool(ts.get("applied"))}


def _profile(r: dict, figs: _Figures) -> dict:
    data, prof = r.get("data") or {}, r.get("profile") or {}
    ref = prof.get("reference") or {}
    cols = prof.get("columns") or {}
    stats = prof.get("column_stats") or {}
    keys = ("kind", "missing_share", "distinct", "median", "std", "min", "max")
    return {"data": [(title(k), fmt(v, 400)) for k, v in data.items()],
            "figures": [f for f in (figs.take(n, "profile") for n in
                                    ("class_counts", "learning_curve", "missing_share",
                                     "column_scales")) if f],
            "stats_keys": [title(k) for k in keys],
            "stats": [(str(c), [fmt(v.get(k)) if k in v else "" for k in keys])
                      for c, v in stats.items() if isinstance(v, dict)] if isinstance(stats, dict) else [],
            "reference": [(title(k), fmt(v)) for k, v in ref.items()] if isinstance(ref, dict) else [],
            "columns": [(title(k), fmt(v, 1000)) for k, v in cols.items()] if isinstance(cols, dict) else []}


def build_view(report: dict) -> dict:
    """The page model: every section's text, tables and figures, in page order."""
    r = json_safe(report)
    figs = _Figures(r)
    data = r.get("data") or {}
    view: dict[str, Any] = {
        "csp": CSP,
        "title": f"doctor report: {Path(str(data.get('source') or 'data')).name}",
        "data": {k: fmt(data.get(k)) for k in ("rows", "columns", "target", "task", "source")},
        "verdict": _verdict(r),
        "symptoms": _symptoms(r, figs),
        "not_judged": _not_judged(r),
    }
    view["training"] = [f for f in (figs.take(n, "training") for n in
                                    ("loss_curves", "gradient_norms", "unit_fractions")) if f]
    view["treatment"] = _treatment(r, figs)
    view["cure"] = _cure(r)
    view["explanations"] = _explanations(r, figs)
    view["robustness"] = _robustness(r, figs)
    view["calibration"] = _calibration(r, figs)
    view["profile"] = _profile(r, figs)
    view["versions"] = [(str(k), fmt(v)) for k, v in (r.get("versions") or {}).items()]
    view["command"] = str(r.get("command") or "")
    view["figures"] = sorted(figs.placed)
    nav = [("verdict", "Verdict"), ("symptoms", "Symptoms")]
    nav += [(k, t) for k, t in (("training", "Training"), ("treatment", "Treatment"),
                                ("cure", "Cure check"), ("explanations", "Explanations"),
                                ("robustness", "Robustness"), ("calibration", "Calibration"))
            if view[k]]
    view["nav"] = nav + [("profile", "Data profile"), ("versions", "Versions")]
    return view
