"""Published quality numbers (``baselines/*.csv``), so a report can set a run's scores beside them."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

COLUMNS = ["model", "type", "params", "benchmark", "version_note", "metric", "tag", "value",
           "prompt_rewriting", "source", "notes"]
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "baselines"


def load_baselines(directory: str | Path | None = None) -> pd.DataFrame:
    """Every baseline CSV of ``directory`` (default: the repository's ``baselines/``) in one frame.

    A missing folder gives an empty frame and a warning rather than an error: an installed wheel has no
    ``baselines/``, and a report without published numbers is still a report.
    """
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    files = sorted(directory.glob("*.csv")) if directory.is_dir() else []
    if not files:
        warnings.warn(f"no baseline CSV files in {directory}; reports will show no published numbers",
                      stacklevel=2)
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in COLUMNS})
    frame = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"baseline files in {directory} lack columns {missing}")
    frame = frame[COLUMNS]
    frame["value"] = pd.to_numeric(frame["value"])
    # empty = the source does not say; kept distinct from false
    frame["prompt_rewriting"] = frame["prompt_rewriting"].map({"true": True, "false": False}).astype("boolean")
    return frame


def rewritten(row: pd.Series) -> bool | None:
    """Whether the row's images came from rewritten prompts; None where the source does not say."""
    value = row.get("prompt_rewriting")
    return None if pd.isna(value) else bool(value)


def label(row: pd.Series) -> str:
    """Display name: Token-Shuffle's own convention marks rewritten-prompt results with a dagger."""
    return f"{row['model']}†" if rewritten(row) else str(row["model"])
