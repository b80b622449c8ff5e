"""GenEval's per-image decision rules, detector-agnostic.

A line-by-line port of ``evaluate_image``/``evaluate``/``relative_position`` in djghosh13/geneval
``evaluation/evaluate_images.py`` (commit af4902f): same thresholds (0.3; 0.9 for every class when
the tag is ``counting``; strict ``>``), at most 16 detections per class by descending score,
optional per-class NMS (``max_overlap`` 1.0 = off), include clauses (AND) with colour and position
checks on the ``count`` most confident objects, exclude clauses (OR) with ``>=``, and the same
reason texts. Only deviation: relations in a position reason are listed sorted (the official code
joins a set, whose order varies between runs).

Colour is decided by a pluggable ``ColorClassifier`` (``geneval_scorer.ClipColorClassifier`` is the
official CLIP one), so the rules are testable with a fake.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COLOR_TEMPLATES = ("a photo of a {c} {classname}", "a photo of a {c}-colored {classname}", "a photo of a {c} object")


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    score: float
    mask: Any = None  # optional HxW bool array (used for the grey-background colour crop)


@dataclass(frozen=True)
class RuleOptions:
    """The official ``--options`` defaults."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    @classmethod
    def from_strings(cls, options: Mapping[str, Any]) -> "RuleOptions":
        """From official-style ``key=value`` options; unknown keys are an error (a typo would
        otherwise silently keep the default)."""
        fields = {"threshold": float, "counting_threshold": float, "max_objects": int,
                  "max_overlap": float, "position_threshold": float}
        unknown = set(options) - set(fields)
        if unknown:
            raise ValueError(f"unknown GenEval rule option(s) {sorted(unknown)}; known: {sorted(fields)}")
        return cls(**{k: fields[k](v) for k, v in options.items()})


class ColorClassifier(Protocol):
    def __call__(self, image: Any, objects: Sequence[Detection], classname: str) -> list[str]:
        """Predicted colour (one of COLORS) of each object, in order."""


@dataclass(frozen=True)
class Judgement:
    correct: bool
    reason: str
    kept: dict[str, list[Detection]]


def compute_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    area = lambda b: max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)  # noqa: E731 (official +1 convention)
    inter = area([max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])])
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0


def filter_detections(
    detections: Mapping[str, Sequence[Detection]], tag: str, options: RuleOptions = RuleOptions()
) -> dict[str, list[Detection]]:
    """Per class: sort by score (descending), keep score > threshold, keep the first ``max_objects``,
    then greedy NMS unless ``max_overlap`` is 1. Classes with nothing left are dropped."""
    threshold = options.counting_threshold if tag == "counting" else options.threshold
    kept: dict[str, list[Detection]] = {}
    for classname, dets in detections.items():
        if not dets:
            continue
        scores = np.array([d.score for d in dets], dtype=float)
        order = np.argsort(scores)[::-1]  # as the official code, including its tie order
        order = order[scores[order] > threshold][: options.max_objects].tolist()
        out = []
        while order:
            best = order.pop(0)
            out.append(dets[best])
            order = [o for o in order if options.max_overlap == 1
                     or compute_iou(dets[best].box, dets[o].box) < options.max_overlap]
        if out:
            kept[classname] = out
    return kept


def relative_position(obj_a: Detection, obj_b: Detection, position_threshold: float = 0.1) -> set[str]:
    """Position of A relative to B (image y grows downward), margin-adjusted by object sizes."""
    boxes = np.array([obj_a.box, obj_b.box], dtype=float)[:, :4].reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - position_threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def evaluate(
    metadata: Mapping[str, Any],
    objects: Mapping[str, Sequence[Detection]],
    *,
    image: Any = None,
    color_classifier: ColorClassifier | None = None,
    position_threshold: float = 0.1,
) -> tuple[bool, str]:
    """Apply include (AND) and exclude (OR) clauses to already filtered, score-sorted detections."""
    correct = True
    reason: list[str] = []
    matched_groups: list[Sequence[Detection] | None] = []
    for req in metadata.get("include", []):
        classname, count = req["class"], req["count"]
        matched = True
        found = list(objects.get(classname, []))[:count]
        if len(found) < count:
            correct = matched = False
            reason.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in req:
                if color_classifier is None:
                    raise ValueError(f"prompt {metadata.get('prompt')!r} needs colour classification; pass a color_classifier")
                colors = color_classifier(image, found, classname)
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reason.append(
                        f"expected {req['color']} {classname}>={count}, found "
                        f"{colors.count(req['color'])} {req['color']}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if "position" in req and matched:
                expected_rel, target_group = req["position"]
                if matched_groups[target_group] is None:
                    correct = matched = False
                    reason.append(f"no target for {classname} to be {expected_rel}")
                else:
                    for obj in found:
                        for target in matched_groups[target_group]:
                            true_rels = relative_position(obj, target, position_threshold)
                            if expected_rel not in true_rels:
                                correct = matched = False
                                reason.append(f"expected {classname} {expected_rel} target, found "
                                              f"{' and '.join(sorted(true_rels))} target")
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        classname = req["class"]
        if len(objects.get(classname, [])) >= req["count"]:
            correct = False
            reason.append(f"expected {classname}<{req['count']}, found {len(objects[classname])}")
    return correct, "\n".join(reason)


def judge(
    metadata: Mapping[str, Any],
    detections: Mapping[str, Sequence[Detection]],
    *,
    image: Any = None,
    color_classifier: ColorClassifier | None = None,
    options: RuleOptions = RuleOptions(),
) -> Judgement:
    """Whole per-image decision from raw (unfiltered) detections."""
    kept = filter_detections(detections, metadata["tag"], options)
    correct, reason = evaluate(metadata, kept, image=image, color_classifier=color_classifier,
                               position_threshold=options.position_threshold)
    return Judgement(correct, reason, kept)
