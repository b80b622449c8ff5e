"""Safe checkpoint reading: safetensors, or torch.load(weights_only=True); nothing else executes."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model; the message says why."""


def file_digest(path: str | Path, length: int = 12) -> str:
    """Short sha256 of a weights file: the ``weights`` field of every result row."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def read_tensors(path: str | Path, *, safe_globals: tuple = ()) -> dict:
    """Load a checkpoint file without executing pickled code.

    ``safe_globals`` lists the only non-tensor classes allowed (e.g. argparse.Namespace for LlamaGen
    training checkpoints, and only when the user opted in).
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
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: the file pickles Python objects other than tensors, and tsbench never "
            f"executes pickled code. Re-save it with safetensors or a plain dict of tensors. ({err})"
        ) from None


def unwrap_state_dict(obj: dict, keys: tuple[str, ...] = ("model", "module", "state_dict")) -> dict:
    """Training scripts nest the weights under one of ``keys``; return the tensor dict."""
    for key in keys:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def load_strict(module: torch.nn.Module, state_dict: dict, source: str, ignore: tuple[str, ...] = ()) -> None:
    """load_state_dict that names every missing and unexpected key in one clear error."""
    state_dict = {k: v for k, v in state_dict.items() if k not in ignore}
    expected = set(module.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: checkpoint does not match the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}"
        )
    for key, tensor in module.state_dict().items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(state_dict[key].shape)}, the model expects {tuple(tensor.shape)}"
            )
    module.load_state_dict(state_dict, strict=True, assign=any(p.is_meta for p in module.parameters()))
