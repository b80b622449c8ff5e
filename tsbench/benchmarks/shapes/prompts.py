"""ShapesBench prompts in GenEval's six tags and metadata schema, plus scenes that satisfy them.

The metadata dicts (``tag``, ``include``, ``exclude`` on counting, ``prompt``) follow GenEval's
``evaluation_metadata.jsonl`` so ``geneval_rules.judge`` decides them unchanged. Position clauses
use GenEval's encoding: ``include[0]`` is the reference object, ``include[1]`` carries
``"position": [relation, 0]``. Train and test never share a prompt text (split by hash rank per tag).
"""
from __future__ import annotations

import hashlib
import itertools
import random
from typing import Any, Mapping, Sequence

from tsbench.benchmarks.geneval import TAGS
from tsbench.scoring.geneval_rules import Detection, relative_position

from .scenes import KINDS, PALETTE, Scene, Shape

SPLITS = ("train", "test")
COLOURS = tuple(PALETTE)
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
RELATIONS = ("left of", "right of", "above", "below")
TEST_FRACTION = 0.25
SIZE_RANGE = (0.20, 0.32)  # bounding-box side, fraction of the image side
GAP = 0.08  # min free space between boxes: 5 px at 64², so VQ reconstructions never merge two shapes
BORDER = 0.02
# The sampler demands the relation at twice GenEval's margin, so pixel rounding never flips it.
RELATION_MARGIN = 0.2


def _record(tag: str, prompt: str, include: list[dict[str, Any]], exclude: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    record: dict[str, Any] = {"tag": tag, "include": include}
    if exclude is not None:
        record["exclude"] = exclude
    record["prompt"] = prompt
    return record


def _plural(kind: str) -> str:
    return kind + "s"


def _phrase(kind: str, colour: str | None = None) -> str:
    return f"a {colour} {kind}" if colour else f"a {kind}"


def _clause(kind: str, colour: str | None = None, count: int = 1) -> dict[str, Any]:
    clause: dict[str, Any] = {"class": kind, "count": count}
    if colour:
        clause["color"] = colour
    return clause


def all_prompts(tag: str) -> list[dict[str, Any]]:
    """Every prompt of ``tag`` (both splits), in a fixed order."""
    pairs = list(itertools.permutations(KINDS, 2))
    if tag == "single_object":
        return [_record(tag, _phrase(k), [_clause(k)]) for k in KINDS]
    if tag == "two_object":
        return [_record(tag, f"{_phrase(a)} and {_phrase(b)}", [_clause(a), _clause(b)]) for a, b in pairs]
    if tag == "counting":
        return [_record(tag, f"{NUMBERS[n]} {k if n == 1 else _plural(k)}", [_clause(k, count=n)],
                        [{"class": k, "count": n + 1}]) for k in KINDS for n in NUMBERS]
    if tag == "colors":
        return [_record(tag, _phrase(k, c), [_clause(k, c)]) for k in KINDS for c in COLOURS]
    if tag == "position":  # distinct classes: same-class clauses would tie on score in GenEval's rules
        return [_record(tag, f"{_phrase(a, ca)} {rel} {_phrase(b, cb)}",
                        [_clause(b, cb), {**_clause(a, ca), "position": [rel, 0]}])
                for a, b in pairs for rel in RELATIONS for ca in COLOURS for cb in COLOURS]
    if tag == "color_attr":
        return [_record(tag, f"{_phrase(a, ca)} and {_phrase(b, cb)}", [_clause(a, ca), _clause(b, cb)])
                for a, b in pairs for ca, cb in itertools.permutations(COLOURS, 2)]
    raise ValueError(f"unknown tag {tag!r}; known: {TAGS}")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_prompts(tag: str, split: str) -> list[dict[str, Any]]:
    """The ``split`` share of ``tag``: the lowest-hash quarter (at least one prompt) is test, so the
    split is fixed by the texts alone and never depends on a seed."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
    ranked = sorted(all_prompts(tag), key=lambda r: _hash(r["prompt"]))
    n_test = max(1, round(TEST_FRACTION * len(ranked)))
    return ranked[:n_test] if split == "test" else ranked[n_test:]


def tag_counts(n: int, weights: Sequence[float] | None = None) -> list[int]:
    """How many of ``n`` prompts each tag (``TAGS`` order) gets: proportional to ``weights`` (equal when
    None), largest remainders first, so the counts always add up to ``n``."""
    weights = [1.0] * len(TAGS) if weights is None else [float(w) for w in weights]
    if len(weights) != len(TAGS) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"tag weights must be {len(TAGS)} non-negative numbers ({', '.join(TAGS)}), got {weights}")
    shares = [n * w / sum(weights) for w in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(TAGS)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def shapes_prompts(split: str, n: int, seed: int = 0, weights: Sequence[float] | None = None
                   ) -> list[dict[str, Any]]:
    """``n`` prompts over the six tags (balanced, or in proportion to ``weights``), each tag cycling
    through a seeded shuffle of its split's prompts so repeats only start once all were used."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for tag, count in zip(TAGS, tag_counts(n, weights)):
        pool = split_prompts(tag, split)
        rng.shuffle(pool)
        out += [pool[j % len(pool)] for j in range(count)]
    rng.shuffle(out)
    return out


def _separated(a: Shape, b: Shape) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax0 >= bx1 + GAP or bx0 >= ax1 + GAP or ay0 >= by1 + GAP or by0 >= ay1 + GAP


def _place(specs: list[tuple[str, str]], rng: random.Random, tries: int = 50) -> list[Shape] | None:
    """Random non-overlapping placement of ``(kind, colour)`` specs, or None if one did not fit."""
    shapes: list[Shape] = []
    for kind, colour in specs:
        size = rng.uniform(*SIZE_RANGE)
        lo, hi = size / 2 + BORDER, 1 - size / 2 - BORDER
        for _ in range(tries):
            shape = Shape(kind, colour, rng.uniform(lo, hi), rng.uniform(lo, hi), size)
            if all(_separated(shape, other) for other in shapes):
                shapes.append(shape)
                break
        else:
            return None
    return shapes


def _as_detection(shape: Shape) -> Detection:
    return Detection(shape.box, 1.0)


def relations_hold(metadata: Mapping[str, Any], groups: list[list[Shape]],
                   position_threshold: float = RELATION_MARGIN) -> bool:
    """Whether every position clause holds between its group and the target group (GenEval's rule)."""
    for clause, group in zip(metadata["include"], groups):
        if "position" in clause:
            relation, target = clause["position"]
            if any(relation not in relative_position(_as_detection(a), _as_detection(b), position_threshold)
                   for a in group for b in groups[target]):
                return False
    return True


def sample_scene(metadata: Mapping[str, Any], rng: random.Random, max_tries: int = 1000) -> Scene:
    """A scene with exactly the objects ``metadata`` includes (unconstrained colours drawn from the
    palette) whose positions satisfy its relations; shapes are in clause order."""
    specs = [[(c["class"], c.get("color") or rng.choice(COLOURS)) for _ in range(c["count"])]
             for c in metadata["include"]]
    for _ in range(max_tries):
        shapes = _place([s for group in specs for s in group], rng)
        if shapes is None:
            continue
        bounds = list(itertools.accumulate(len(g) for g in specs))
        groups = [shapes[end - len(g):end] for g, end in zip(specs, bounds)]
        if relations_hold(metadata, groups):
            return Scene(tuple(shapes))
    raise RuntimeError(f"no scene found for {metadata['prompt']!r} in {max_tries} tries")
