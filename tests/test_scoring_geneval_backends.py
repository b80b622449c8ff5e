"""GenEval backends: Mask2Former detector (tiny random config, offline), the CLIP colour classifier
(tiny open_clip), the in-process scorer, and the ``official`` subprocess backend with a stand-in
evaluator script and hand-written result files."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

from tsbench.benchmarks import layout  # noqa: E402
from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable, ScoringInputError  # noqa: E402
from tsbench.scoring.detectors import Mask2FormerDetector, mask_to_box  # noqa: E402
from tsbench.scoring.geneval_official import OfficialGenEvalScorer, parse_results  # noqa: E402
from tsbench.scoring.geneval_rules import COLORS, Detection  # noqa: E402
from tsbench.scoring.geneval_scorer import ClipColorClassifier, GenEvalScorer  # noqa: E402
from tiny_models import tiny_mask2former, tiny_open_clip  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = [f"class{i}" for i in range(80)]


@pytest.fixture(scope="module")
def mask2former_dir(tmp_path_factory):
    return tiny_mask2former(tmp_path_factory.mktemp("tiny-m2f"))


def test_mask_to_box_is_mmdet_mask2bbox():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:8] = True
    assert mask_to_box(mask) == (3.0, 2.0, 8.0, 5.0)
    assert mask_to_box(np.zeros((4, 4), dtype=bool)) == (0.0, 0.0, 0.0, 0.0)


def test_mask2former_yields_detections(mask2former_dir):
    det = Mask2FormerDetector(NAMES, str(mask2former_dir), device="cpu", min_score=0.0)
    image = Image.new("RGB", (50, 40), (30, 200, 10))
    out = det(image)
    dets = [d for ds in out.values() for d in ds]
    assert dets and set(out) <= set(NAMES)
    for d in dets:
        assert isinstance(d, Detection) and 0.0 <= d.score <= 1.0
        assert d.mask.shape == (40, 50) and d.mask.dtype == bool and d.mask.any()
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 50 and 0 <= y1 < y2 <= 40 and d.box == mask_to_box(d.mask)
    scores = sorted(d.score for d in dets)
    cut = (scores[0] + scores[-1]) / 2
    high = [d for ds in Mask2FormerDetector(NAMES, str(mask2former_dir), device="cpu", min_score=cut)(image).values()
            for d in ds]
    assert 0 < len(high) < len(dets) and all(d.score >= cut - 1e-6 for d in high)  # min_score drops the rest


def test_mask2former_needs_80_coco_classes(mask2former_dir):
    with pytest.raises(ScorerUnavailable, match="predicts 80 classes, GenEval needs the 3"):
        Mask2FormerDetector(NAMES[:3], str(mask2former_dir), device="cpu")
    with pytest.raises(ScorerUnavailable, match="cannot load Mask2Former"):
        Mask2FormerDetector(NAMES, "no-such-org/no-such-detector", device="cpu", local_files_only=True)


TINY = "tsbench-test-tiny-clip-colors"


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    return tiny_open_clip(tmp_path_factory.mktemp("tiny-clip"), TINY)


def test_colour_crops_grey_out_the_background_and_crop_to_the_box(clip_checkpoint):
    clf = ClipColorClassifier(TINY, clip_checkpoint, device="cpu")
    image = Image.new("RGB", (10, 8), (255, 0, 0))
    mask = np.zeros((8, 10), dtype=bool)
    mask[:, :4] = True
    crop = clf.crops(image, [Detection((0, 0, 6, 8), 0.9, mask)])[0]
    assert crop.size == (6, 8)
    assert crop.getpixel((1, 1)) == (255, 0, 0) and crop.getpixel((5, 1)) == (153, 153, 153)  # "#999"
    assert clf.crops(image, [Detection((0, 0, 6, 8), 0.9, None)])[0].getpixel((5, 1)) == (255, 0, 0)
    with pytest.raises(ScoringInputError, match="does not match image size"):
        clf.crops(image, [Detection((0, 0, 6, 8), 0.9, np.zeros((3, 3), dtype=bool))])


def test_colour_classifier_uses_three_templates_per_colour(clip_checkpoint, monkeypatch):
    clf = ClipColorClassifier(TINY, clip_checkpoint, device="cpu")
    texts = []
    real = clf.tokenizer
    monkeypatch.setattr(clf, "tokenizer", lambda t: texts.extend(t) or real(t))
    image = Image.new("RGB", (20, 20), (0, 0, 255))
    objs = [Detection((0, 0, 10, 10), 0.9), Detection((5, 5, 20, 20), 0.8)]
    colors = clf(image, objs, "cup")
    assert len(colors) == 2 and set(colors) <= set(COLORS)
    assert texts[:3] == ["a photo of a red cup", "a photo of a red-colored cup", "a photo of a red object"]
    assert len(texts) == 30
    clf(image, objs, "cup")
    assert len(texts) == 30  # classifier cached per class name


def test_geneval_scorer_with_pluggable_parts(tmp_path):
    img = tmp_path / "00000" / "samples" / "0000.png"
    layout.write_png(Image.new("RGB", (64, 64)), img)
    dog, cat = Detection((40, 0, 60, 20), 0.95), Detection((0, 0, 20, 20), 0.95)
    meta_pos = {"tag": "position", "include": [{"class": "dog", "count": 1},
                                               {"class": "cat", "count": 1, "position": ["left of", 0]}],
                "prompt": "a photo of a cat left of a dog"}
    meta_col = {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "green"}], "prompt": "green dog"}
    scorer = GenEvalScorer(detector=lambda image: {"dog": [dog], "cat": [cat]},
                           color_classifier=lambda image, objs, name: ["pink"] * len(objs))
    rows = scorer.score([ScoreItem("00000", 0, img, meta_pos["prompt"], meta_pos),
                         ScoreItem("00001", 2, img, meta_col["prompt"], meta_col)])
    assert [(r.prompt_id, r.sample, r.metric, r.score) for r in rows] == [
        ("00000", 0, "geneval", 1.0), ("00001", 2, "geneval", 0.0)]
    assert rows[0].details["kept"] == {"dog": [[40, 0, 60, 20, 0.95]], "cat": [[0, 0, 20, 20, 0.95]]}
    assert rows[1].details["reason"] == "expected green dog>=1, found 0 green; and 1 pink"
    with pytest.raises(ScoringInputError, match="needs the prompt's official metadata"):
        scorer.score([ScoreItem("00000", 0, img, "p", {})])
    strict = GenEvalScorer(detector=lambda image: {"dog": [Detection((0, 0, 1, 1), 0.5)]},
                           color_classifier=lambda *a: [], options={"threshold": "0.6"})
    meta = {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "dog"}
    assert strict.score([ScoreItem("00000", 0, img, "dog", meta)])[0].score == 0.0


def test_geneval_scorer_end_to_end_with_mask2former(mask2former_dir, tmp_path):
    if not (SHARED / "geneval").is_dir():
        pytest.skip(f"official files not available: {SHARED / 'geneval'} is absent")
    img = tmp_path / "x.png"
    Image.new("RGB", (48, 48), (200, 200, 200)).save(img)
    scorer = SCORERS.get("geneval")(detector_model=str(mask2former_dir), device="cpu", data_dir=SHARED,
                                    color_classifier=lambda image, objs, name: ["red"] * len(objs))
    meta = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
    row = scorer.score([ScoreItem("00000", 0, img, meta["prompt"], meta)])[0]
    assert row.score in (0.0, 1.0) and row.scorer == "geneval" and "mask2former" in row.scorer_version
    assert set(row.details) == {"tag", "reason", "kept"}


RESULTS = [
    {"filename": "/data/run/00012/samples/0003.png", "tag": "counting", "prompt": "a photo of three cups",
     "correct": False, "reason": "expected cup<4, found 4", "metadata": "{}", "details": "{}"},
    {"filename": "/data/run/00000/samples/0000.png", "tag": "single_object", "prompt": "a photo of a bench",
     "correct": True, "reason": "", "metadata": "{}", "details": "{}"},
]


def test_parse_official_results_file(tmp_path):
    f = tmp_path / "results.jsonl"
    # pandas writes "\/" in strings; json decoding must undo that
    f.write_text("\n".join(json.dumps(r).replace("/", "\\/") for r in RESULTS) + "\n")
    got = parse_results(f)
    assert [(r.prompt_index, r.sample, r.tag, r.correct, r.reason) for r in got] == [
        (12, 3, "counting", False, "expected cup<4, found 4"), (0, 0, "single_object", True, "")]
    f.write_text('{"tag": "counting"}\n')
    with pytest.raises(ScoringInputError, match="results.jsonl:1: not a GenEval result line"):
        parse_results(f)


STAND_IN = textwrap.dedent('''
    """Stand-in for evaluation/evaluate_images.py: same CLI and output format; image i is correct iff
    its sample number is even."""
    import argparse, json, os, re, sys
    p = argparse.ArgumentParser()
    p.add_argument("imagedir"); p.add_argument("--outfile"); p.add_argument("--model-path")
    p.add_argument("--model-config"); p.add_argument("--options", nargs="*", default=[])
    a = p.parse_args()
    if os.environ.get("FAIL_EVAL"):
        sys.exit("CUDA is required")
    out = []
    for sub in sorted(os.listdir(a.imagedir)):
        folder = os.path.join(a.imagedir, sub)
        if not (os.path.isdir(folder) and sub.isdigit()):
            continue
        meta = json.load(open(os.path.join(folder, "metadata.jsonl")))
        for name in sorted(os.listdir(os.path.join(folder, "samples"))):
            if re.match(r"\\d+\\.png", name):
                ok = int(name[:-4]) % 2 == 0
                out.append({"filename": os.path.join(folder, "samples", name), "tag": meta["tag"],
                            "prompt": meta["prompt"], "correct": ok, "reason": "" if ok else "odd",
                            "metadata": json.dumps(meta), "details": json.dumps({"argv": sys.argv[1:]})})
    with open(a.outfile, "w") as f:
        f.write("".join(json.dumps(r) + "\\n" for r in out))
''')


@pytest.fixture
def official_repo(tmp_path):
    repo = tmp_path / "geneval"
    (repo / "evaluation").mkdir(parents=True)
    (repo / "evaluation" / "evaluate_images.py").write_text(STAND_IN)
    return repo


def test_official_backend_runs_the_evaluator_and_maps_rows(official_repo, tmp_path, monkeypatch):
    root = tmp_path / "images"
    meta = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
    items = []
    for index in (0, 1):
        layout.write_geneval_metadata(root, index, meta)
        for s in range(3):
            path = layout.geneval_image_path(root, index, s)
            layout.write_png(Image.new("RGB", (4, 4)), path)
            items.append(ScoreItem(f"{index:05d}", s, path, meta["prompt"], meta))
    scorer = SCORERS.get("geneval-official")(python=sys.executable, repo=official_repo, model_path=tmp_path / "w",
                                             options={"max_objects": 8})
    assert scorer.command(root, tmp_path / "o.jsonl")[-2:] == ["--options", "max_objects=8"]
    monkeypatch.chdir(tmp_path)  # relative image paths must still work
    rel_items = [ScoreItem(it.prompt_id, it.sample, Path(it.image_path).relative_to(tmp_path), it.prompt, it.metadata)
                 for it in items[:4]]
    rows = scorer.score(rel_items)
    assert [(r.prompt_id, r.sample, r.score) for r in rows] == [
        ("00000", 0, 1.0), ("00000", 1, 0.0), ("00000", 2, 1.0), ("00001", 0, 1.0)]
    assert rows[1].details == {"tag": "single_object", "reason": "odd"} and rows[0].metric == "geneval"
    monkeypatch.setenv("FAIL_EVAL", "1")
    with pytest.raises(RuntimeError, match="CUDA is required"):
        scorer.score(items[:1])


def test_official_backend_input_errors(official_repo, tmp_path):
    with pytest.raises(ScorerUnavailable, match="evaluate_images.py not found"):
        OfficialGenEvalScorer(python=sys.executable, repo=tmp_path / "nope", model_path=tmp_path)
    with pytest.raises(ScorerUnavailable, match="does not exist"):
        OfficialGenEvalScorer(python=tmp_path / "no-python", repo=official_repo, model_path=tmp_path)
    scorer = OfficialGenEvalScorer(python=sys.executable, repo=official_repo, model_path=tmp_path)
    with pytest.raises(ScoringInputError, match="not in GenEval's layout"):
        scorer.score([ScoreItem("00000", 0, tmp_path / "00000.png", "p")])
    path = layout.geneval_image_path(tmp_path / "imgs", 0, 0)
    layout.write_png(Image.new("RGB", (4, 4)), path)
    with pytest.raises(ScoringInputError, match="metadata.jsonl is missing"):
        scorer.score([ScoreItem("00000", 0, path, "p")])
