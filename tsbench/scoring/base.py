"""The one scoring interface: items in, flat score rows out.

A scorer is built once (loading its model) and then called on lists of ``ScoreItem``. Anything
that makes a scorer impossible to run (missing package, weights not available offline, no working
worker Python) raises ``ScorerUnavailable`` with a one-line reason, which the runner records as
``not scored: <reason>`` instead of failing the whole run.

Besides ``score``, a scorer class declares what generic code needs to know without building it (see
``Scorer``): its metric, how its scores aggregate, their direction, what it needs from the run, and
which scoring model its options select (the key that decides which published rows it may stand beside).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, runtime_checkable

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


AGGREGATIONS = ("official", "mean")
NEEDS = ("data_dir", "python")


@runtime_checkable
class Scorer(Protocol):
    """``name``: the registry name, also the scorer's column namespace ``quality.<name>.*``.
    ``metric``: what one row's score is (``vqascore``, ``geneval``, ...), matched against published rows.
    ``aggregation``: ``"official"`` = the benchmark's own summary rule; ``"mean"`` = the mean over prompts.
    ``higher_is_better``: the direction of the score.
    ``needs``: from ``NEEDS``; the runner passes ``data_dir`` (the benchmark's files) and ``python`` (the
    interpreter of a separate environment, ``--scorer-python``) unless the scorer's options set them.
    ``caveat``: shown beside every number the scorer produced (empty when none).
    ``measured_with(options)``: the scoring model the options select, e.g. ``clip-flant5-xxl``.
    ``version`` (instance): everything that determines the score, recorded with every row."""

    name: ClassVar[str]
    metric: ClassVar[str]
    aggregation: ClassVar[str]
    higher_is_better: ClassVar[bool]
    needs: ClassVar[tuple[str, ...]]
    caveat: ClassVar[str]
    version: str

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str: ...

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]: ...


def option_text(options: Mapping[str, Any]) -> str:
    """' (k=v, ...)' for non-default options, '' for none: part of a ``measured_with`` string."""
    return f" ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})" if options else ""


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
