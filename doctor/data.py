"""Loading tables: CSV parsing, target and task inference, column kinds, the seeded split.

`Table` is the only data shape inside the package: the public edges (CLI paths, DataFrames,
arrays) are converted once, here, and everything downstream works on a `Table`.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from doctor.errors import InputError

log = logging.getLogger(__name__)

TARGET_NAMES = ("target", "label", "class", "y")
#: Integer targets with at most this many distinct values are read as class labels.
MAX_INFERRED_CLASSES = 20
#: Each class needs this many rows so that train, validation and test each can hold one.
MIN_ROWS_PER_CLASS = 3
MIN_ROWS = 10


@dataclass
class Table:
    """A data set as loaded: raw features, the target, and what kind of problem it is."""

    X: pd.DataFrame
    y: pd.Series
    target: str
    task: str  # "classification" | "regression"
    classes: list | None
    numeric: list[str]
    categorical: list[str]
    source: str = "data"

    @property
    def n_rows(self) -> int:
        return len(self.X)

    def y_codes(self) -> np.ndarray:
        """Class indices (int64) for classification, float32 values for regression."""
        if self.task == "classification":
            lookup = {c: i for i, c in enumerate(self.classes)}
            return np.array([lookup[v] for v in self.y], dtype=np.int64)
        return self.y.to_numpy(dtype=np.float32)

    def subset(self, rows: np.ndarray) -> Table:
        return Table(self.X.iloc[rows].reset_index(drop=True),
                     self.y.iloc[rows].reset_index(drop=True), self.target, self.task,
                     self.classes, self.numeric, self.categorical, self.source)


@dataclass
class Split:
    """Positional row indices; the test rows are touched only for the final numbers."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


# ----------------------------------------------------------------------------- reading
def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _decode(raw: bytes, path: Path) -> str:
    if b"\x00" in raw[:65536] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: this is a binary file, not a CSV; pass a comma- or "
                         "semicolon-separated text file")
    for enc in ("utf-8-sig", "utf-16") if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else ("utf-8-sig",):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            pass
    log.warning("%s is not UTF-8; reading it as Latin-1", path)
    return raw.decode("latin-1")


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a CSV file into a DataFrame, with one clear `InputError` for each way it can fail."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a CSV file")
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path}: the file is empty; pass a CSV with a header row and data rows")
    text = _decode(raw, path)
    sep = _sniff_delimiter(text[:65536])
    header = next(csv.reader(io.StringIO(text.lstrip().splitlines()[0]), delimiter=sep))
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise InputError(f"{path}: column name '{name}' appears twice in the header; "
                             "rename one of them")
        seen.add(name)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True)
    except pd.errors.ParserError as e:
        raise InputError(f"{path}: cannot parse the CSV ({str(e).strip()}); make every row "
                         "have as many fields as the header") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file has no columns; pass a CSV with a header row") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise InputError(f"{path}: the file has a header but no data rows")
    return df


def read_csv(path: str | Path, *, target: str | None = None, task: str | None = None) -> Table:
    """Read a CSV into a `Table`, with one clear `InputError` for every way it can be wrong."""
    return from_frame(read_frame(path), target=target, task=task, source=str(path))


def from_frame(df: pd.DataFrame, *, target: str | None = None, task: str | None = None,
               source: str = "data") -> Table:
    """Build a `Table` from a DataFrame that holds the features and the target column."""
    if df.shape[1] < 2:
        raise InputError(f"{source}: needs at least one feature column and a target column, "
                         f"found {df.shape[1]} column(s)")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    target = _pick_target(df, target, source)
    y = df.pop(target)
    if y.isna().any():
        rows = (np.flatnonzero(y.isna().to_numpy()) + 2)[:5].tolist()  # +2: header, 1-based
        raise InputError(f"{source}: target column '{target}' has {int(y.isna().sum())} missing "
                         f"value(s) (file lines {', '.join(map(str, rows))}); drop those rows "
                         "or fill them in")
    task = _pick_task(y, task, target, source)
    return _finish(df, y, target, task, source)


