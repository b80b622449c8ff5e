"""Pieces shared by the adapters that wrap Hugging Face ``transformers`` models (Janus, Emu3).

transformers is an optional dependency (the ``hf`` extra): it is imported only when such a model is
built. A checkpoint is a local directory in the Hugging Face layout, loaded with ``local_files_only``;
what is missing from it is named before anything loads. tsbench drives the language model itself, one
prefill and one forward per decode step, with a ``DynamicCache`` that holds exactly the positions fed so
far (so attention reads the real prefix, as the analytic FLOP model assumes).
"""
from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tsbench.config.registry import unknown_name
from tsbench.models.base import DecodeState
from tsbench.models.checkpoint import CheckpointError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def transformers_module(adapter: str) -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"adapter {adapter!r} wraps transformers: pip install 'tsbench[hf]'") from err
    return transformers


def checkpoint_files(path: str | Path, adapter: str, model_type: str, hint: str) -> list[Path]:
    """The weight files of a local Hugging Face checkpoint directory, after checking that it holds a
    ``config.json`` of ``model_type``, all weight shards and a tokenizer; the error names what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory; a {adapter} checkpoint is a Hugging Face model "
                              f"directory ({hint})")
    missing, weights = [], []
    if not (root / "config.json").is_file():
        missing.append("config.json")
    if (root / "model.safetensors").is_file():
        weights = [root / "model.safetensors"]
    elif (root / "model.safetensors.index.json").is_file():
        shards = sorted(set(json.loads((root / "model.safetensors.index.json").read_text())["weight_map"].values()))
        weights = [root / s for s in shards]
        missing += [f"{s} (listed in model.safetensors.index.json)" for s in shards if not (root / s).is_file()]
    else:
        missing.append("model.safetensors (or model.safetensors.index.json and its shards)")
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise CheckpointError(f"{root}: incomplete {adapter} checkpoint, missing {', '.join(missing)} ({hint})")
    found = json.loads((root / "config.json").read_text()).get("model_type")
    if found != model_type:
        raise CheckpointError(f"{root}: config.json has model_type {found!r}, adapter {adapter!r} reads "
                              f"{model_type!r} checkpoints in the transformers layout ({hint})")
    return weights


def checkpoint_config(path: str | Path, adapter: str, model_type: str, hint: str, config_class: type) -> Any:
    """The config of a local checkpoint directory, after checkpoint_files' layout checks; reads no weights
    (the load-time checks learn a checkpoint's VQ from it)."""
    try:
        checkpoint_files(path, adapter, model_type, hint)
        return config_class.from_pretrained(str(path), local_files_only=True)
    except CheckpointError:
        raise
    except (OSError, ValueError) as err:  # an unreadable config.json
        raise CheckpointError(f"{Path(path) / 'config.json'}: not a readable {adapter} config ({err}); "
                              f"expected {hint}", path) from None


def preset_spec(adapter: str, name: str, presets: dict[str, Any]) -> Any:
    if name not in presets:
        raise ValueError(unknown_name(f"{adapter} preset", name, presets))
    return presets[name]


def checkpoint_preset(adapter: str, preset: str | None, presets: dict[str, Any], text_config: Any, path: Path) -> str:
    """The name a checkpoint's rows carry: the preset when given, which must then describe the checkpoint's
    backbone (width and depth), else the directory's name."""
    if preset is None:
        return path.name
    want = preset_spec(adapter, preset, presets)
    if (want.hidden, want.layers) != (text_config.hidden_size, text_config.num_hidden_layers):
        raise CheckpointError(f"{path}: a {text_config.num_hidden_layers}-layer, {text_config.hidden_size}-wide "
                              f"checkpoint, not preset {preset!r} ({want.layers} layers, width {want.hidden})")
    return preset


def load_pretrained(model_class: type, path: str | Path, dtype: torch.dtype | None) -> nn.Module:
    """``from_pretrained`` offline; a missing or unexpected weight is an error, not a warning."""
    model, info = model_class.from_pretrained(str(path), local_files_only=True, dtype=dtype or torch.float32,
                                              output_loading_info=True)
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not match {model_class.__name__}: "
                              + "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v[:8]))}"
                                          for k, v in problems.items()))
    return model


def build_random(model_class: type, config: Any, device: str | torch.device) -> nn.Module:
    """A randomly initialised model (transformers' own init, from torch's seeded generator), built
    directly on ``device``; on ``meta`` nothing is allocated."""
    with torch.device(device):
        return model_class(config)


def _cache_kwarg(lm: nn.Module) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` during 5.x; pass whichever this version reads.
    Looked up once per model class, not at every decode step."""
    return _cache_kwarg_of(type(lm))


@functools.cache
def _cache_kwarg_of(lm_class: type) -> str:
    return "cache" if "cache" in inspect.signature(lm_class.forward).parameters else "past_key_values"


def prefill(lm: nn.Module, embeds: torch.Tensor, mask: torch.Tensor,
            grid: tuple[int, int]) -> tuple[DecodeState, torch.Tensor]:
    """Run the prompt through the language model into a fresh cache; positions skip left padding
    (transformers' convention: cumulative sum of the mask)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.config)
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    hidden = lm(inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions, use_cache=True,
                **{_cache_kwarg(lm): cache}).last_hidden_state
    state = DecodeState(cache=cache, grid=grid, positions=positions[:, -1] + 1, extra={"mask": mask.long()})
    return state, hidden


def extend(lm: nn.Module, state: DecodeState, embeds: torch.Tensor) -> torch.Tensor:
    """Feed ``embeds`` [rows, q, d] after the cached positions; return their hidden states."""
    q = embeds.shape[1]
    mask = torch.cat([state.extra["mask"], state.extra["mask"].new_ones(embeds.shape[0], q)], dim=1)
    positions = state.positions[:, None] + torch.arange(q, device=embeds.device)
    hidden = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                **{_cache_kwarg(lm): state.cache}).last_hidden_state
    state.extra["mask"], state.positions = mask, state.positions + q
    return hidden
