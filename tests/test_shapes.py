"""ShapesBench: the oracle is exact on clean renders, rejects wrong scenes, and the prompt sets
are deterministic, split-disjoint and in GenEval's metadata schema."""
from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import numpy as np
import pytest

from tsbench.benchmarks.shapes import (
    KINDS, PALETTE, TAGS, Scene, Shape, all_prompts, detect, judge_image, render, sample_scene,
    shapes_prompts, split_prompts,
)
from tsbench.benchmarks.shapes.prompts import RELATIONS
from tsbench.benchmarks.shapes.scenes import BACKGROUND, pixel_box
from tsbench.scoring.geneval_rules import COLORS


def test_oracle_is_exact_on_1000_clean_renders() -> None:
    prompts = shapes_prompts("train", 500, seed=0) + shapes_prompts("test", 500, seed=1)
    rng = random.Random(0)
    failures = []
    for i, metadata in enumerate(prompts):
        image = render(sample_scene(metadata, rng), 64 if i % 2 else 128)
        correct, reason = judge_image(image, metadata)
        if not correct:
            failures.append((metadata["prompt"], reason))
    tags = Counter(p["tag"] for p in prompts)
    assert set(tags) == set(TAGS) and min(tags.values()) >= 1000 // len(TAGS)
    assert failures == []


def _other(options: tuple[str, ...], *used: str) -> str:
    return next(o for o in options if o not in used)


def _corruptions(metadata: dict, scene: Scene, rng: random.Random) -> dict[str, tuple[Scene, str]]:
    """Wrong scenes for ``metadata`` with the reason text each must produce. ``scene`` has the
    clauses' shapes in clause order (all coloured/positioned clauses have count 1)."""
    shapes, include = list(scene.shapes), metadata["include"]
    wrong = {"missing": (Scene(tuple(shapes[:-1])), f"expected {include[-1]['class']}>=")}
    if metadata["tag"] == "counting":
        clause = include[0]
        more = {**metadata, "include": [{**clause, "count": clause["count"] + 1}]}
        wrong["count+1"] = (sample_scene(more, rng), f"expected {clause['class']}<{clause['count'] + 1}")
    if metadata["tag"] in ("single_object", "two_object"):
        kind = _other(KINDS, *(c["class"] for c in include))
        wrong["wrong class"] = (Scene((dataclasses.replace(shapes[0], kind=kind), *shapes[1:])),
                                f"expected {include[0]['class']}>=1, found 0")
    for i, clause in enumerate(include):
        if "color" in clause:
            recoloured = shapes.copy()
            recoloured[i] = dataclasses.replace(shapes[i], colour=_other(tuple(PALETTE), clause["color"]))
            wrong[f"wrong colour {i}"] = (Scene(tuple(recoloured)), f"expected {clause['color']} {clause['class']}>=1")
        if "position" in clause:
            a, b = shapes[i], shapes[clause["position"][1]]
            swapped = [dataclasses.replace(s, cx=o.cx, cy=o.cy, size=o.size) for s, o in ((b, a), (a, b))]
            wrong["swapped"] = (Scene(tuple(swapped)), f"expected {clause['class']} {clause['position'][0]} target")
    return wrong


@pytest.mark.parametrize("tag", TAGS)
def test_oracle_rejects_wrong_scenes(tag: str) -> None:
    rng = random.Random(tag)
    kinds = set()
    for metadata in rng.sample(all_prompts(tag), min(12, len(all_prompts(tag)))):
        for kind, (scene, reason) in _corruptions(metadata, sample_scene(metadata, rng), rng).items():
            correct, got = judge_image(render(scene, 64), metadata)
            assert not correct and reason in got, (metadata["prompt"], kind, got)
            kinds.add(kind.split(" ")[0] if kind.startswith("wrong colour") else kind)
    expected = {"single_object": {"missing", "wrong class"}, "two_object": {"missing", "wrong class"},
                "counting": {"missing", "count+1"}, "colors": {"missing", "wrong"},
                "position": {"missing", "wrong", "swapped"}, "color_attr": {"missing", "wrong"}}
    assert kinds == expected[tag]


