"""Exact ShapesBench judge: palette segmentation + geometry replace GenEval's detector and CLIP,
and GenEval's own rule code (``geneval_rules.judge``) makes the decision.

Objects are connected components of pixels within ``tolerance`` (L-inf) of a palette colour; the
class comes from where the component's mass sits in its bounding box (an upward triangle's is low)
and then from which template, drawn by the renderer's own code, it overlaps best. That is exact on
clean renders and tolerant of the rounded corners and soft tips of VQ reconstructions, where area
ratios alone confuse squares, circles and triangles. Every detection scores 1.0, so counting's 0.9 threshold keeps them all.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from tsbench.scoring.geneval_rules import Detection, RuleOptions, judge

from .scenes import KINDS, PALETTE, draw_shape

TOLERANCE = 48  # half the smallest palette separation (115) minus slack: colour ranges never overlap
# Measured on VQ reconstructions of test scenes: triangles 0.55-0.67, circles and squares 0.47-0.54.
TRIANGLE_MIN_CENTROID = 0.545
MIN_AREA = 16  # pixels; smaller components are noise (the smallest clean shape at 64² has ~40)

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.array([PALETTE[c] for c in _PALETTE_NAMES], dtype=np.int16)


@lru_cache(maxsize=4096)
def _template(kind: str, height: int, width: int) -> np.ndarray:
    image = Image.new("1", (width, height), 0)
    draw_shape(ImageDraw.Draw(image), kind, (0, 0, width - 1, height - 1), 1)
    return np.array(image, dtype=bool)


def _iou(kind: str, mask: np.ndarray) -> float:
    template = _template(kind, *mask.shape)
    return float((template & mask).sum() / (template | mask).sum())


def classify_kind(mask: np.ndarray) -> str:
    """Shape class of a component cropped to its bounding box. An upward triangle keeps its mass low
    (centroid at ~2/3 of the height, 1/2 for circles and squares) even when a reconstruction rounds its
    tip; squares and circles then differ by which template they overlap more."""
    centroid_y = (np.nonzero(mask)[0].mean() + 0.5) / mask.shape[0]
    if centroid_y >= TRIANGLE_MIN_CENTROID:
        return "triangle"
    return max(("square", "circle"), key=lambda kind: _iou(kind, mask))


def detect(image: np.ndarray, tolerance: int = TOLERANCE, min_area: int = MIN_AREA) -> dict[str, list[Detection]]:
    """GenEval-style detections per class: box ``(x1, y1, x2, y2)`` (x2/y2 exclusive), score 1.0, mask."""
    pixels = np.asarray(image, dtype=np.int16)[..., :3]
    found: dict[str, list[Detection]] = {k: [] for k in KINDS}
    for rgb in _PALETTE_RGB:
        labels, n = ndimage.label(np.abs(pixels - rgb).max(axis=-1) <= tolerance)
        for index, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels == index
            if int(mask[ys, xs].sum()) < min_area:
                continue
            kind = classify_kind(mask[ys, xs])
            found[kind].append(Detection((float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)), 1.0, mask))
    return found


class PaletteColorClassifier:
    """GenEval ``ColorClassifier``: the palette colour nearest to the mean pixel under each mask."""

    def __call__(self, image: Any, objects: Sequence[Detection], classname: str) -> list[str]:
        pixels = np.asarray(image, dtype=np.float64)[..., :3]
        return [_PALETTE_NAMES[int(np.abs(_PALETTE_RGB - pixels[obj.mask].mean(axis=0)).max(axis=1).argmin())]
                for obj in objects]


def judge_image(image: np.ndarray, metadata: Mapping[str, Any], options: RuleOptions = RuleOptions()
                ) -> tuple[bool, str]:
    """GenEval's per-image decision (correct, reason) on a ShapesBench image."""
    result = judge(metadata, detect(image), image=image, color_classifier=PaletteColorClassifier(), options=options)
    return result.correct, result.reason
