"""The benchmark seam: everything tsbench knows about one prompt benchmark lives in one object.

A ``Benchmark`` owns its prompts and data files, its official image layout, its tags and their order,
its summary rule (how per-image scores become its table) and how its published numbers were measured.
Generic code (config, runner, report, CLI) only talks to this interface, and adding a benchmark is one
module with one object plus one line in ``registry.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .layout import keyed_image_path, write_png
from .prompts import Prompt, PromptSet

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Aggregate:
    """One number of a benchmark's table. One group: the mean over its members (pooled); several
    groups: the unweighted mean of the groups' means (GenEval's overall = mean of the six tags).
    ``complete_only``: left out of a partial summary (an overall over some tags is no overall)."""

    name: str
    groups: tuple[tuple[str, ...], ...]
    complete_only: bool = False

    @property
    def members(self) -> set[str]:
        return {pid for group in self.groups for pid in group}


@dataclass(frozen=True)
class SummaryRule:
    """How a benchmark's official script aggregates. ``unit``: ``"prompt"`` averages each prompt's mean
    score (t2v_metrics); ``"image"`` averages over all images of a group (GenEval's fraction of correct
    images). ``binary``: scores must be 0 or 1."""

    aggregates: tuple[Aggregate, ...]
    unit: str = "prompt"
    binary: bool = False

    def __post_init__(self) -> None:
        if self.unit not in ("prompt", "image"):
            raise ValueError(f"summary unit must be 'prompt' or 'image', got {self.unit!r}")


@dataclass(frozen=True)
class PublishedMetric:
    """How the published rows of one ``metric`` (``baselines/*.csv``) were measured: the run metric they
    correspond to and the scoring model, as a scorer's ``measured_with`` names it. A run column stands
    beside them only when both match."""

    metric: str
    measured_with: str


def tags_in_order(prompts: PromptSet, order: tuple[str, ...] = ()) -> list[str]:
    """The tags the prompts carry: those in ``order`` first, then the others in first-seen order."""
    seen = list(dict.fromkeys(tag for p in prompts for tag in p.tags))
    return [t for t in order if t in seen] + [t for t in seen if t not in order]


def members(prompts: PromptSet, tag: str) -> tuple[str, ...]:
    return tuple(p.id for p in prompts if tag in p.tags)


@dataclass(frozen=True)
class Benchmark:
    """Defaults fit a custom prompt set: keyed PNG layout, per-tag means and the mean over all prompts."""

    name: str
    title: str
    protocol: str = ""  # the default protocol in one line, as the README's table of suites gives it
    versions: tuple[str, ...] = ()  # () = unversioned
    default_version: str | None = None
    tags: tuple[str, ...] = ()  # official order of the summary (without "overall")
    published: Mapping[str, PublishedMetric] = field(default_factory=dict)
    needs_path: bool = False  # the prompts come from quality.path, not from official files

    # ---- prompts and data -------------------------------------------------------------------------
    def check(self, version: str | None, path: str | None) -> tuple[str, str] | None:
        """(field, message) when ``version`` or ``path`` cannot work, so a suite fails when it loads."""
        if self.versions and version is not None and str(version) not in self.versions:
            return "version", (f"{self.title} has no version {version!r}; choose one of {', '.join(self.versions)} "
                               f"(default {self.default_version})")
        if not self.versions and version is not None and not self.needs_path:
            return "version", f"{self.title} has one prompt set; drop quality.version"
        if self.needs_path and not path:
            return "path", f"is required when benchmark is {self.name!r} (the prompt file)"
        if not self.needs_path and path:
            return "path", f"{self.title} reads its own prompts; drop quality.path (use data_dir for its files)"
        return None

    def version(self, version: str | int | None) -> str | None:
        return self.default_version if version is None else str(version)

    def load(self, version: str | None, data_dir: str | Path | None, path: str | Path | None) -> PromptSet:
        raise NotImplementedError

    def dataset(self, version: str | None) -> str | None:
        """Name of the data set ``tsbench data fetch`` downloads for this version, or None."""
        return None

    def label(self, version: str | None, prompts: int | None) -> str:
        """e.g. 'GenAI-Bench 1600 (1,600 prompts)': every table and plot says which prompt set it is."""
        name = f"{self.title} {version}" if version and len(self.versions) > 1 else self.title
        return f"{name} ({prompts:,} prompts)" if prompts else name

    # ---- summary ----------------------------------------------------------------------------------
    def summary_rule(self, prompts: PromptSet, metric: str) -> SummaryRule:
        tags = [Aggregate(tag, (members(prompts, tag),)) for tag in tags_in_order(prompts, self.tags)]
        overall = Aggregate("overall", (tuple(p.id for p in prompts),), complete_only=True)
        return SummaryRule((*tags, overall))

    # ---- images -----------------------------------------------------------------------------------
    def image_path(self, root: str | Path, prompt_id: str, sample: int) -> Path:
        return keyed_image_path(root, prompt_id, sample)

    def write_image(self, root: str | Path, prompt: Prompt, sample: int, image: "Image.Image") -> Path:
        """Store one image where and how the official evaluator reads it; returns its path."""
        return write_png(image, self.image_path(root, prompt.id, sample))
