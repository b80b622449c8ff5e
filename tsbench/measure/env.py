"""What a measurement ran on: recorded in every result row so numbers are never orphaned."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

import tsbench


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none, e.g. macOS)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_has_bf16_matrix_units() -> bool:
    """AMX-BF16 tiles: the CPU feature that makes bf16 matmuls several times faster than fp32. Without
    them (AVX512-BF16 alone) bf16 matmuls measured slower than fp32 on this project's machines."""
    return {"amx_bf16", "amx_tile"} <= cpu_flags()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the tsbench checkout, or 'unknown' for an installed copy."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(tsbench.__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str | torch.device = "cpu") -> dict[str, str | int]:
    device = torch.device(device)
    return {
        "env.device": str(device),
        "env.device_name": device_name(device),
        "env.cpu_count": os.cpu_count() or 0,
        "env.torch_threads": torch.get_num_threads(),
        "env.cpu_amx_bf16": cpu_has_bf16_matrix_units(),
        "env.torch": torch.__version__,
        "env.cuda": torch.version.cuda or "none",
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
        "env.tsbench": tsbench.__version__,
        "env.git_commit": git_commit(),
    }
