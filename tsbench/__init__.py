"""tsbench: what does an autoregressive text-to-image setting cost, and what does it buy?"""
from __future__ import annotations

__version__ = "0.1.0"

from tsbench.engine.cfg import cfg_scale, list_schedules
from tsbench.engine.generate import GenerationResult, generate
from tsbench.models import list_adapters, list_presets, load_model

__all__ = ["__version__", "cfg_scale", "generate", "GenerationResult", "list_adapters", "list_presets",
           "list_schedules", "load_model"]
