"""The VQ tokenizer must load LlamaGen's released checkpoint strictly, so key names and shapes are checked
against LlamaGen's layout; loading must never run pickled code; decoding must also work on ``meta``."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tsbench.models.checkpoint import CheckpointError
from tsbench.models.vq import VQ_PRESETS, VQModel, get_vq_config, load_vq_state_dict, to_uint8


def meta_model(name: str) -> VQModel:
    """Full-size models are built on ``meta``: key names and shapes need no memory or init time."""
    with torch.device("meta"):
        return VQModel(VQ_PRESETS[name])


def tiny_model(name: str = "vq16-tiny", seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(VQ_PRESETS[name]).eval()


# (key, shape) pairs as LlamaGen's vq_model.py names them for VQ-16 (widths 128/128/256/256/512)
LLAMAGEN_VQ16_KEYS = {
    "quantize.embedding.weight": (16384, 8),
    "quantize.codebook_used": (65536,),
    "quant_conv.weight": (8, 256, 1, 1),
    "quant_conv.bias": (8,),
    "post_quant_conv.weight": (256, 8, 1, 1),
    "encoder.conv_in.weight": (128, 3, 3, 3),
    "encoder.conv_blocks.0.res.0.norm1.weight": (128,),
    "encoder.conv_blocks.0.res.0.conv1.weight": (128, 128, 3, 3),
    "encoder.conv_blocks.0.downsample.conv.weight": (128, 128, 3, 3),
    "encoder.conv_blocks.2.res.0.nin_shortcut.weight": (256, 128, 1, 1),
    "encoder.conv_blocks.4.res.0.nin_shortcut.weight": (512, 256, 1, 1),
    "encoder.conv_blocks.4.res.1.conv2.weight": (512, 512, 3, 3),
    "encoder.conv_blocks.4.attn.1.proj_out.weight": (512, 512, 1, 1),
    "encoder.mid.0.conv1.weight": (512, 512, 3, 3),
    "encoder.mid.1.q.weight": (512, 512, 1, 1),
    "encoder.norm_out.weight": (512,),
    "encoder.conv_out.weight": (256, 512, 3, 3),
    "decoder.conv_in.weight": (512, 256, 3, 3),
    "decoder.mid.2.conv2.bias": (512,),
    "decoder.conv_blocks.0.res.2.conv2.weight": (512, 512, 3, 3),
    "decoder.conv_blocks.0.attn.2.norm.weight": (512,),
    "decoder.conv_blocks.0.upsample.conv.weight": (512, 512, 3, 3),
    "decoder.conv_blocks.1.res.0.nin_shortcut.weight": (256, 512, 1, 1),
    "decoder.conv_blocks.3.res.0.nin_shortcut.weight": (128, 256, 1, 1),
    "decoder.conv_blocks.3.upsample.conv.weight": (128, 128, 3, 3),
    "decoder.conv_blocks.4.res.2.conv1.weight": (128, 128, 3, 3),
    "decoder.norm_out.bias": (128,),
    "decoder.conv_out.weight": (3, 128, 3, 3),
}


def test_vq16_state_dict_matches_llamagen_layout() -> None:
    model = meta_model("vq16")
    state = model.state_dict()
    for key, shape in LLAMAGEN_VQ16_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    # totals from the reference notes: 344 keys, 71,883,403 parameters (codebook_used is a buffer)
    assert len(state) == 344
    assert sum(p.numel() for p in model.parameters()) == 71_883_403
    # structure LlamaGen's loader relies on: no resampling after the last level, attention only at the
    # lowest resolution, 1x1 shortcuts only where the width changes
    assert "encoder.conv_blocks.4.downsample.conv.weight" not in state
    assert "decoder.conv_blocks.4.upsample.conv.weight" not in state
    assert {k.split(".attn.")[0] for k in state if ".attn." in k} == {"encoder.conv_blocks.4", "decoder.conv_blocks.0"}
    assert {k.rsplit(".nin_shortcut.")[0] for k in state if ".nin_shortcut." in k} == {
        "encoder.conv_blocks.2.res.0", "encoder.conv_blocks.4.res.0",
        "decoder.conv_blocks.1.res.0", "decoder.conv_blocks.3.res.0",
    }


def test_vq8_layout() -> None:
    model = meta_model("vq8")
    state = model.state_dict()
    assert VQ_PRESETS["vq8"].downsample == 8 and VQ_PRESETS["vq16"].downsample == 16
    # counted from LlamaGen's VQ_8 (ch_mult [1, 2, 2, 4]); not stated in the reference notes
    assert len(state) == 300
    assert tuple(state["encoder.conv_blocks.1.res.0.nin_shortcut.weight"].shape) == (256, 128, 1, 1)
    assert tuple(state["decoder.conv_blocks.0.attn.2.q.weight"].shape) == (512, 512, 1, 1)


def test_tiny_presets_share_the_key_scheme() -> None:
    """Tiny presets only shrink widths and block counts, so every tiny key also exists at full size."""
    for tiny, full in (("vq16-tiny", "vq16"), ("vq8-tiny", "vq8")):
        assert VQ_PRESETS[tiny].downsample == VQ_PRESETS[full].downsample
        assert set(meta_model(tiny).state_dict()) <= set(meta_model(full).state_dict())


def test_unknown_preset_names_known_ones() -> None:
    with pytest.raises(KeyError, match="vq16-tiny"):
        get_vq_config("vq32")


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_checkpoint_round_trip(tmp_path: Path, fmt: str) -> None:
    state = tiny_model(seed=1).state_dict()
    path = tmp_path / f"vq.{fmt}"
    if fmt == "pt":
        # shaped like vq_train.py's output, including the pickled argparse.Namespace of its args
        torch.save({"model": state, "steps": 10, "args": argparse.Namespace(image_size=256)}, path)
    else:
        save_file(state, str(path))
    fresh = tiny_model(seed=2)
    if fmt == "pt":
        with pytest.raises(CheckpointError, match="allow-pickled-args"):
            load_vq_state_dict(fresh, path)  # the pickled args need the explicit opt-in
        with pytest.warns(UserWarning, match="argparse.Namespace"):
            load_vq_state_dict(fresh, path, allow_pickled_args=True)
    else:
        load_vq_state_dict(fresh, path)
    loaded = fresh.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_renamed_key_is_named(tmp_path: Path) -> None:
    state = tiny_model().state_dict()
    state["decoder.conv_in.w"] = state.pop("decoder.conv_in.weight")
    path = tmp_path / "renamed.pt"
    torch.save({"model": state}, path)
    with pytest.raises(ValueError) as err:
        load_vq_state_dict(tiny_model(), path)
    message = str(err.value)
    assert "missing keys: decoder.conv_in.weight" in message
    assert "unexpected keys: decoder.conv_in.w" in message and str(path) in message


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "vq8.safetensors"
    save_file(tiny_model("vq8-tiny").state_dict(), str(path))
    with pytest.raises(ValueError, match="shape mismatches"):
        load_vq_state_dict(meta_model("vq8"), path)


class WritesMarker:
    """Unpickling this calls open(path, "w"): proof that a loader executed code from the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"model": tiny_model().state_dict(), "payload": WritesMarker(marker)}, path)
    with pytest.raises(ValueError, match="refused"):
        load_vq_state_dict(tiny_model(), path)
    assert not marker.exists()


