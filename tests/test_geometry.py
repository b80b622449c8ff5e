"""Each adapter's ``geometry`` (what the load-time checks know of a model without reading weights) describes
the model a cell then builds: the same window and VQ downsampling factor, a window it supports."""
from __future__ import annotations

import pytest

import tsbench
from tsbench.models import ADAPTERS, adapter_options


@pytest.mark.parametrize("adapter, preset, window", [
    ("token-shuffle", "tiny", None), ("token-shuffle", "tiny", 4), ("token-shuffle", "shapes", None),
    ("token-shuffle", "shapes", 4), ("token-shuffle", "shapes-s2", None),
    ("llamagen", "GPT-tiny", None), ("llamagen", "GPT-tiny", 2), ("llamagen-ts", "GPT-tiny", None),
    ("janus", "tiny", None), ("janus", "tiny", 2), ("emu3", "tiny", None),
])
def test_geometry_describes_the_model_a_cell_builds(adapter: str, preset: str, window: int | None) -> None:
    if adapter in ("janus", "emu3"):
        pytest.importorskip("transformers")
    geometry = ADAPTERS.get(adapter).geometry(preset, None, window, adapter_options(adapter))
    model = tsbench.load_model(adapter, preset=preset, window=window, device="meta")
    assert (geometry.window, geometry.downsample) == (model.window, model.downsample)
    assert model.window in geometry.windows


def test_trained_preset_runs_only_at_its_trained_windows() -> None:
    options = adapter_options("token-shuffle")
    geometry = ADAPTERS.get("token-shuffle").geometry
    assert geometry("shapes", None, None, options).windows == (1, 2, 4)  # shapes-s1, -s2, -s4
    assert geometry("shapes-s2", None, None, options).windows == (2,)
    assert geometry("tiny", None, 3, options).windows == (1, 2, 4, 8)  # random weights: any shuffle window
    assert geometry("tiny", None, None, adapter_options("token-shuffle", vq="vq8-tiny")).downsample == 8
