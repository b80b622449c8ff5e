"""CLIPScore through open_clip with a tiny architecture config and random weights saved to a local
checkpoint (nothing is downloaded)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable  # noqa: E402
from tsbench.scoring.clipscore import CLIPScorer  # noqa: E402
from tiny_models import tiny_open_clip  # noqa: E402

TINY = "tsbench-test-tiny-clip"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # seed 1: a seed whose cosines on these items have both signs
    return tiny_open_clip(tmp_path_factory.mktemp("tiny-clip"), TINY, seed=1)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    out = []
    for i, color in enumerate([(250, 10, 10), (10, 10, 250), (120, 200, 30), (0, 0, 0)]):
        Image.new("RGB", (48, 40), color).save(folder / f"{i}.png")
        out.append(ScoreItem(f"{i:05d}", 0, folder / f"{i}.png", f"a photo number {i}"))
    return out


def cosines(checkpoint, items, prefix=""):
    """Independent reference: encode with the same weights, cosine per pair."""
    model, _, transform = open_clip.create_model_and_transforms(TINY, pretrained=str(checkpoint))
    tok = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        img = model.eval().encode_image(torch.stack([transform(Image.open(it.image_path).convert("RGB")) for it in items]))
        txt = model.encode_text(tok([prefix + it.prompt for it in items]))
    return torch.nn.functional.cosine_similarity(img, txt).tolist()


def test_variants_follow_their_definitions(checkpoint, items):
    cos = cosines(checkpoint, items)
    assert any(c < 0 for c in cos) and any(c > 0 for c in cos)  # random weights give both signs: clipping is tested
    tm = SCORERS.get("clipscore")(TINY, str(checkpoint), device="cpu", batch_size=3).score(items)
    assert [r.score for r in tm] == pytest.approx([100 * max(c, 0) for c in cos], abs=1e-4)
    # Hessel's CLIP-S prefixes the caption itself
    hessel = CLIPScorer(TINY, checkpoint, variant="hessel", device="cpu").score(items)
    prefixed = cosines(checkpoint, items, "A photo depicts ")
    assert prefixed != pytest.approx(cos, abs=1e-6)
    assert [r.score for r in hessel] == pytest.approx([2.5 * max(c, 0) for c in prefixed], abs=1e-6)
    assert "prefix 'A photo depicts '" in hessel[0].scorer_version
    raw = CLIPScorer(TINY, checkpoint, variant="cosine", device="cpu").score(items)
    assert [r.score for r in raw] == pytest.approx(cos, abs=1e-6)
    assert [(r.prompt_id, r.metric) for r in tm] == [(it.prompt_id, "clipscore") for it in items]
    assert checkpoint.name in tm[0].scorer_version and "torchmetrics" in tm[0].scorer_version


def test_torchmetrics_variant_defaults_to_torchmetrics_default_model():
    """torchmetrics' CLIPScore() is OpenAI's ViT-L/14 at 100 * max(cos, 0); the variant of that name too."""
    from tsbench.scoring.clipscore import VARIANTS

    assert (VARIANTS["torchmetrics"].model, VARIANTS["torchmetrics"].pretrained) == ("ViT-L-14", "openai")
    assert VARIANTS["torchmetrics"].weight == 100.0 and VARIANTS["torchmetrics"].text_prefix == ""
    assert (VARIANTS["hessel"].model, VARIANTS["hessel"].weight) == ("ViT-B-32", 2.5)


def test_text_prefix_is_applied(checkpoint, items):
    rows = CLIPScorer(TINY, checkpoint, variant="cosine", text_prefix="A photo depicts ", device="cpu").score(items)
    assert [r.score for r in rows] == pytest.approx(cosines(checkpoint, items, "A photo depicts "), abs=1e-6)


def test_long_prompts_are_flagged_as_truncated(checkpoint, items):
    long_item = ScoreItem("long", 0, items[0].image_path, " ".join(["word"] * 100))
    rows = CLIPScorer(TINY, checkpoint, device="cpu").score([items[0], long_item])
    assert rows[0].details is None and rows[1].details == {"truncated": True}
    assert "details" not in rows[0].to_dict() and rows[1].to_dict()["details"] == {"truncated": True}


def test_errors(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="variant 'x100' is unknown"):
        CLIPScorer(TINY, checkpoint, variant="x100", device="cpu")
    with pytest.raises(ScorerUnavailable, match="no architecture 'ViT-Nope'"):
        CLIPScorer("ViT-Nope", checkpoint, device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ScorerUnavailable, match="cannot load open_clip"):
        CLIPScorer(TINY, bad, device="cpu")
