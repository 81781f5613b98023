"""The model bundle `doctor predict` uses: weights, how to rebuild the network, preprocessing.

`model.pt` holds only a state dict and is loaded with `torch.load(..., weights_only=True)`;
everything else (recipe, preprocessing state, columns, classes, versions) is JSON. Nothing is
unpickled. A user's own network is rebuilt by importing their `FILE.py:FUNC` again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from doctor.api import predict_arrays
from doctor.errors import InputError
from doctor.models import SeedEnsemble
from doctor.preprocess import Preprocessor
from doctor.recipe import Recipe

FORMAT = "doctor-bundle/1"
log = logging.getLogger(__name__)


@dataclass
class Bundle:
    model: nn.Module
    recipe: Recipe
    pre: Preprocessor
    task: str
    target: str
    classes: list | None
    y_mean: float = 0.0
    y_std: float = 1.0
    temperature: float = 1.0

    def save(self, out: Path, *, extra: dict[str, Any] | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, out / "model.pt")
        meta = {"format": FORMAT, "recipe": self.recipe.as_dict(), "preprocessor": self.pre.to_dict(),
                "task": self.task, "target": self.target,
                "classes": None if self.classes is None else [_plain(c) for c in self.classes],
                "n_features": len(self.pre.feature_names_out_),
                "n_outputs": len(self.classes) if self.classes else 1,
                "y_mean": self.y_mean, "y_std": self.y_std, "temperature": self.temperature,
                "members": len(self.model.members) if isinstance(self.model, SeedEnsemble) else 1,
                **(extra or {})}
        (out / "bundle.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, out: str | Path) -> Bundle:
        out = Path(out)
        meta_path, weights = out / "bundle.json", out / "model.pt"
        if not out.is_dir() or not meta_path.exists() or not weights.exists():
            raise InputError(f"{out}: not a doctor bundle (no bundle.json and model.pt); pass the "
                             "--out folder of a finished `doctor fit`")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            raise InputError(f"{meta_path}: damaged bundle metadata; run `doctor fit` again") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise InputError(f"{meta_path}: unknown bundle format {found!r}; pass the --out "
                             "folder of a finished `doctor fit`")
        needed = ("recipe", "preprocessor", "task", "target", "classes", "n_features",
                  "n_outputs", "y_mean", "y_std")
        lacking = [k for k in needed if k not in meta]
        if lacking:
            raise InputError(f"{meta_path}: damaged bundle metadata (no {', '.join(lacking)}); run "
                             "`doctor fit` again")
        try:
            recipe = Recipe.from_dict(meta["recipe"])
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{meta_path}: damaged bundle metadata ({type(e).__name__}: {e}); run "
                             "`doctor fit` again") from None
        members = meta.get("members", 1)
        if not isinstance(members, int) or members < 1:
            raise InputError(f"{meta_path}: damaged bundle metadata (members {members!r}); run "
                             "`doctor fit` again")
        nets = [recipe.build(meta["n_features"], meta["n_outputs"]) for _ in range(members)]
        net = nets[0] if members == 1 else SeedEnsemble(nets, meta["task"])
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:
            raise InputError(f"{weights}: cannot load the weights ({type(e).__name__}); the bundle "
                             "is damaged or the model file changed since `doctor fit`") from None
        return cls(net, recipe, Preprocessor.from_dict(meta["preprocessor"]), meta["task"],
                   meta["target"], meta["classes"], meta["y_mean"], meta["y_std"],
                   meta.get("temperature", 1.0))

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """A frame with `prediction` (original labels) and one `proba_<class>` per class.

        Missing feature columns end with an `InputError` naming them; extra columns are ignored,
        text in a numeric column and categories never seen in training are read as missing
        (each with a warning naming the column and the first row)."""
        df = df.copy()
        df.columns = [str(c).strip() for c in df.columns]
        df = df.drop(columns=[self.target], errors="ignore")
        expected = self.pre.numeric_ + self.pre.categorical_
        missing = [c for c in expected if c not in df.columns]
        # columns the preprocessing left out on purpose (constant, leaking) are expected extras
        dropped = set(getattr(self.pre, "dropped_", {}))
        extra = [c for c in df.columns if c not in expected and c not in dropped]
        if missing:
            more = f"; unexpected columns: {', '.join(map(repr, extra[:5]))}" if extra else ""
            raise InputError(f"the CSV lacks column(s) the model was trained on: "
                             f"{', '.join(map(repr, missing[:5]))}{', …' if len(missing) > 5 else ''}"
                             f"{more}; add them")
        if len(df) == 0:
            raise InputError("the CSV has no rows to predict; pass rows with the feature columns")
        if extra:
            log.warning("ignoring column(s) the model was not trained on: %s%s",
                        ", ".join(map(repr, extra[:5])), ", …" if len(extra) > 5 else "")
        df = df[expected].copy()
        for col in self.pre.numeric_:
            s = df[col]
            if pd.api.types.is_bool_dtype(s):
                df[col] = s.astype(float)
                continue
            if pd.api.types.is_numeric_dtype(s):
                continue
            conv = pd.to_numeric(s.astype(object), errors="coerce")
            bad = s.notna().to_numpy() & conv.isna().to_numpy()
            bad &= ~np.array([isinstance(v, str) and not v.strip() for v in s.astype(object)],
                             dtype=bool)
            if bad.any():
                log.warning("column '%s' holds %d value(s) that are not numbers (e.g. %r at %s); "
                            "predicting with them as missing", col, int(bad.sum()),
                            s[bad].iloc[0], _where(df, bad))
            df[col] = conv.astype(float)
        for col in self.pre.categorical_:
            s = df[col]
            known = set(self.pre.categories_[col])
            unseen = s.notna().to_numpy() & ~s.astype(str).isin(known).to_numpy()
            if unseen.any():
                log.warning("column '%s' has %d value(s) not seen in training (e.g. %r at %s); "
                            "they are treated as unknown", col, int(unseen.sum()),
                            s[unseen].iloc[0], _where(df, unseen))
        X = self.pre.transform(df[expected])
        pred, proba = predict_arrays(self.model, X, self.task, y_mean=self.y_mean, y_std=self.y_std,
                                     temperature=self.temperature)
        if self.task == "classification":
            out = pd.DataFrame({"prediction": [self.classes[i] for i in pred]})
            for j, c in enumerate(self.classes):
                out[f"proba_{c}"] = proba[:, j]
            return out
        return pd.DataFrame({"prediction": pred})


def _where(df: pd.DataFrame, mask: np.ndarray) -> str:
    first = df.index[np.asarray(mask, dtype=bool)][0]
    return f"file line {first}" if df.attrs.get("doctor_lines") else f"row {first}"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
