"""GenEval's rules with a transformers detector, in-process: detector + official decision rules + CLIP
colour classifier.

GenEval rules, transformers detector: not the official numbers. The detector weights, its resizing and
its mask grid differ from the official mmdet 2.x Mask2Former Swin-S (``detectors.py``), so its numbers do
not stand beside published GenEval rows; ``geneval-official`` runs the official evaluator.

One row per image: metric ``geneval``, score 1.0/0.0, details with the tag, the official reason text
and the kept boxes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..benchmarks.geneval import METRIC, load_object_names
from .base import ScoreItem, ScoreRow, ScoringInputError, default_device, load_image, option_text
from .clipscore import load_open_clip
from .detectors import DEFAULT_MASK2FORMER, DETECTORS
from .geneval_rules import COLOR_TEMPLATES, COLORS, ColorClassifier, Detection, RuleOptions, judge

Detector = Callable[[Any], Mapping[str, Sequence[Detection]]]


class ClipColorClassifier:
    """GenEval's colour check: grey-masked crop -> CLIP zero-shot over 10 colours x 3 templates
    (CLIP_benchmark ``zero_shot_classifier``: per colour, mean of normalised text embeddings,
    re-normalised; logits = 100 · image · colours; argmax). Classifiers are cached per class."""

    def __init__(self, model: str = "ViT-L-14", pretrained: str | Path | None = "openai", *,
                 device: str | None = None, bgcolor: str = "#999", crop: bool = True) -> None:
        self.device = device or default_device()
        self.model, self.transform, self.tokenizer = load_open_clip(model, pretrained, self.device)
        self.bgcolor, self.crop = bgcolor, crop
        self.version = f"clip {model}/{pretrained}"
        self._classifiers: dict[str, Any] = {}

    def _classifier(self, classname: str) -> Any:
        import torch
        import torch.nn.functional as F

        if classname not in self._classifiers:
            weights = []
            with torch.inference_mode():
                for color in COLORS:
                    texts = [t.format(c=color, classname=classname) for t in COLOR_TEMPLATES]
                    emb = F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)
                    mean = emb.mean(dim=0)
                    weights.append(mean / mean.norm())
            self._classifiers[classname] = torch.stack(weights, dim=1)
        return self._classifiers[classname]

    def crops(self, image: Any, objects: Sequence[Detection]) -> list[Any]:
        from PIL import Image

        image = image.convert("RGB")
        blank = image.copy() if self.bgcolor == "original" else Image.new("RGB", image.size, color=self.bgcolor)
        out = []
        for obj in objects:
            crop = image
            if obj.mask is not None:
                if tuple(image.size[::-1]) != tuple(obj.mask.shape):
                    raise ScoringInputError(f"mask shape {obj.mask.shape} does not match image size {image.size}")
                crop = Image.composite(image, blank, Image.fromarray(obj.mask))
            if self.crop:
                crop = crop.crop(tuple(obj.box[:4]))
            out.append(crop)
        return out

    def __call__(self, image: Any, objects: Sequence[Detection], classname: str) -> list[str]:
        import torch
        import torch.nn.functional as F

        batch = torch.stack([self.transform(c) for c in self.crops(image, objects)]).to(self.device)
        with torch.inference_mode():
            feats = F.normalize(self.model.encode_image(batch).float(), dim=-1)
            logits = 100.0 * feats @ self._classifier(classname)
        return [COLORS[i] for i in logits.argmax(dim=1).tolist()]


class GenEvalScorer:
    name = "geneval"
    metric = METRIC
    aggregation = "official"
    higher_is_better = True
    needs = ("data_dir",)  # object_names.txt, beside the prompts
    caveat = "GenEval rules, transformers detector: not the official numbers"

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        detector = options.get("detector", "mask2former")
        if detector == "mask2former":
            detector = f"transformers {options.get('detector_model') or DEFAULT_MASK2FORMER}"
        clip = f"{options.get('clip_model', 'ViT-L-14')}/{options.get('clip_pretrained', 'openai')}"
        return f"geneval rules; {detector}; clip {clip}{option_text(options.get('options') or {})}"

    def __init__(
        self,
        *,
        detector: str | Detector = "mask2former",
        detector_model: str | None = None,
        clip_model: str = "ViT-L-14",
        clip_pretrained: str | Path | None = "openai",
        color_classifier: ColorClassifier | None = None,
        options: Mapping[str, Any] | None = None,
        device: str | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        """``detector``: a name in ``DETECTORS`` or any callable image -> detections.
        ``options``: official ``--options`` keys (threshold, counting_threshold, max_objects,
        max_overlap, position_threshold)."""
        self.options = RuleOptions.from_strings(options or {})
        if isinstance(detector, str):
            kwargs = {"device": device} | ({"model": detector_model} if detector_model else {})
            detector = DETECTORS.get(detector)(load_object_names(data_dir), **kwargs)
        self.detector = detector
        self.color_classifier = color_classifier or ClipColorClassifier(clip_model, clip_pretrained, device=device)
        parts = [getattr(self.detector, "version", type(self.detector).__name__),
                 getattr(self.color_classifier, "version", type(self.color_classifier).__name__),
                 f"rules geneval@af4902f {self.options}"]
        self.version = "; ".join(parts)

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        rows = []
        for it in items:
            if "include" not in it.metadata or "tag" not in it.metadata:
                raise ScoringInputError(
                    f"prompt {it.prompt_id}: GenEval scoring needs the prompt's official metadata "
                    "('tag', 'include'); load prompts with load_prompts('geneval')"
                )
            image = load_image(it.image_path)
            result = judge(it.metadata, self.detector(image), image=image,
                           color_classifier=self.color_classifier, options=self.options)
            details = {
                "tag": it.metadata["tag"],
                "reason": result.reason,
                "kept": {c: [[*d.box, d.score] for d in dets] for c, dets in result.kept.items()},
            }
            rows.append(ScoreRow(it.prompt_id, it.sample, self.metric, float(result.correct),
                                 self.name, self.version, details))
        return rows
