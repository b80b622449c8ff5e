"""CLIPScore through open_clip.

Variants (the number differs between libraries, so the variant is part of ``version``):

- ``"torchmetrics"`` (default): 100 · max(cos, 0), torchmetrics' ``CLIPScore``, the usual
  "CLIP score" column of text-to-image papers;
- ``"hessel"``: 2.5 · max(cos, 0), CLIP-S of Hessel et al. 2021 (they also prefix
  ``"A photo depicts "``; pass ``text_prefix`` for that);
- ``"cosine"``: the raw cosine, as t2v_metrics' CLIPScore returns it.

Texts longer than the context (77 tokens) are truncated by the tokenizer (torchmetrics#2883); such
rows carry ``details={"truncated": True}``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .base import ScoreItem, ScoreRow, ScorerUnavailable, batched, default_device, load_image

VARIANTS = {"torchmetrics": 100.0, "hessel": 2.5, "cosine": None}


class CLIPScorer:
    name = "clipscore"
    metric = "clipscore"

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | Path | None = "openai",
        *,
        variant: str = "torchmetrics",
        text_prefix: str = "",
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        """``pretrained``: an open_clip tag (e.g. ``openai``) or a local checkpoint file."""
        if variant not in VARIANTS:
            raise ValueError(f"CLIPScore variant {variant!r} is unknown; choose one of {', '.join(VARIANTS)}")
        try:
            import open_clip
        except ImportError as e:
            raise ScorerUnavailable(f"open_clip is not installed ({e}); pip install 'tsbench[clip]'") from None
        self.variant, self.text_prefix, self.batch_size = variant, text_prefix, batch_size
        self.device = device or default_device()
        self.model, self.transform, self.tokenizer = load_open_clip(model, pretrained, self.device)
        source = Path(pretrained).name if pretrained and Path(pretrained).is_file() else pretrained
        self.version = f"open_clip {open_clip.__version__}; {model}/{source}; {variant}"

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        import torch

        rows = []
        for batch in batched(items, self.batch_size):
            texts = [self.text_prefix + it.prompt for it in batch]
            images = torch.stack([self.transform(load_image(it.image_path)) for it in batch]).to(self.device)
            with torch.inference_mode():
                img = self.model.encode_image(images).float()
                txt = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1).tolist()
            for it, text, c in zip(batch, texts, cos):
                w = VARIANTS[self.variant]
                value = c if w is None else w * max(c, 0.0)
                details = {"truncated": True} if self._truncated(text) else None
                rows.append(ScoreRow(it.prompt_id, it.sample, self.metric, value, self.name, self.version, details))
        return rows

    def _truncated(self, text: str) -> bool:
        encode = getattr(self.tokenizer, "encode", None)  # open_clip's SimpleTokenizer; +2 for SOT/EOT
        context = getattr(self.tokenizer, "context_length", 77)
        return encode is not None and len(encode(text)) + 2 > context


def load_open_clip(model: str, pretrained: str | Path | None, device: str) -> tuple[Any, Any, Any]:
    """(model, eval transform, tokenizer); unknown names and missing weights become ScorerUnavailable."""
    import open_clip

    if ":" not in model and model not in open_clip.list_models():  # "hf-hub:"/"local-dir:" names are not listed
        raise ScorerUnavailable(f"open_clip has no architecture {model!r} (see open_clip.list_models())")
    try:
        net, _, transform = open_clip.create_model_and_transforms(
            model, pretrained=None if pretrained is None else str(pretrained), device=device, weights_only=True
        )
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as e:
        raise ScorerUnavailable(f"cannot load open_clip {model}/{pretrained}: {str(e).splitlines()[0]}") from None
    return net.eval(), transform, open_clip.get_tokenizer(model)
