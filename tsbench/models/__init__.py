"""Model adapters. Registered by string so that ``import tsbench`` imports no adapter's heavy code.

Adding an adapter is one module that defines an :class:`~tsbench.models.base.Adapter` and one line here.
"""
from __future__ import annotations

from typing import Any

import torch

from tsbench.config.registry import Registry
from tsbench.models.base import Adapter, ARImageModel, make_options

ADAPTERS: Registry[Adapter] = Registry("adapter")
ADAPTERS.register("token-shuffle", "tsbench.models.token_shuffle:ADAPTER")
ADAPTERS.register("llamagen", "tsbench.models.llamagen:ADAPTER")
ADAPTERS.register("llamagen-ts", "tsbench.models.llamagen:ADAPTER_TS")
ADAPTERS.register("janus", "tsbench.models.janus:ADAPTER")
ADAPTERS.register("emu3", "tsbench.models.emu3:ADAPTER")

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def adapter_options(adapter: str, given: Any = None, **kwargs: Any) -> Any:
    """``adapter``'s options dataclass filled from ``given`` (instance or mapping) and ``kwargs``."""
    return make_options(ADAPTERS.get(adapter).options, given, adapter=adapter, **kwargs)


def load_model(adapter: str, preset: str | None = None, checkpoint: str | None = None, window: int | None = None,
               device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, compile: bool = False,
               options: Any = None, **option_kwargs: Any) -> ARImageModel:
    """Build an adapter's model: random weights from ``preset``, or real ones from ``checkpoint``.

    ``window`` None means the model's own: the checkpoint's, else the adapter's default. ``options`` (or
    keyword arguments) are the adapter's own settings, e.g. ``text_encoder=`` for LlamaGen.
    ``compile=True`` decodes with a static-shape step under torch.compile (:mod:`tsbench.models.compiled`).
    """
    spec = ADAPTERS.get(adapter)
    model = spec.build(preset=preset, checkpoint=checkpoint, window=window, device=device,
                       dtype=resolve_dtype(dtype), options=adapter_options(adapter, options, **option_kwargs))
    if compile:
        from tsbench.models.compiled import compile_decode

        compile_decode(model)
    return model


def list_adapters() -> list[str]:
    return ADAPTERS.names()


def list_presets(adapter: str | None = None) -> dict[str, list[str]]:
    names = [adapter] if adapter else ADAPTERS.names()
    return {name: list(ADAPTERS.get(name).presets()) for name in names}
