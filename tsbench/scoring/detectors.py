"""Object detectors for GenEval: image -> {GenEval class name: [Detection]}.

``mask2former`` uses transformers' ``Mask2FormerForUniversalSegmentation`` (COCO instance
segmentation). Its post-processing mirrors mmdetection's Mask2Former (top-k over queries × classes,
score = class probability × mean mask probability), and boxes are the tight boxes of the masks as in
mmdet's ``mask2bbox``; weights and resizing differ from the official mmdet 2.x Swin-S checkpoint, so
numbers are close to but not identical with the official evaluator (``geneval-official`` runs that).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..config.registry import Registry
from .base import ScorerUnavailable, default_device
from .geneval_rules import Detection

DEFAULT_MASK2FORMER = "facebook/mask2former-swin-small-coco-instance"

DETECTORS: Registry[type] = Registry("GenEval detector")
DETECTORS.register("mask2former", "tsbench.scoring.detectors:Mask2FormerDetector")


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """mmdet ``mask2bbox``: (x_min, y_min, x_max + 1, y_max + 1) of the foreground pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


class Mask2FormerDetector:
    def __init__(
        self,
        class_names: list[str],
        model: str = DEFAULT_MASK2FORMER,
        *,
        device: str | None = None,
        min_score: float = 0.3,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> None:
        """``class_names``: GenEval's object_names.txt (COCO's 80 classes in contiguous id order,
        GenEval spelling). ``min_score``: detections below it are dropped early to save memory;
        0.3 is the lowest official threshold, so the rules see everything they can use."""
        try:
            import transformers
        except ImportError as e:
            raise ScorerUnavailable(f"transformers is not installed ({e}); pip install 'tsbench[hf]'") from None
        self.device = device or default_device()
        self.min_score = min_score
        self.class_names = list(class_names)
        kwargs = {"revision": revision, "local_files_only": local_files_only}
        try:
            self.processor = transformers.AutoImageProcessor.from_pretrained(model, **kwargs)
            self.model = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(model, **kwargs)
        except OSError as e:
            raise ScorerUnavailable(f"cannot load Mask2Former {model!r}: {str(e).splitlines()[0]}") from None
        if self.model.config.num_labels != len(self.class_names):
            raise ScorerUnavailable(
                f"{model!r} predicts {self.model.config.num_labels} classes, GenEval needs the {len(self.class_names)} "
                "COCO classes; use a COCO instance-segmentation checkpoint"
            )
        self.model.to(self.device).eval()
        commit = getattr(self.model.config, "_commit_hash", None) or revision or "local"
        self.version = f"mask2former {model}@{commit}; transformers {transformers.__version__}"

    def __call__(self, image: Any) -> dict[str, list[Detection]]:
        import torch

        inputs = self.processor(images=[image], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_instance_segmentation(
            outputs, threshold=self.min_score, target_sizes=[image.size[::-1]], return_binary_maps=True
        )[0]
        detections: dict[str, list[Detection]] = {}
        masks = result["segmentation"]
        for k, seg in enumerate(result["segments_info"]):
            mask = masks[k].bool().cpu().numpy()
            name = self.class_names[seg["label_id"]]
            detections.setdefault(name, []).append(Detection(mask_to_box(mask), float(seg["score"]), mask))
        return detections
