"""What a measurement ran on: recorded in every result row so numbers are never orphaned."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

import tsbench


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "env.torch": torch.__version__,
        "env.cuda": torch.version.cuda or "none",
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
        "env.tsbench": tsbench.__version__,
        "env.git_commit": git_commit(),
    }
