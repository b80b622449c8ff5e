from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _machine_limits_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Roofline machine limits are measured once per test session, never written to the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TSBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("tsbench_cache")))
    yield
    mp.undo()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"official prompt files not found at {SHARED_DATA} (the CI layout puts shared/ beside the repo)")
    return SHARED_DATA