def from_arrays(X: Any, y: Any, *, task: str | None = None, feature_names: list[str] | None = None,
                source: str = "arrays") -> Table:
    """Build a `Table` from array-likes (NumPy, tensors, lists) or a DataFrame and a Series."""
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    if isinstance(X, pd.DataFrame):
        frame = X.copy()
        frame.columns = [str(c) for c in frame.columns]
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise InputError(f"X should be a 2-d array (rows, features), got shape {arr.shape}")
        names = feature_names or [f"x{i}" for i in range(arr.shape[1])]
        frame = pd.DataFrame(arr, columns=names)
    y = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy(),
                  name="target")
    if len(y) != len(frame):
        raise InputError(f"X has {len(frame)} rows but y has {len(y)}; pass one label per row")
    if y.isna().any():
        raise InputError(f"y has {int(y.isna().sum())} missing value(s); drop or fill them")
    frame = frame.reset_index(drop=True)
    task = _pick_task(y, task, "target", source)
    return _finish(frame, y, "target", task, source)


def _pick_target(df: pd.DataFrame, target: str | None, source: str) -> str:
    if target is not None:
        if target not in df.columns:
            cols = ", ".join(f"'{c}'" for c in list(df.columns)[:8])
            more = ", …" if df.shape[1] > 8 else ""
            raise InputError(f"{source}: no column named '{target}'; the columns are {cols}{more}; "
                             "pass one of them with --target")
        return target
    for name in TARGET_NAMES:
        for col in df.columns:
            if col.lower() == name:
                return col
    return df.columns[-1]


def _pick_task(y: pd.Series, task: str | None, target: str, source: str) -> str:
    if task is not None:
        if task not in ("classification", "regression"):
            raise InputError(f"--task must be 'classification' or 'regression', got '{task}'")
        if task == "regression" and not pd.api.types.is_numeric_dtype(y):
            raise InputError(f"{source}: target '{target}' is not numeric, so it cannot be "
                             "regressed; use --task classification")
        return task
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise InputError(f"{source}: target '{target}' holds infinite values; fix or drop those rows")
    integral = np.all(np.equal(np.mod(values, 1), 0))
    if integral and y.nunique() <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _finish(X: pd.DataFrame, y: pd.Series, target: str, task: str, source: str) -> Table:
    if len(X) < MIN_ROWS:
        raise InputError(f"{source}: only {len(X)} rows; need at least {MIN_ROWS} to train and "
                         "validate a model")
    numeric, categorical = [], []
    for col in X.columns:
        s = X[col]
        if pd.api.types.is_bool_dtype(s):
            X[col] = s.astype(float)
            numeric.append(col)
        elif pd.api.types.is_numeric_dtype(s):
            vals = s.to_numpy(dtype=float)
            if np.isinf(vals).any():
                log.warning("%s: column '%s' has %d infinite value(s); treating them as missing",
                            source, col, int(np.isinf(vals).sum()))
                X[col] = s.replace([np.inf, -np.inf], np.nan)
            numeric.append(col)
        else:
            X[col] = s.astype(object).where(s.notna(), np.nan)
            categorical.append(col)
    classes = None
    if task == "classification":
        y = y.astype(object) if not pd.api.types.is_numeric_dtype(y) else y
        classes = sorted(pd.unique(y), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise InputError(f"{source}: target '{target}' has a single class ({classes[0]!r}); "
                             "a classifier needs at least two")
        counts = y.value_counts()
        rare = counts[counts < MIN_ROWS_PER_CLASS]
        if len(rare):
            raise InputError(f"{source}: class {rare.index[0]!r} of '{target}' has only "
                             f"{int(rare.iloc[0])} row(s); each class needs at least "
                             f"{MIN_ROWS_PER_CLASS} to split into train, validation and test; "
                             "drop that class or add rows")
    return Table(X.reset_index(drop=True), y.reset_index(drop=True), target, task, classes,
                 numeric, categorical, source)


def split(table: Table, *, seed: int = 0, val: float = 0.2, test: float = 0.2) -> Split:
    """Seeded train/validation/test rows, stratified by class for classification."""
    idx = np.arange(table.n_rows)
    strat = table.y_codes() if table.task == "classification" else None
    n_classes = len(table.classes) if table.classes else 0
    n_test = max(int(round(test * len(idx))), n_classes)
    n_val = max(int(round(val * len(idx))), n_classes)
    rest, te = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
    tr, va = train_test_split(rest, test_size=n_val, random_state=seed + 1,
                              stratify=None if strat is None else strat[rest])
    return Split(np.sort(tr), np.sort(va), np.sort(te))
