"""Token-Shuffle around backbones it was never written for: LlamaGen and Janus checkpoints with new
shuffle modules, the window a checkpoint was trained at, and the rows that say so."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tsbench
from tsbench.measure.flops import analytic_flops
from tsbench.models.base import PARTIAL_RANDOM
from tsbench.models.checkpoint import CheckpointError, file_digest
from tsbench.models.llamagen import build_llamagen


@pytest.fixture
def llamagen_checkpoint(tmp_path: Path) -> Path:
    """A plain LlamaGen GPT-tiny state dict (no shuffle keys), as a training script saves it."""
    state = {k: torch.randn(v.shape) for k, v in build_llamagen("GPT-tiny", device="meta").state_dict().items()}
    path = tmp_path / "gpt.pt"
    torch.save({"model": state}, path)
    return path


def test_llamagen_backbone_with_new_shuffle_modules_is_partial_random(llamagen_checkpoint: Path) -> None:
    plain = tsbench.load_model("llamagen", preset="GPT-tiny", checkpoint=str(llamagen_checkpoint))
    assert plain.window == 1 and plain.weights == file_digest(llamagen_checkpoint)
    wrapped = tsbench.load_model("llamagen", preset="GPT-tiny", checkpoint=str(llamagen_checkpoint), window=2)
    facts = wrapped.describe()
    assert facts["window"] == 2 and facts["weights"] == PARTIAL_RANDOM
    assert facts["backbone_weights"] == file_digest(llamagen_checkpoint)
    for name, tensor in plain.state_dict().items():  # the backbone is the checkpoint's, untouched
        assert torch.equal(wrapped.state_dict()[name], tensor), name
    image = tsbench.generate(wrapped, ["a red cube"], 64, cfg_scale=2.0, top_k=5).images[0]
    assert image.shape == (64, 64, 3)
    cost = analytic_flops(wrapped, 64)
    assert cost.meta["ar_steps"] == 4 and cost.by_component["shuffle"] > 0


def test_a_trained_shuffle_checkpoint_keeps_its_window(tmp_path: Path) -> None:
    """llamagen-ts weights carry their window in the shuffle keys: run at it by default, refuse another."""
    ts = build_llamagen("GPT-tiny", window=4)
    path = tmp_path / "ts4.pt"
    torch.save({"model": ts.state_dict()}, path)
    loaded = tsbench.load_model("llamagen-ts", preset="GPT-tiny", checkpoint=str(path))
    assert loaded.window == 4 and loaded.weights == file_digest(path)
    with pytest.raises(CheckpointError, match="trained with window 4, asked for window 2"):
        tsbench.load_model("llamagen-ts", preset="GPT-tiny", checkpoint=str(path), window=2)
    assert tsbench.load_model("llamagen-ts", preset="GPT-tiny").window == 2  # no checkpoint: the adapter's default


@pytest.mark.parametrize("window", [2, 4])
def test_janus_backbone_with_shuffle_modules(tmp_path: Path, window: int) -> None:
    pytest.importorskip("transformers")
    from tiny_models import tiny_janus

    path = tiny_janus(tmp_path / "janus")
    model = tsbench.load_model("janus", checkpoint=str(path), window=window)
    facts = model.describe()
    assert facts["weights"] == PARTIAL_RANDOM and len(facts["backbone_weights"]) == 12
    result = tsbench.generate(model, ["a red cat"], 64, cfg_scale=3.0, top_k=4)
    assert result.tokens.shape == (1, 4, 4) and result.images[0].shape == (64, 64, 3)
    one = analytic_flops(tsbench.load_model("janus", preset="tiny"), 64)
    shuffled = analytic_flops(model, 64)
    assert shuffled.meta["ar_steps"] == 16 // window ** 2 and shuffled.by_component["shuffle"] > 0
    assert shuffled.by_component["lm_head"] == one.by_component["lm_head"]  # every code is still scored
    assert shuffled.by_phase["decode"] < one.by_phase["decode"]
