"""Exact ShapesBench judge: palette segmentation + geometry replace GenEval's detector and CLIP,
and GenEval's own rule code (``geneval_rules.judge``) makes the decision.

Objects are connected components of pixels within ``tolerance`` (L-inf) of a palette colour; the
class comes from the fill ratio of the component's bounding box (square 1, circle pi/4, triangle
1/2), and every detection scores 1.0, so counting's 0.9 threshold keeps them all.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from tsbench.scoring.geneval_rules import Detection, RuleOptions, judge

from .scenes import KINDS, PALETTE

TOLERANCE = 48  # half the smallest palette separation (115) minus slack: colour ranges never overlap
MIN_AREA = 16  # pixels; smaller components are noise (the smallest clean shape at 64² has ~40)
SQUARE_MIN_FILL = 0.9  # clean renders: square 1.0, circle 0.73-0.80, triangle 0.50-0.56
CIRCLE_MIN_FILL = 0.65

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.array([PALETTE[c] for c in _PALETTE_NAMES], dtype=np.int16)


def classify_kind(fill_ratio: float) -> str:
    """Shape class from (component area) / (bounding-box area)."""
    if fill_ratio >= SQUARE_MIN_FILL:
        return "square"
    return "circle" if fill_ratio >= CIRCLE_MIN_FILL else "triangle"


def detect(image: np.ndarray, tolerance: int = TOLERANCE, min_area: int = MIN_AREA) -> dict[str, list[Detection]]:
    """GenEval-style detections per class: box ``(x1, y1, x2, y2)`` (x2/y2 exclusive), score 1.0, mask."""
    pixels = np.asarray(image, dtype=np.int16)[..., :3]
    found: dict[str, list[Detection]] = {k: [] for k in KINDS}
    for rgb in _PALETTE_RGB:
        labels, n = ndimage.label(np.abs(pixels - rgb).max(axis=-1) <= tolerance)
        for index, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels == index
            area = int(mask[ys, xs].sum())
            if area < min_area:
                continue
            box_area = (ys.stop - ys.start) * (xs.stop - xs.start)
            kind = classify_kind(area / box_area)
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
