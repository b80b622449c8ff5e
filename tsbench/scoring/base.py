"""The one scoring interface: items in, flat score rows out.

A scorer is built once (loading its model) and then called on lists of ``ScoreItem``. Anything
that makes a scorer impossible to run (missing package, weights not available offline, no working
worker Python) raises ``ScorerUnavailable`` with a one-line reason, which the runner records as
``not scored: <reason>`` instead of failing the whole run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image


class ScorerUnavailable(RuntimeError):
    """The scorer cannot run here; ``reason`` is a short user-facing explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ScoringInputError(ValueError):
    """Bad input to a scorer or aggregator (missing image, malformed score file, unknown prompt id)."""


@dataclass(frozen=True)
class ScoreItem:
    """One image to score. ``prompt`` is the *original* benchmark prompt (scores are always taken
    against it, also when the image was generated from a rewritten prompt)."""

    prompt_id: str
    sample: int
    image_path: str | Path
    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreRow:
    prompt_id: str
    sample: int
    metric: str
    score: float
    scorer: str
    scorer_version: str
    details: dict[str, Any] | None = None  # e.g. GenEval's reason; omitted from the dict when None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["details"] is None:
            del d["details"]
        return d


@runtime_checkable
class Scorer(Protocol):
    name: str
    metric: str
    version: str

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]: ...


def load_image(path: str | Path) -> "Image.Image":
    """RGB image with EXIF orientation applied (as the GenEval evaluator reads images)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise ScoringInputError(f"image {str(path)!r} does not exist; generate it first") from None
    except OSError as e:
        raise ScoringInputError(f"cannot read image {str(path)!r}: {e}") from None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def batched(items: list[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]
