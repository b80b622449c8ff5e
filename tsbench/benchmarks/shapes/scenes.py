"""Flat-coloured shape scenes and their exact, aliasing-free renderer.

Geometry is stored in image-relative units (0..1) so one scene renders at any resolution; drawing
uses PIL ``ImageDraw`` without anti-aliasing, so every shape pixel has exactly its palette colour and
the oracle can segment clean renders by colour equality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("circle", "square", "triangle")
# A subset of GenEval's colour vocabulary (geneval_rules.COLORS), so colour clauses and reason texts
# stay GenEval's; pairwise L-inf distance >= 115 and >= 127 from the background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 140, 0),
    "yellow": (255, 255, 0),
    "green": (0, 200, 0),
    "blue": (0, 0, 255),
    "purple": (160, 0, 200),
}
BACKGROUND = (128, 128, 128)
MIN_RENDER_SIZE = 64  # below this the smallest shapes get too few pixels to classify reliably


@dataclass(frozen=True)
class Shape:
    """One shape; ``cx``, ``cy``, ``size`` (bounding-box side) are fractions of the image side."""

    kind: str
    colour: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shape kind {self.kind!r}; known: {KINDS}")
        if self.colour not in PALETTE:
            raise ValueError(f"unknown colour {self.colour!r}; known: {tuple(PALETTE)}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Relative ``(x0, y0, x1, y1)``."""
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]


def pixel_box(shape: Shape, size: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box of ``shape`` in a ``size``² image."""
    x0, y0, x1, y1 = (round(v * size) for v in shape.box)
    return x0, y0, x1 - 1, y1 - 1


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """``size``×``size``×3 uint8 image; deterministic (no randomness, no anti-aliasing)."""
    if size < MIN_RENDER_SIZE:
        raise ValueError(f"render size {size} < {MIN_RENDER_SIZE}")
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        draw_shape(draw, shape.kind, pixel_box(shape, size), PALETTE[shape.colour])
    return np.array(image, dtype=np.uint8)  # a writeable copy, unlike np.asarray


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill: object) -> None:
    """One shape filling the inclusive pixel ``box``; also draws the oracle's templates."""
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:  # upward isosceles triangle filling its box
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=fill)
