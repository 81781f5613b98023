"""The repair benchmark's summary arithmetic (benchmarks/repair.py), on hand-made rows whose
answers are known: the README quotes these lines, so a slip in them would misreport."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def repair():
    spec = importlib.util.spec_from_file_location("repair_bench", ROOT / "benchmarks" / "repair.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _side(to_tol: tuple[int, float] | None, best: float, test: float, seconds: float) -> dict:
    return {"best": best, "test": test, "seconds": seconds, "trials": 20,
            "to_ref": to_tol, "to_ref_tol": to_tol, "prescribed": best, "prior": None,
            "pruned": 0, "pruned_sick": 0, "failed": 0, "remedies": [],
            "runs": [{"best": best, "test": test}]}


def _row(name: str, diag: float, guided: float, full: float) -> dict:
    return {"scenario": name, "task": "classification", "reference_val": 0.9, "baseline_val": 0.5,
            "diagnosis_s": diag, "symptoms": [],
            "guided": _side((1, guided), 0.95, 0.94, 10.0),
            "full": _side((3, full), 0.95, 0.94, 30.0)}


def test_the_time_ratios_count_the_diagnosis_as_each_comparison_says(repair):
    # per scenario (guided, full, diagnosis) seconds → ratios without / with the diagnosis
    # on guided only / on both sides:
    #   a: 1, 4, 1 → 0.25, 0.50, 0.40;  b: 2, 2, 2 → 1.00, 2.00, 1.00;  c: 1, 10, 1 → 0.10, 0.20, 0.18
    rows = [_row("a", 1.0, 1.0, 4.0), _row("b", 2.0, 2.0, 2.0), _row("c", 1.0, 1.0, 10.0)]
    text = repair.print_guided(rows, trials=20)
    plain = re.search(r"search seconds is ([\d.]+); counting the diagnosis the guided search "
                      r"needs first, ([\d.]+) \(medians of seconds with it: guided ([\d.]+), "
                      r"full ([\d.]+)\)", text)
    assert plain and plain.groups() == ("0.25", "0.50", "2.0", "4.0")
    both = re.search(r"both diagnose before they search\), the median ratio is ([\d.]+) "
                     r"\(medians of seconds: guided ([\d.]+), full ([\d.]+)\)", text)
    assert both and both.groups() == ("0.40", "2.0", "5.0")


def test_a_recipe_already_near_the_reference_leaves_the_time_lines_but_not_the_end(repair):
    # "d"'s recipe as given scores 0.88 against a reference of 0.9, within the tolerance:
    # any first trial reaches the target, so its seconds (here a ratio of 5.0) would measure
    # one trial's training and the diagnosis, not a search. Its end-of-budget scores count.
    rows = [_row("a", 1.0, 1.0, 4.0), _row("b", 2.0, 2.0, 2.0), _row("c", 1.0, 1.0, 10.0)]
    near = _row("d", 4.0, 1.0, 1.0)
    near["baseline_val"] = 0.88
    near["guided"]["test"] = 0.5
    text = repair.print_guided(rows + [near], trials=20)
    assert "within 0.03 of the reference on validation in 1 of 4 scenarios (d)" in text
    assert "(median over 3 scenarios, never reached = ∞)" in text
    plain = re.search(r"search seconds is ([\d.]+); counting the diagnosis the guided search "
                      r"needs first, ([\d.]+)", text)
    assert plain and plain.groups() == ("0.25", "0.50")
    assert "guided at least full − 0.005 in 3 of 4" in text


def test_parts_2_and_2c_together_are_every_faulty_scenario_once(repair):
    faulty = {s.name for s in repair.SCENARIOS if s.faulty}
    assert set(repair.FULL_GUIDED) | set(repair.DATA_GUIDED) == faulty
    assert not set(repair.FULL_GUIDED) & set(repair.DATA_GUIDED)
    results = {"trials": 20, "guided": [_row("a", 1.0, 1.0, 4.0)],
               "data": [_row("b", 2.0, 2.0, 2.0), _row("c", 1.0, 1.0, 10.0)]}
    text = repair.print_guided_together(results)
    assert text.startswith("## 2 + 2c together: every faulty scenario of part 1 (3)")
    assert "| scenario |" not in text and "median over 3 scenarios" in text


def test_reach_is_the_first_trial_at_the_target(repair):
    curve = [(0.5, 0.2), (1.0, 0.86), (2.5, 0.88), (4.0, 0.95)]
    assert repair._reach(curve, 0.87) == (3, 2.5)
    assert repair._reach(curve, 0.86) == (2, 1.0)
    assert repair._reach(curve, 0.99) is None


def test_the_test_row_interval_scores_each_resample_as_scikit_learn_does(repair):
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(3)
    y = rng.choice(["a", "b", "c"], 40, p=[0.6, 0.3, 0.1])
    pred = np.where(rng.random(40) < 0.8, y, "b")
    idx = rng.integers(0, 40, (25, 40))
    labels, codes = np.unique(y, return_inverse=True)
    fast = repair._balanced_accuracy(codes[idx], pred, labels, idx)
    assert np.allclose(fast, [balanced_accuracy_score(y[i], pred[i]) for i in idx])
    t = rng.normal(size=60)
    p = t + rng.normal(scale=0.5, size=60)
    idx = rng.integers(0, 60, (25, 60))
    assert np.allclose(repair._r2(t[idx], p[idx]), [r2_score(t[i], p[i]) for i in idx])


def test_the_test_row_interval_brackets_the_gap_and_narrows_with_rows(repair):
    import numpy as np

    rng = np.random.default_rng(4)
    widths = []
    for n in (50, 800):
        y = rng.integers(0, 2, n)
        ref = y.copy()
        doc = y.copy()
        doc[rng.choice(n, n // 10, replace=False)] ^= 1  # the doctor misses 10 % more rows
        lo, hi = repair.gap_interval("classification", y, doc, ref)
        gap = repair.score("classification", y, doc) - repair.score("classification", y, ref)
        assert lo <= gap <= hi < 0
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