@torch.inference_mode()
def test_tiny_decode_and_encode_shapes() -> None:
    model = tiny_model("vq16-tiny")
    codes = torch.randint(0, 16384, (2, 16, 16))
    images = model.decode_codes(codes)
    assert images.shape == (2, 3, 256, 256) and images.dtype == torch.float32
    again = model.encode(images.clamp(-1, 1))
    assert again.shape == (2, 16, 16) and again.dtype == torch.int64
    assert int(again.min()) >= 0 and int(again.max()) < 16384
    assert model(images).shape == images.shape

    pixels = to_uint8(images)
    assert pixels.shape == (2, 256, 256, 3) and pixels.dtype == np.uint8

    eight = tiny_model("vq8-tiny")
    assert eight.decode_codes(torch.zeros(1, 32, 32, dtype=torch.long)).shape == (1, 3, 256, 256)
    assert eight.encode(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 8)


def test_encode_picks_nearest_normalised_code() -> None:
    """A latent equal to a scaled codebook row must map back to that row (cosine lookup)."""
    model = tiny_model()
    ids = torch.tensor([[[3, 70], [16383, 0]]])
    latents = 5.0 * model.quantize.embedding.weight[ids].permute(0, 3, 1, 2)
    assert torch.equal(model.quantize.nearest(latents), ids)


def test_to_uint8_matches_official_rounding() -> None:
    images = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(images)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_meta_device_decode() -> None:
    model = meta_model("vq16")
    images = model.decode_codes(torch.zeros(1, 16, 16, dtype=torch.long, device="meta"))
    assert images.shape == (1, 3, 256, 256) and images.is_meta