def test_detect_boxes_classes_and_noise() -> None:
    scene = Scene((Shape("circle", "red", 0.25, 0.25, 0.3), Shape("square", "blue", 0.75, 0.3, 0.2),
                   Shape("triangle", "yellow", 0.5, 0.75, 0.25)))
    image = render(scene, 128)
    image[0:2, 0:2] = PALETTE["green"]  # a 4-pixel speck is below MIN_AREA
    found = detect(image)
    for shape in scene.shapes:
        (det,) = found[shape.kind]
        x0, y0, x1, y1 = pixel_box(shape, 128)
        assert det.box == (x0, y0, x1 + 1, y1 + 1) and det.score == 1.0 and det.mask.sum() > 0


def test_renderer_is_deterministic_and_exact() -> None:
    metadata = all_prompts("counting")[-1]  # four triangles
    images = [render(sample_scene(metadata, random.Random(7)), 64).tobytes() for _ in range(2)]
    assert images[0] == images[1]
    assert render(sample_scene(metadata, random.Random(8)), 64).tobytes() != images[0]
    image = render(sample_scene(metadata, random.Random(7)), 128)
    assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    allowed = {BACKGROUND, *PALETTE.values()}
    assert {tuple(p) for p in image.reshape(-1, 3).tolist()} <= allowed


def test_splits_share_no_prompt_text() -> None:
    for tag in TAGS:
        train = {p["prompt"] for p in split_prompts(tag, "train")}
        test = {p["prompt"] for p in split_prompts(tag, "test")}
        assert train and test and not train & test
        assert train | test == {p["prompt"] for p in all_prompts(tag)}
    train = {p["prompt"] for p in shapes_prompts("train", 600, seed=0)}
    test = {p["prompt"] for p in shapes_prompts("test", 600, seed=0)}
    assert not train & test
    assert shapes_prompts("test", 50, seed=3) == shapes_prompts("test", 50, seed=3)
    assert shapes_prompts("test", 50, seed=3) != shapes_prompts("test", 50, seed=4)
    with pytest.raises(ValueError):
        split_prompts("colors", "val")


def _check_schema(record: dict) -> None:
    keys = ["tag", "include", "exclude", "prompt"] if record["tag"] == "counting" else ["tag", "include", "prompt"]
    assert list(record) == keys
    if record["tag"] == "counting":  # GenEval: exactly N, via exclude count N+1
        (clause,) = record["include"]
        assert record["exclude"] == [{"class": clause["class"], "count": clause["count"] + 1}]
    for index, clause in enumerate(record["include"]):
        assert set(clause) <= {"class", "count", "color", "position"} and {"class", "count"} <= set(clause)
        assert isinstance(clause["count"], int) and clause["count"] >= 1
        if "color" in clause:
            assert clause["color"] in COLORS
        if "position" in clause:
            relation, target = clause["position"]
            assert relation in RELATIONS and isinstance(target, int) and 0 <= target < index


def test_metadata_has_geneval_schema() -> None:
    for tag in TAGS:
        for record in all_prompts(tag):
            assert record["tag"] == tag and json.loads(json.dumps(record)) == record
            _check_schema(record)
            assert {c["class"] for c in record["include"]} <= set(KINDS)
    counting = {p["prompt"]: p for p in all_prompts("counting")}
    assert counting["three triangles"]["include"] == [{"class": "triangle", "count": 3}]
    assert counting["three triangles"]["exclude"] == [{"class": "triangle", "count": 4}]
    position = {p["prompt"]: p for p in all_prompts("position")}
    assert position["a red circle left of a blue square"]["include"] == [
        {"class": "square", "count": 1, "color": "blue"},
        {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]}]


def test_metadata_keys_match_official_geneval(shared_data) -> None:
    path = shared_data / "geneval" / "evaluation_metadata.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    official: dict[str, set] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        official.setdefault(record["tag"], set()).add(tuple(record))
    ours = {tag: {tuple(r) for r in all_prompts(tag)} for tag in TAGS}
    assert ours == official
