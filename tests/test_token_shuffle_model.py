import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import tsbench
from tsbench.engine.generate import GuidanceConfig, generate_tokens
from tsbench.engine.sampling import SamplingConfig, guide, sample
from tsbench.models.checkpoint import CheckpointError
from tsbench.models.shuffle import grid_to_windows
from tsbench.models.token_shuffle import TS_PRESETS, build_token_shuffle, count_parameters, save_checkpoint

PROMPTS = ["a red circle", "two blue squares on a long grey road"]


@pytest.mark.parametrize("window", [1, 2, 4])
def test_generate_tiny_256(window: int) -> None:
    model = tsbench.load_model("token-shuffle", preset="tiny", window=window)
    result = tsbench.generate(model, PROMPTS, resolution=256, seed=3)
    assert len(result.images) == 2
    assert result.images[0].shape == (256, 256, 3) and result.images[0].dtype == np.uint8
    assert result.tokens.shape == (2, 16, 16)
    assert result.timings["total_s"] > 0
    assert result.pil_images()[1].size == (256, 256) and result.pil_images()[1].mode == "RGB"


def test_window_one_builds_no_shuffle_modules() -> None:
    plain = build_token_shuffle("tiny", window=1)
    shuffled = build_token_shuffle("tiny", window=2)
    assert not any("shuffle" in name for name, _ in plain.named_parameters())
    assert any(name.startswith("shuffle_in.") for name, _ in shuffled.named_parameters())


@pytest.mark.parametrize("window", [1, 2])
def test_kv_cache_matches_full_recomputation(window: int) -> None:
    """Tokens sampled through the KV cache equal those sampled from one cache-free full pass."""
    model = build_token_shuffle("tiny", window=window)
    grid, seeds = (8, 8), [11, 12]
    guidance, sampling = GuidanceConfig(4.0, "linear"), SamplingConfig(temperature=1.0, top_k=50)
    codes = generate_tokens(model, PROMPTS, grid, guidance, sampling, seeds)
    windows = grid_to_windows(codes, window)
    steps = windows.shape[1]
    with torch.inference_mode():
        cond = model.condition(PROMPTS, cfg=True)
        full = model(cond, windows[:, :-1].repeat(2, 1, 1))  # one pass over prompt + all fed windows
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    for i in range(steps):
        weight = tsbench.cfg_scale("linear", i, steps, 4.0)
        assert torch.equal(sample(guide(full[:, i], 2, weight), sampling, generators), windows[:, i])


def test_same_seed_same_tokens_and_batching_does_not_matter() -> None:
    model = build_token_shuffle("tiny", window=2)
    a = tsbench.generate(model, PROMPTS, 128, seed=5, batch_size=2).tokens
    b = tsbench.generate(model, PROMPTS, 128, seed=5, batch_size=1).tokens
    c = tsbench.generate(model, PROMPTS, 128, seed=6, batch_size=2).tokens
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_presets_have_documented_shapes() -> None:
    assert TS_PRESETS["ts-2.7b"].dim == 3072 and TS_PRESETS["ts-2.7b"].n_layers == 20
    params = count_parameters(build_token_shuffle("small", device="meta"), exclude=("vq.",))
    assert 20e6 <= params <= 40e6
    big = count_parameters(build_token_shuffle("ts-2.7b", device="meta"), exclude=("vq.",))
    assert 2.4e9 <= big <= 2.9e9


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    model = build_token_shuffle("tiny", window=2)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = build_token_shuffle(checkpoint=str(tmp_path / "ckpt"))
    assert loaded.window == 2 and loaded.weights != "random"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    same = tsbench.generate(model, PROMPTS[:1], 64, seed=1).tokens
    assert torch.equal(same, tsbench.generate(loaded, PROMPTS[:1], 64, seed=1).tokens)


def test_window_comes_from_the_checkpoint_and_a_contradiction_is_an_error(tmp_path: Path) -> None:
    """A window-4 checkpoint runs at s = 4 and says so; asking it for another window fails instead of
    recording a window the model does not run at."""
    save_checkpoint(build_token_shuffle("tiny", window=4), tmp_path / "s4")
    loaded = tsbench.load_model("token-shuffle", checkpoint=str(tmp_path / "s4"))
    assert loaded.window == 4 and loaded.describe()["window"] == 4
    assert tsbench.load_model("token-shuffle", checkpoint=str(tmp_path / "s4"), window=4).window == 4
    with pytest.raises(CheckpointError, match="trained with window 4, asked for window 1"):
        tsbench.load_model("token-shuffle", checkpoint=str(tmp_path / "s4"), window=1)


def test_unknown_options_are_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="unknown option 'text_encoder' of adapter 'token-shuffle'"):
        tsbench.load_model("token-shuffle", preset="tiny", text_encoder="flan-t5-xl")
    with pytest.raises(ValueError, match="Did you mean 'tokenizer'"):
        tsbench.load_model("token-shuffle", preset="tiny", tokeniser="bytes")


@pytest.mark.parametrize("window", [1, 2])
def test_reported_kv_cache_bytes_equal_the_allocated_cache(window: int) -> None:
    model = build_token_shuffle("tiny", window=window)
    grid = model.grid(128)
    cond = model.condition(PROMPTS, cfg=True)
    state, _ = model.start(cond, grid)
    allocated = sum(t.numel() * t.element_size() for t in (*state.cache.keys, *state.cache.values))
    assert model.kv_cache_bytes(cond.rows, cond.length, grid) == allocated


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickled_object_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bad = tmp_path / "model.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f)
    with pytest.raises(CheckpointError, match="refused"):
        build_token_shuffle("tiny", checkpoint=str(bad))
    assert not marker.exists()


def test_unknown_format_and_preset_are_clear_errors(tmp_path: Path) -> None:
    weird = tmp_path / "model.pkl"
    weird.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        build_token_shuffle("tiny", checkpoint=str(weird))
    with pytest.raises(ValueError, match="Did you mean 'tiny'"):
        build_token_shuffle("tinyy")


def test_hugging_face_tokenizer_by_path(tmp_path: Path) -> None:
    from dataclasses import replace

    from tiny_models import byte_tokenizer
    from tsbench.models.token_shuffle import TokenShuffleLM

    hf = byte_tokenizer()
    hf.save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match="has 261 ids but the model's text vocabulary has 257"):
        build_token_shuffle("tiny", tokenizer=str(tmp_path / "tok"))
    model = TokenShuffleLM(replace(TS_PRESETS["tiny"], text_vocab_size=300, tokenizer=str(tmp_path / "tok"))).eval()
    cond = model.condition(["a red circle"], cfg=False)
    assert cond.tokens[0, 1:-1].tolist() == hf.encode("a red circle", add_special_tokens=False)
    assert tsbench.generate(model, ["a red circle"], 64).tokens.shape == (1, 4, 4)
