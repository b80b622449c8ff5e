"""Image layout helpers, atomic image writes and the ``images.jsonl`` sidecar used to resume per image.

Which layout a benchmark uses is the benchmark's choice (``Benchmark.image_path``); these are the
building blocks:

- GenEval's folders: ``<root>/<index:05d>/samples/<n:04d>.png`` plus ``<root>/<index:05d>/metadata.jsonl``
  holding the prompt's official metadata line, so the official ``evaluate_images.py`` reads the folder as is.
- Keyed files: one image per prompt named ``<prompt key>.<ext>``. Extra samples are
  ``<prompt key>_<n>.<ext>`` (n = 1, 2, ...); the name of sample 0 does not depend on the number of
  samples, so raising the sample count later reuses the images already made.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tsbench.io import atomic_write_bytes

from .errors import PromptFileError
from .prompts import Prompt, check_prompt_id

if TYPE_CHECKING:
    from PIL import Image

    from .base import Benchmark

SIDECAR = "images.jsonl"


def geneval_image_path(root: str | Path, index: int | str, sample: int) -> Path:
    return Path(root) / f"{int(index):05d}" / "samples" / f"{sample:04d}.png"


def write_geneval_metadata(root: str | Path, index: int | str, metadata: dict[str, Any]) -> Path:
    """Write the prompt's metadata as the single JSON object the official evaluator ``json.load``s."""
    path = Path(root) / f"{int(index):05d}" / "metadata.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(metadata) + "\n").encode("utf-8"))
    return path


def keyed_image_path(root: str | Path, prompt_id: str, sample: int, ext: str = "png") -> Path:
    check_prompt_id(prompt_id, "image layout")
    if sample < 0:
        raise ValueError(f"sample index must be >= 0, got {sample}")
    return Path(root) / (f"{prompt_id}.{ext}" if sample == 0 else f"{prompt_id}_{sample}.{ext}")


def write_png(image: "Image.Image", path: str | Path) -> Path:
    """Save as PNG atomically: a crash never leaves a truncated PNG under the final name (which resume
    would otherwise take as done)."""
    return _write(image, path, format="PNG")


def write_jpeg(image: "Image.Image", path: str | Path) -> Path:
    """Save as JPEG atomically, with Pillow's default settings (quality 75): what an evaluator that
    saves with ``image.save("<key>.jpeg")`` produces and then reads back."""
    return _write(image.convert("RGB"), path, format="JPEG")


def _write(image: "Image.Image", path: str | Path, **options: Any) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


@dataclass(frozen=True)
class ImageRecord:
    prompt_id: str
    sample: int
    seed: int
    config_hash: str
    path: str  # relative to the output folder, so the folder can be moved
    text_used: str  # "original" | "rewritten"


def append_record(out_dir: str | Path, record: ImageRecord) -> None:
    """Append one line and fsync it, so a record exists only for an image that is fully on disk
    (write the PNG first, then the record). A line torn by an earlier crash is closed first, so the
    new record never merges into it."""
    if record.text_used not in ("original", "rewritten"):
        raise ValueError(f"text_used must be 'original' or 'rewritten', got {record.text_used!r}")
    line = (json.dumps(asdict(record), ensure_ascii=False) + "\n").encode("utf-8")
    with open(Path(out_dir) / SIDECAR, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(out_dir: str | Path) -> Iterator[ImageRecord]:
    """Records in file order. Lines that are not valid JSON are writes torn by a crash: they are
    skipped with a warning (that image is simply made again). A JSON line that is not a record
    means a foreign or edited file and is an error naming the line."""
    path = Path(out_dir) / SIDECAR
    if not path.is_file():
        return
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: ignoring an incomplete line (interrupted write)", stacklevel=2)
            continue
        try:
            yield ImageRecord(**obj)
        except TypeError as e:
            raise PromptFileError(f"{path}:{n}: malformed image record ({e}); fix or delete that line") from None


def done_images(out_dir: str | Path, config_hash: str | None = None) -> set[tuple[str, int]]:
    """(prompt_id, sample) pairs whose image is recorded and still on disk (and, when given, was
    made with ``config_hash``); the generator skips these on resume."""
    out_dir = Path(out_dir)
    return {
        (r.prompt_id, r.sample)
        for r in read_records(out_dir)
        if (config_hash is None or r.config_hash == config_hash) and (out_dir / r.path).is_file()
    }


def save_image(out_dir: str | Path, benchmark: "Benchmark", prompt: Prompt, sample: int, seed: int,
               config_hash: str, image: "Image.Image") -> Path:
    """Store one generated image in the benchmark's layout and record it for resume, in the order that
    keeps a crash harmless: the benchmark's files (image, and e.g. GenEval's metadata), then the sidecar line."""
    out_dir = Path(out_dir)
    path = benchmark.write_image(out_dir, prompt, sample, image)
    append_record(out_dir, ImageRecord(prompt.id, sample, seed, config_hash, path.relative_to(out_dir).as_posix(),
                                       prompt.text_used))
    return path


@contextmanager
def sidecar_lock(image_root: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder's ``images.jsonl``, so that processes (torchrun ranks on one
    node or on a shared file system) append whole lines one at a time and never read a line being written."""
    image_root = Path(image_root)
    image_root.mkdir(parents=True, exist_ok=True)
    fd = os.open(image_root / SIDECAR, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # also releases the lock
