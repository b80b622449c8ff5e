"""Where the official benchmark files live, and how to download them.

tsbench never ships the official prompt files; it finds them (explicit folder, ``TSBENCH_DATA``,
the cache) or downloads them from their public URLs with ``tsbench data fetch <name>``. Files whose
official SHA-256 is known are verified on download and on load, so a score is never computed on a
silently different prompt set.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tsbench.io import atomic_write_text, file_sha256

from .errors import DataFetchError, DataNotFoundError

GENEVAL_COMMIT = "af4902f24d3ca90ebbb446dd9891a59e0f82725f"
_GENEVAL_RAW = f"https://raw.githubusercontent.com/djghosh13/geneval/{GENEVAL_COMMIT}/prompts"
_HF = "https://huggingface.co/datasets"


@dataclass(frozen=True)
class DataFile:
    name: str
    url: str
    sha256: str | None  # None: no pinned official checksum; the downloaded one is recorded instead
    required: bool = True


@dataclass(frozen=True)
class Dataset:
    name: str
    subdir: str  # relative folder under a data root; matches the layout of shared/data
    files: tuple[DataFile, ...]

    def required(self) -> list[str]:
        return [f.name for f in self.files if f.required]

    def pinned(self) -> dict[str, str]:
        return {f.name: f.sha256 for f in self.files if f.sha256}


DATASETS: dict[str, Dataset] = {
    "geneval": Dataset("geneval", "geneval", (
        DataFile("evaluation_metadata.jsonl", f"{_GENEVAL_RAW}/evaluation_metadata.jsonl",
                 "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"),
        DataFile("object_names.txt", f"{_GENEVAL_RAW}/object_names.txt",
                 "608f6a0e5c8ca1c7a92b818430141fe268c85b7930b50f4160f1d65893b5bacd"),
        DataFile("generation_prompts.txt", f"{_GENEVAL_RAW}/generation_prompts.txt",
                 "55b6e3650e980c13daf30569eb666e000faf19bfc2b7b4cbe999fcdb7aa9d680", required=False),
    )),
    # GenAI-Bench: the released Hugging Face files have no published checksum (the copies in
    # shared/data are pre-release / third-party copies), so the SHA-256 of each download is recorded.
    "genai-bench-527": Dataset("genai-bench-527", "genai_bench/GenAI-Bench-527", (
        DataFile("genai_image.json", f"{_HF}/zhiqiulin/GenAI-Bench-527/resolve/main/genai_image.json", None),
        DataFile("genai_skills.json", f"{_HF}/zhiqiulin/GenAI-Bench-527/resolve/main/genai_skills.json", None),
        DataFile("prompts.txt", f"{_HF}/zhiqiulin/GenAI-Bench-527/resolve/main/prompts.txt", None,
                 required=False),
    )),
    "genai-bench-1600": Dataset("genai-bench-1600", "genai_bench/GenAI-Bench-1600", (
        DataFile("genai_image.json", f"{_HF}/BaiqiL/GenAI-Bench-1600/resolve/main/genai_image.json", None),
        DataFile("genai_skills.json", f"{_HF}/BaiqiL/GenAI-Bench-1600/resolve/main/genai_skills.json", None),
    )),
}

MANIFEST = "fetch_manifest.json"


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataNotFoundError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def cache_dir() -> Path:
    """``$TSBENCH_CACHE/data``, default ``~/.cache/tsbench/data``."""
    root = os.environ.get("TSBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tsbench")
    return Path(root) / "data"


def _holding_folder(ds: Dataset, base: Path) -> Path | None:
    """``base/<subdir>`` or ``base`` itself, whichever holds all required files."""
    for folder in (base / ds.subdir, base):
        if all((folder / f).is_file() for f in ds.required()):
            return folder
    return None


def resolve_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder holding the files of data set ``name``.

    Search order: ``data_dir`` (strict: when given, nothing else is searched, so an explicit choice is
    never silently replaced), then ``$TSBENCH_DATA``, then the cache. Each base may be a data root
    (with ``<subdir>/`` below it, like shared/data) or the folder holding the files itself.
    """
    ds = dataset(name)
    if data_dir is not None:
        candidates = [("--data-dir", Path(data_dir))]
    else:
        candidates = [("TSBENCH_DATA", Path(v)) for v in [os.environ.get("TSBENCH_DATA")] if v]
        candidates.append(("cache", cache_dir()))
    for _, base in candidates:
        folder = _holding_folder(ds, base)
        if folder is not None:
            verify(ds, folder)
            return folder
    looked = "; ".join(f"{src}: {base / ds.subdir} and {base}" for src, base in candidates)
    raise DataNotFoundError(
        f"the {name} files ({', '.join(ds.required())}) were not found (looked in {looked}). "
        f"Run `tsbench data fetch {name}` to download them into the cache, or set TSBENCH_DATA "
        f"(or pass --data-dir) to a folder that holds those files (or holds them under {ds.subdir}/)."
    )


def verify(ds: Dataset, folder: Path) -> None:
    """Refuse official-name files whose content differs from the pinned official checksum."""
    for fname, want in ds.pinned().items():
        path = folder / fname
        if path.is_file() and (got := file_sha256(path)) != want:
            raise DataNotFoundError(
                f"{path} has SHA-256 {got}, but the official {ds.name} file has {want}. Re-download it with "
                f"`tsbench data fetch {ds.name} --force`; for your own prompts use the jsonl/txt suites instead."
            )


def fetch(name: str, dest: str | Path | None = None, *, force: bool = False, timeout: float = 60.0) -> Path:
    """Download the files of ``name`` into ``<dest>/<subdir>`` (dest defaults to the cache).

    Each file is written to a temporary file in the target folder and moved into place with
    ``os.replace`` only after its checksum was verified, so an interrupted download never leaves a
    partial file under the official name. Returns the folder.
    """
    ds = dataset(name)
    folder = Path(dest if dest is not None else cache_dir()) / ds.subdir
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for f in ds.files:
        target = folder / f.name
        if target.is_file() and not force and (f.sha256 is None or file_sha256(target) == f.sha256):
            continue
        manifest[f.name] = {
            "url": f.url,
            "sha256": _download(f, target, timeout),
            "pinned": f.sha256 is not None,
            "fetched_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder


def _download(f: DataFile, target: Path, timeout: float) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=target.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(f.url, timeout=timeout) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as e:
                raise DataFetchError(
                    f"downloading {f.url} failed ({e}). Check the network connection, or download the file "
                    f"by hand and save it as {target}"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if f.sha256 is not None and got != f.sha256:
            raise DataFetchError(
                f"{f.url} has SHA-256 {got}, expected {f.sha256}; the file was not saved. The upstream file "
                "changed or the download was corrupted; retry, or report it if it persists"
            )
        os.replace(tmp, target)
        return got
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
