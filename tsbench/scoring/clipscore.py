"""CLIPScore through open_clip.

Variants (the number differs between libraries, so the variant is part of ``version``); each has the
defaults of the definition it is named after:

- ``"torchmetrics"`` (default): what torchmetrics' ``CLIPScore()`` computes by default, the usual
  "CLIP score" column of text-to-image papers: OpenAI's CLIP ViT-L/14 (open_clip ``ViT-L-14`` /
  ``openai``, the same weights and the same 224-px resize and centre crop), 100 · max(cos, 0);
- ``"hessel"``: CLIP-S of Hessel et al. 2021: ViT-B/32, 2.5 · max(cos, 0), on the caption prefixed
  with ``"A photo depicts "``;
- ``"cosine"``: the raw cosine, as t2v_metrics' CLIPScore returns it (its default ``openai:ViT-L-14``).

Texts longer than the context (77 tokens) are truncated by the tokenizer (torchmetrics#2883); such
rows carry ``details={"truncated": True}``.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .base import ScoreItem, ScoreRow, ScorerUnavailable, batched, default_device, load_image


@dataclass(frozen=True)
class Variant:
    weight: float | None  # None: the raw cosine
    model: str
    pretrained: str
    text_prefix: str = ""


VARIANTS = {
    "torchmetrics": Variant(100.0, "ViT-L-14", "openai"),
    "hessel": Variant(2.5, "ViT-B-32", "openai", "A photo depicts "),
    "cosine": Variant(None, "ViT-L-14", "openai"),
}


@dataclass(frozen=True)
class Setting:
    """A variant with the user's overrides applied."""

    variant: str
    weight: float | None
    model: str
    pretrained: str | Path
    text_prefix: str

    @classmethod
    def of(cls, variant: str = "torchmetrics", model: str | None = None, pretrained: str | Path | None = None,
           text_prefix: str | None = None) -> "Setting":
        if variant not in VARIANTS:
            raise ValueError(f"CLIPScore variant {variant!r} is unknown; choose one of {', '.join(VARIANTS)}")
        spec = VARIANTS[variant]
        return cls(variant, spec.weight, model or spec.model, pretrained or spec.pretrained,
                   spec.text_prefix if text_prefix is None else text_prefix)

    def describe(self) -> str:
        source = Path(self.pretrained).name if Path(self.pretrained).is_file() else self.pretrained
        prefix = f"; prefix {self.text_prefix!r}" if self.text_prefix else ""
        return f"{self.model}/{source}; {self.variant}{prefix}"


class CLIPScorer:
    name = "clipscore"
    metric = "clipscore"
    aggregation = "mean"  # a mean over images, whatever the benchmark (no benchmark defines a CLIPScore table)
    higher_is_better = True
    needs: tuple[str, ...] = ()
    caveat = ""

    def __init__(
        self,
        model: str | None = None,
        pretrained: str | Path | None = None,
        *,
        variant: str = "torchmetrics",
        text_prefix: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        """``model``, ``pretrained`` (an open_clip tag such as ``openai``, or a local checkpoint file) and
        ``text_prefix`` default to the variant's."""
        self.setting = Setting.of(variant, model, pretrained, text_prefix)
        try:
            import open_clip
        except ImportError as e:
            raise ScorerUnavailable(f"open_clip is not installed ({e}); pip install 'tsbench[clip]'") from None
        self.batch_size = batch_size
        self.device = device or default_device()
        self.model, self.transform, self.tokenizer = load_open_clip(self.setting.model, self.setting.pretrained,
                                                                    self.device)
        self.version = f"open_clip {open_clip.__version__}; {self.setting.describe()}"

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        keys = ("variant", "model", "pretrained", "text_prefix")
        return Setting.of(**{k: options[k] for k in keys if k in options}).describe()

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        import torch

        rows = []
        for batch in batched(items, self.batch_size):
            texts = [self.setting.text_prefix + it.prompt for it in batch]
            images = torch.stack([self.transform(load_image(it.image_path)) for it in batch]).to(self.device)
            with torch.inference_mode():
                img = self.model.encode_image(images).float()
                txt = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1).tolist()
            for it, text, c in zip(batch, texts, cos):
                weight = self.setting.weight
                value = c if weight is None else weight * max(c, 0.0)
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
