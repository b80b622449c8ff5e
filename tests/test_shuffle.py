import pytest
import torch

from tsbench.models.shuffle import ShuffleIn, check_grid, grid_to_windows, windows_to_grid


@pytest.mark.parametrize("s", [1, 2, 4])
def test_token_lands_in_documented_window_and_slot(s: int) -> None:
    h, w = 8, 12
    ids = torch.arange(h * w).reshape(1, h, w)
    windows = grid_to_windows(ids, s)  # [1, M, s*s]
    assert windows.shape == (1, (h // s) * (w // s), s * s)
    for r in range(h):
        for c in range(w):
            fused = (r // s) * (w // s) + (c // s)
            slot = (r % s) * s + (c % s)
            assert windows[0, fused, slot] == ids[0, r, c]
    assert torch.equal(windows_to_grid(windows, s, (h, w)), ids)


def test_shuffle_in_concatenates_compressed_tokens_in_slot_order() -> None:
    d, s = 16, 2
    layer = ShuffleIn(d, s, n_blocks=0, hidden=d)
    emb = torch.randn(1, 3, s * s, d)
    fused = layer(emb)
    chunk = d // (s * s)
    for slot in range(s * s):
        assert torch.allclose(fused[0, :, slot * chunk:(slot + 1) * chunk], layer.compress(emb[0, :, slot]))


def test_indivisible_grid_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not divisible by shuffle window 4"):
        check_grid((6, 6), 4)
    with pytest.raises(ValueError, match="not supported"):
        check_grid((6, 6), 3)
