"""Model adapters. Registered by string so that ``import tsbench`` imports no adapter's heavy code."""
from __future__ import annotations

from typing import Any

import torch

from tsbench.config.registry import Registry
from tsbench.models.base import ARImageModel

ADAPTERS: Registry = Registry("adapter")
ADAPTERS.register("token-shuffle", "tsbench.models.token_shuffle:build_token_shuffle")
ADAPTERS.register("llamagen", "tsbench.models.llamagen:build_llamagen")
ADAPTERS.register("llamagen-ts", "tsbench.models.llamagen:build_llamagen_ts")

PRESET_TABLES = {
    "token-shuffle": "tsbench.models.token_shuffle:preset_names",
    "llamagen": "tsbench.models.llamagen:LLAMAGEN_CONFIGS",
    "llamagen-ts": "tsbench.models.llamagen:LLAMAGEN_CONFIGS",
}

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(adapter: str, preset: str | None = None, checkpoint: str | None = None, window: int = 1,
               device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, compile: bool = False,
               **options: Any) -> ARImageModel:
    """Build an adapter's model: random weights from ``preset``, or real ones from ``checkpoint``.
    ``compile=True`` decodes with a static-shape step under torch.compile (:mod:`tsbench.models.compiled`)."""
    build = ADAPTERS.get(adapter)
    kwargs = {"preset": preset} if preset is not None else {}
    model = build(checkpoint=checkpoint, window=window, device=device, dtype=resolve_dtype(dtype), **kwargs, **options)
    if compile:
        from tsbench.models.compiled import compile_decode

        compile_decode(model)
    return model


def list_adapters() -> list[str]:
    return ADAPTERS.names()


def list_presets(adapter: str | None = None) -> dict[str, list[str]]:
    names = [adapter] if adapter else list(PRESET_TABLES)
    tables = {name: Registry._resolve(PRESET_TABLES[name]) for name in names}
    return {name: list(table() if callable(table) else table) for name, table in tables.items()}
