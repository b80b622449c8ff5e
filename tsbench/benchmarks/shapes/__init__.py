"""ShapesBench: synthetic shape scenes whose GenEval-style prompts are judged by an exact oracle."""
from .oracle import PaletteColorClassifier, detect, judge_image
from .prompts import TAGS, all_prompts, sample_scene, shapes_prompts, split_prompts
from .scenes import KINDS, PALETTE, Scene, Shape, render

__all__ = [
    "KINDS", "PALETTE", "Scene", "Shape", "render",
    "TAGS", "all_prompts", "sample_scene", "shapes_prompts", "split_prompts",
    "PaletteColorClassifier", "detect", "judge_image",
]
