"""Loading tables: CSV parsing, target and task inference, column kinds, the seeded split.

`Table` is the only data shape inside the package: the public edges (CLI paths, DataFrames,
arrays) are converted once, here, and everything downstream works on a `Table`.
"""
from __future__ import annotations

import csv
import io
import re
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
    #: The per-sample shape of array input with more than one feature axis (e.g. `(1, 8, 8)`
    #: for 8×8 grey images), or None for a plain table. `X` always holds one column per
    #: element in C order, so the network can be handed `(batch, *input_shape)` tensors.
    input_shape: tuple[int, ...] | None = None

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
                     self.classes, self.numeric, self.categorical, self.source, self.input_shape)


@dataclass
class Split:
    """Positional row indices; the test rows are touched only for the final numbers."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


# ----------------------------------------------------------------------------- reading
#: Files that are not text, recognised by their first bytes: (magic, what it is, what to do).
MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx or .ods workbook?)", "export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (Excel .xls?)", "export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ", "xz-compressed", "decompress it first (unxz)"),
    (b"PAR1", "a Parquet file", "convert it to CSV"),
    (b"SQLite format 3", "a SQLite database", "export the table as CSV"),
    (b"%PDF", "a PDF document", "pass the data as a CSV file"),
    (b"\x89PNG", "a PNG image", "pass the data as a CSV file"),
    (b"\xff\xd8\xff", "a JPEG image", "pass the data as a CSV file"),
)
DELIMITERS = ",;\t|"
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 26))


def _sniff_delimiter(sample: str) -> str:
    lines = [l for l in sample.splitlines() if l.strip()][:50]
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = None
    header = lines[0] if lines else ""
    if found and found in header:
        return found
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else (found or ",")


def _binary(raw: bytes, path: Path) -> InputError:
    return InputError(f"{path}: this is a binary file, not a CSV; pass a comma- or "
                      "semicolon-separated text file")


def _decode(raw: bytes, path: Path) -> str:
    head = raw[:65536]
    for magic, what, todo in MAGIC:
        if raw.startswith(magic):
            return _raise(InputError(f"{path}: this is {what}, not a CSV; {todo}"))
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise _binary(raw, path) from None
    if b"\x00" in head:
        # UTF-16 without a byte-order mark: every other byte of ASCII text is NUL.
        even, odd = head[0::2], head[1::2]
        for enc, zeros, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
            if len(zeros) > 2 and zeros.count(0) > 0.9 * len(zeros) and other.count(0) == 0:
                try:
                    return raw.decode(enc)
                except UnicodeDecodeError:
                    break
        raise _binary(raw, path)
    if sum(head.count(c) for c in _CONTROL) > max(2, 0.01 * len(head)):
        raise _binary(raw, path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
    try:
        text = raw.decode("cp1252")
        enc = "Windows-1252"
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        enc = "Latin-1"
    log.warning("%s is not UTF-8 (first odd byte on line %d); reading it as %s — save it as "
                "UTF-8 if accents look wrong", path, line, enc)
    return text


def _raise(e: Exception):
    raise e


def _lines(df: pd.DataFrame, mask: np.ndarray | pd.Series, limit: int = 5) -> str:
    """'file line(s) 3, 7' for frames read from a file, else 'row(s) at index 3, 7'."""
    m = np.asarray(mask, dtype=bool)
    n = int(m.sum())
    shown = ", ".join(str(i) for i in df.index[m][:limit]) + (", …" if n > limit else "")
    if df.attrs.get("doctor_lines"):
        return f"file line{'s' if n > 1 else ''} {shown}"
    return f"row{'s' if n > 1 else ''} at index {shown}"


def _first(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    """Where the first flagged row is: 'file line 7' or 'row at index 7'."""
    first = df.index[np.asarray(mask, dtype=bool)][0]
    return f"file line {first}" if df.attrs.get("doctor_lines") else f"row at index {first}"


def _parse_error(path: Path, e: Exception, offset: int) -> InputError:
    msg = str(e).strip()
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        want, line, got = int(m.group(1)), int(m.group(2)) + offset, int(m.group(3))
        return InputError(f"{path}: line {line} has {got} fields but the header has {want}; make "
                          "every row have as many fields as the header (quote fields that "
                          "contain the delimiter)")
    m = re.search(r"EOF inside string starting at row (\d+)", msg)
    if m:
        return InputError(f"{path}: a quote (\") opened on line {int(m.group(1)) + 1 + offset} is "
                          "never closed; close it or remove it")
    first = msg.splitlines()[0] if msg else type(e).__name__
    return InputError(f"{path}: cannot parse the CSV ({first}); make every row have as many "
                      "fields as the header")


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a CSV file into a DataFrame, with one clear `InputError` for each way it can fail.

    The frame's index holds the file line of each row (`attrs["doctor_lines"]`), so later
    messages can name lines. Blank rows, rows that repeat the header and unnamed empty columns
    (a trailing delimiter) are left out with a warning.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a CSV file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror or e}); check its "
                         "permissions") from None
    if not raw.strip():
        raise InputError(f"{path}: the file is empty; pass a CSV with a header row and data rows")
    text = _decode(raw, path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty; pass a CSV with a header row and data rows")
    body = text.lstrip("\r\n \t\ufeff")
    offset = text[:len(text) - len(body)].count("\n")  # blank lines before the header
    sep = _sniff_delimiter(body[:65536])
    try:
        header = next(csv.reader(io.StringIO(body.splitlines()[0]), delimiter=sep))
    except (csv.Error, StopIteration):
        header = []
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name and name in seen:
            raise InputError(f"{path}: column name '{name}' appears twice in the header; "
                             "rename one of them")
        seen.add(name)
    df = _parse(path, body, sep, offset, decimal=".")
    if sep in ";\t|" and _decimal_commas(df):
        log.warning("%s: numbers use ',' as the decimal mark; reading them so", path)
        df = _parse(path, body, sep, offset, decimal=",")
    df.columns = [str(c).strip() for c in df.columns]
    df.index = pd.RangeIndex(offset + 2, offset + 2 + len(df))
    df.attrs["doctor_lines"] = True
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        stray = int(blank.sum()) - sum(1 for l in body.splitlines()[1:] if not l.strip())
        if stray > 0:
            log.warning("%s: %d row(s) are empty in every column (%s); they are left out", path,
                        int(blank.sum()), _lines(df, blank))
        df = df[~blank]
    if len(df) == 0:
        raise InputError(f"{path}: the file has a header but no data rows")
    repeats = np.ones(len(df), dtype=bool)
    for col in df.columns:
        repeats &= (df[col].astype(str).str.strip() == col).to_numpy()
    if repeats.any() and not repeats.all():
        log.warning("%s: %s repeat the header (files joined together?); left out", path,
                    _lines(df, repeats))
        df = _retype(df[~repeats])
    for pos, col in enumerate(list(df.columns)):
        if col.startswith("Unnamed: ") and (pos >= len(header) or not header[pos].strip()) \
                and df[col].isna().all():
            log.warning("%s: header field %d has no name and its column no values (a trailing "
                        "delimiter?); left out", path, pos + 1)
            df = df.drop(columns=col)
    if df.shape[1] == 0:
        raise InputError(f"{path}: the file has no columns with values; pass a CSV with a header "
                         "row and data rows")
    return df


def _parse(path: Path, body: str, sep: str, offset: int, decimal: str) -> pd.DataFrame:
    # index_col=False: pandas would otherwise take the first column as the index when every
    # row has one field more than the header, shifting every column by one without a word.
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(io.StringIO(body), sep=sep, skipinitialspace=True, index_col=False,
                             skip_blank_lines=False, low_memory=False, decimal=decimal)
        if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
            error = _extra_fields(path, body, sep, offset)
            if error is not None:
                raise error
            log.warning("%s: rows end with empty fields beyond the header (trailing "
                        "delimiters); ignored", path)
        return df
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file has no columns; pass a CSV with a header row") from None
    except (pd.errors.ParserError, csv.Error, ValueError, OverflowError) as e:
        raise _parse_error(path, e, offset) from None


def _extra_fields(path: Path, body: str, sep: str, offset: int) -> InputError | None:
    """Rows with values beyond the header's last column (pandas would drop them), or None
    when the extra fields are all empty (trailing delimiters)."""
    rows = csv.reader(io.StringIO(body), delimiter=sep, skipinitialspace=True)
    header = next(rows, [])
    for i, row in enumerate(rows, start=2 + offset):
        if len(row) > len(header) and any(v.strip() for v in row[len(header):]):
            return InputError(f"{path}: line {i} has {len(row)} fields but the header has "
                              f"{len(header)}; add the missing column names to the header or "
                              "remove the extra fields")
    return None


def _decimal_commas(df: pd.DataFrame) -> bool:
    pattern = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s):
            continue
        vals = s.dropna().astype(str)
        if len(vals) and vals.map(lambda v: bool(pattern.match(v))).mean() > 0.9:
            return True
    return False


def _retype(df: pd.DataFrame) -> pd.DataFrame:
    """Re-infer column types after dropping rows that forced text (repeated headers)."""
    attrs = dict(df.attrs)
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            conv = pd.to_numeric(out[col], errors="coerce")
            if conv.notna().sum() == out[col].notna().sum():
                out[col] = conv
    out.attrs.update(attrs)
    return out


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
    df.columns = [str(c).strip() for c in df.columns]
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise InputError(f"{source}: column name '{dup[0]}' appears twice; rename one of them")
    target = _pick_target(df, target, source)
    y = df[target]
    missing = _blank_values(y)
    if missing.all():
        raise InputError(f"{source}: target column '{target}' is empty in every row; pass the "
                         "column to predict with --target")
    if missing.any():
        raise InputError(f"{source}: target column '{target}' has {int(missing.sum())} missing "
                         f"value(s) ({_lines(df, missing)}); drop those rows or fill them in")
    task = _pick_task(y, task, target, source)
    X = df.drop(columns=[target])
    X = _clean_features(X, source)
    X.attrs.update(df.attrs)
    return _finish(X, y, target, task, source)


def from_arrays(X: Any, y: Any, *, task: str | None = None, feature_names: list[str] | None = None,
                source: str = "arrays") -> Table:
    """Build a `Table` from array-likes (NumPy, tensors, lists) or a DataFrame and a Series.

    X of shape (rows, d1, d2, …) — images as (rows, channels, height, width), say — becomes
    one column per element (C order, named `x<i>_<j>_…` by position) and the Table records
    `input_shape = (d1, d2, …)`, so the network still receives tensors of that shape.
    """
    shape = None
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    if isinstance(X, pd.DataFrame):
        frame = X.copy()
        frame.columns = [str(c) for c in frame.columns]
    else:
        arr = np.asarray(X)
        if arr.ndim > 2 and arr.dtype != object:
            shape = tuple(int(d) for d in arr.shape[1:])
            if 0 in shape:
                raise InputError(f"X has an empty sample shape {shape}; pass (rows, features) "
                                 "or (rows, channels, height, width)")
            names = feature_names or ["x" + "_".join(map(str, i)) for i in np.ndindex(*shape)]
            arr = arr.reshape(len(arr), int(np.prod(shape)))
        if arr.ndim != 2:
            raise InputError(f"X should be an array of shape (rows, features) or (rows, "
                             f"channels, …), got shape {arr.shape}")
        if shape is None:
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
    table = _finish(frame, y, "target", task, source)
    table.input_shape = shape
    return table


def _blank_values(s: pd.Series) -> np.ndarray:
    miss = s.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=object)
        miss = miss | np.array([isinstance(x, str) and not x.strip() for x in v], dtype=bool)
    return miss


_ID_NAME = re.compile(r"^(id|ids|index|idx|row|rowid|row_id|row_number|uuid|guid|key|#|"
                      r"unnamed: \d+|.*[_ ]id)$", re.I)
#: Text columns with this many rows or more and a distinct value in every row are identifiers.
MIN_ROWS_FOR_ID = 20


def _clean_features(X: pd.DataFrame, source: str) -> pd.DataFrame:
    """Hostile-input repairs, each announced: mostly-numeric text columns become numbers (the
    rest missing); identifier columns (a distinct value in every row) are left out."""
    for col in list(X.columns):
        s = X[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        present = s.notna() & ~pd.Series(_blank_values(s), index=s.index)
        if not present.any():
            continue
        conv = pd.to_numeric(s.where(present).astype(object), errors="coerce")
        bad = present & conv.isna()
        share = bad.sum() / present.sum()
        if 0 < share <= 0.05 and present.sum() - bad.sum() >= 5:
            first = s[bad].iloc[0]
            where = _first(X, bad.to_numpy())
            log.warning("%s: column '%s' holds %d value(s) that are not numbers (e.g. %r on %s); "
                        "treating them as missing", source, col, int(bad.sum()), first, where)
            X[col] = conv.astype(float)
    ids = []
    n = len(X)
    for col in X.columns:
        s = X[col]
        if s.isna().any() or n < 2:
            continue
        distinct = s.nunique() == n
        if not distinct:
            continue
        if pd.api.types.is_float_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_integer_dtype(s):
            # Integers that differ in every row may be a real feature (a time step); only a
            # column named like an identifier (id, …_id, pandas' written index) is left out.
            if _ID_NAME.match(col) and n >= MIN_ROWS:
                ids.append(col)
        elif n >= MIN_ROWS_FOR_ID or _ID_NAME.match(col):
            ids.append(col)
    if ids and len(ids) == X.shape[1]:
        raise InputError(f"{source}: no usable feature column: {', '.join(map(repr, ids))} has a "
                         "different value in every row (an identifier); add feature columns")
    for col in ids:
        log.warning("%s: column '%s' has a different value in every row (an identifier, a date "
                    "or free text?); it is left out of the features", source, col)
    return X.drop(columns=ids) if ids else X


def _pick_target(df: pd.DataFrame, target: str | None, source: str) -> str:
    if target is not None:
        if target not in df.columns:
            import difflib

            lower = {c.lower(): c for c in df.columns}
            close = ([lower[target.strip().lower()]] if target.strip().lower() in lower else
                     difflib.get_close_matches(target, list(df.columns), n=1))
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            cols = ", ".join(f"'{c}'" for c in list(df.columns)[:8])
            more = ", …" if df.shape[1] > 8 else ""
            raise InputError(f"{source}: no column named '{target}'{hint}; the columns are "
                             f"{cols}{more}; pass one of them with --target")
        return target
    for name in TARGET_NAMES:
        for col in df.columns:
            if col.lower() == name:
                return col
    return df.columns[-1]


def _pick_task(y: pd.Series, task: str | None, target: str, source: str) -> str:
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric:
        values = y.to_numpy(dtype=float)
        if np.isinf(values).any():
            raise InputError(f"{source}: target '{target}' holds {int(np.isinf(values).sum())} "
                             "infinite value(s); fix or drop those rows")
    if task is not None:
        if task not in ("classification", "regression"):
            raise InputError(f"--task must be 'classification' or 'regression', got '{task}'")
        if task == "regression" and not numeric:
            raise InputError(f"{source}: target '{target}' is not numeric, so it cannot be "
                             "regressed; use --task classification")
        return task
    if not numeric:
        return "classification"
    values = y.to_numpy(dtype=float)
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
            only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
            raise InputError(f"{source}: target '{target}' has a single class ({only!r}); "
                             "a classifier needs at least two")
        counts = y.value_counts()
        rare = counts[counts < MIN_ROWS_PER_CLASS]
        if len(rare) and len(classes) * MIN_ROWS_PER_CLASS > len(y):
            hint = (" pass --task regression if it is a quantity, or" if pd.api.types.is_numeric_dtype(y)
                    else "")
            raise InputError(f"{source}: target '{target}' has {len(classes)} different values in "
                             f"{len(y)} rows, too many classes to learn from;{hint} choose the "
                             "column to predict with --target")
        if len(rare):
            label = rare.index[0].item() if isinstance(rare.index[0], np.generic) else rare.index[0]
            raise InputError(f"{source}: class {label!r} of '{target}' has only "
                             f"{int(rare.iloc[0])} row(s); each class needs at least "
                             f"{MIN_ROWS_PER_CLASS} to split into train, validation and test; "
                             "drop that class or add rows")
    return Table(X.reset_index(drop=True), y.reset_index(drop=True), target, task, classes,
                 numeric, categorical, source)


def split(table: Table, *, seed: int = 0, val: float = 0.2, test: float = 0.2) -> Split:
    """Seeded train/validation/test rows, stratified by class for classification."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32 - 1:
        raise InputError(f"--seed must be a whole number from 0 to {2**32 - 2}, got {seed}")
    idx = np.arange(table.n_rows)
    strat = table.y_codes() if table.task == "classification" else None
    n_classes = len(table.classes) if table.classes else 0
    n_test = max(int(round(test * len(idx))), n_classes)
    n_val = max(int(round(val * len(idx))), n_classes)
    try:
        rest, te = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
        tr, va = train_test_split(rest, test_size=n_val, random_state=seed + 1,
                                  stratify=None if strat is None else strat[rest])
    except ValueError as e:
        raise InputError(f"{table.source}: {table.n_rows} rows are too few to split into training, "
                         f"validation and test rows ({str(e).splitlines()[0]}); add rows") from None
    if len(tr) == 0:
        raise InputError(f"{table.source}: {table.n_rows} rows are too few to split into training, "
                         "validation and test rows; add rows")
    return Split(np.sort(tr), np.sort(va), np.sort(te))


def check_output_folder(out: str | Path, data: str | Path | None = None) -> Path:
    """`--out` is replaced as a whole when the run ends; refuse folders that would lose files.

    Allowed: a path that does not exist, an empty folder, or an earlier doctor output (it holds
    report.json or bundle.json). Refused: a file, a folder with other files in it, a folder
    that holds the data file or the current directory.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder; pass a folder for the reports")
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise InputError(f"--out {out}: is the current folder (or holds it); the doctor replaces "
                         "its --out folder as a whole, so pass a new folder, e.g. --out doctor-out")
    if data is not None:
        d = Path(data).resolve()
        if resolved == d or resolved in d.parents:
            raise InputError(f"--out {out}: holds the data file {data}; the doctor replaces its "
                             "--out folder as a whole, so pass another folder")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not names & {"report.json", "bundle.json", "report.html"}:
            raise InputError(f"--out {out}: is a folder with other files in it; the doctor "
                             "replaces its --out folder as a whole, so pass a new or empty "
                             "folder (or an earlier doctor output)")
    return out
