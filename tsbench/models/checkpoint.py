"""Safe checkpoint reading: safetensors, or torch.load(weights_only=True); nothing else executes."""
from __future__ import annotations

import argparse
import functools
import hashlib
import pickle
import warnings
from pathlib import Path

import torch

from tsbench.io import file_sha256

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
TENSOR_FILE_LAYOUT = (f"a .safetensors file, or a torch file ({', '.join(TORCH_SUFFIXES)}) holding a dict of "
                      "tensors (torch.save's zip format)")
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy format, a pickle (protocol >= 2)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model; the message names the file and
    says why. ``path`` is the file (or directory) at fault, so a caller can name the option it came from."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def file_digest(path: str | Path, length: int = 12) -> str:
    """Short sha256 of a weights file: the ``weights`` field of every result row. Memoised per (path, size,
    mtime): every sweep cell loads the model again, and multi-GB files are hashed once per process."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)[:length]


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def files_digest(paths: list[Path], length: int = 12) -> str:
    """Short sha256 over several files (a sharded checkpoint), by name and content."""
    h = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        h.update(f"{path.name}\0{file_digest(path, 64)}\0".encode())
    return h.hexdigest()[:length]


def check_tensor_file(path: str | Path, expected: str = TENSOR_FILE_LAYOUT) -> Path:
    """Cheap checks before any tensor is read: the file exists, has a known format and a readable header
    (safetensors) or torch's signature. A wrong or damaged file then fails in a second, naming the file
    and ``expected`` (the layout the caller wants), not with the reader's bare error."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise CheckpointError(f"{path}: checkpoint file {what}; expected {expected}", path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err}); expected {expected}",
                                  path) from None
    elif path.suffix in TORCH_SUFFIXES:
        with open(path, "rb") as f:
            head = f.read(4)
        if not head.startswith(_TORCH_MAGIC):
            kind = "an empty file" if not head else "neither a torch.save zip archive nor a pickle"
            raise CheckpointError(f"{path}: not a torch checkpoint ({kind}); expected {expected}", path)
    else:
        raise CheckpointError(f"{path}: unsupported checkpoint format {path.suffix!r}; expected {expected}", path)
    return path


def read_tensors(path: str | Path, *, allow_pickled_args: bool = False, expected: str = TENSOR_FILE_LAYOUT) -> dict:
    """Load a checkpoint file without executing pickled code; every failure is a CheckpointError naming
    the file and ``expected``.

    LlamaGen's training scripts pickle their ``argparse.Namespace`` beside the weights; that one class
    is accepted only with ``allow_pickled_args=True`` (and a warning), never anything else.
    """
    path = check_tensor_file(path, expected)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: damaged safetensors file ({err}); expected {expected}", path) from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace] if allow_pickled_args else []):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickled_args and "argparse.Namespace" in str(err):
            raise CheckpointError(
                f"{path}: refused: it pickles an argparse.Namespace (LlamaGen training 'args'). If you trust the "
                f"file, pass --allow-pickled-args (allow_pickled_args=True) to allow that one class; nothing "
                f"else will be unpickled.", path
            ) from None
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects other than tensors, and tsbench never "
            f"executes pickled code. Re-save it with safetensors or a plain dict of tensors. ({err})", path
        ) from None
    except (RuntimeError, EOFError, OSError) as err:  # a truncated or damaged archive
        reason = str(err).splitlines()[0] if str(err) else "truncated"
        raise CheckpointError(f"{path}: damaged torch checkpoint ({reason}); expected {expected}", path) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}", path)
    pickled = sorted(key for key, value in obj.items() if isinstance(value, argparse.Namespace))
    if pickled:
        warnings.warn(f"{path}: unpickled argparse.Namespace under {pickled} (allow_pickled_args=True); ignored",
                      stacklevel=2)
    return obj


def unwrap_state_dict(obj: dict, keys: tuple[str, ...] = ("model", "module", "state_dict")) -> dict:
    """Training scripts nest the weights under one of ``keys``; return the tensor dict."""
    for key in keys:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def load_strict(module: torch.nn.Module, state_dict: dict, source: str, ignore: tuple[str, ...] = (),
                missing_ok: tuple[str, ...] = ()) -> None:
    """load_state_dict that names every missing, unexpected and mis-shaped key in one clear error.

    ``missing_ok``: key prefixes the checkpoint may lack (new modules around a trained backbone); those
    keep the module's own initialisation.
    """
    state_dict = {k: v for k, v in state_dict.items() if k not in ignore}
    expected = module.state_dict()
    missing = sorted(k for k in expected.keys() - state_dict.keys() if not k.startswith(missing_ok or ("\0",)))
    unexpected = sorted(state_dict.keys() - expected.keys())
    mismatched = [f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
                  for key in sorted(expected.keys() & state_dict.keys())
                  if tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    problems = [f"{label}: {_shorten(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match the model; " + "; ".join(problems), source)
    module.load_state_dict(state_dict, strict=not missing_ok, assign=any(p.is_meta for p in module.parameters()))


def _shorten(keys: list[str], limit: int = 10) -> str:
    return ", ".join(keys[:limit]) + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")
