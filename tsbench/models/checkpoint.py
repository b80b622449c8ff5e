"""Safe checkpoint reading: safetensors, or torch.load(weights_only=True); nothing else executes."""
from __future__ import annotations

import argparse
import functools
import hashlib
import pickle
import warnings
from pathlib import Path

import torch

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model; the message says why."""


def file_digest(path: str | Path, length: int = 12) -> str:
    """Short sha256 of a weights file: the ``weights`` field of every result row. Memoised per (path, size,
    mtime): every sweep cell loads the model again, and multi-GB files are hashed once per process."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)[:length]


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: list[Path], length: int = 12) -> str:
    """Short sha256 over several files (a sharded checkpoint), by name and content."""
    h = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        h.update(f"{path.name}\0{file_digest(path, 64)}\0".encode())
    return h.hexdigest()[:length]


def read_tensors(path: str | Path, *, allow_pickled_args: bool = False) -> dict:
    """Load a checkpoint file without executing pickled code.

    LlamaGen's training scripts pickle their ``argparse.Namespace`` beside the weights; that one class
    is accepted only with ``allow_pickled_args=True`` (and a warning), never anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format {path.suffix!r}; use .safetensors, or a torch file "
            f"({', '.join(TORCH_SUFFIXES)}) that holds only tensors"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace] if allow_pickled_args else []):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickled_args and "argparse.Namespace" in str(err):
            raise CheckpointError(
                f"{path}: refused: it pickles an argparse.Namespace (LlamaGen training 'args'). If you trust the "
                f"file, pass --allow-pickled-args (allow_pickled_args=True) to allow that one class; nothing "
                f"else will be unpickled."
            ) from None
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects other than tensors, and tsbench never "
            f"executes pickled code. Re-save it with safetensors or a plain dict of tensors. ({err})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
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
        raise CheckpointError(f"{source}: checkpoint does not match the model; " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=not missing_ok, assign=any(p.is_meta for p in module.parameters()))


def _shorten(keys: list[str], limit: int = 10) -> str:
    return ", ".join(keys[:limit]) + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")
