"""Image layouts, atomic PNG writing and the images.jsonl sidecar used for per-image resume."""
from __future__ import annotations

import io
import json
import os
import re

import pytest
from PIL import Image

from tsbench.benchmarks import BENCHMARKS, Prompt, PromptFileError
from tsbench.benchmarks import layout


def test_geneval_layout_matches_the_official_evaluator(tmp_path):
    p = BENCHMARKS.get("geneval").image_path(tmp_path, "00012", 3)
    assert p == tmp_path / "00012" / "samples" / "0003.png"
    # the official evaluate_images.py accepts all-digit folders and names matching \d+\.png
    assert p.parent.parent.name.isdigit() and re.match(r"\d+\.png", p.name)
    meta = {"tag": "counting", "include": [{"class": "cup", "count": 2}],
            "exclude": [{"class": "cup", "count": 3}], "prompt": "a photo of two cups"}
    mpath = layout.write_geneval_metadata(tmp_path, 12, meta)
    assert mpath == tmp_path / "00012" / "metadata.jsonl"
    with open(mpath) as fp:  # the official code reads it with json.load
        assert json.load(fp) == meta


def test_keyed_layout_sample_zero_is_the_plain_key(tmp_path):
    # GenAI-Bench: <key>.jpeg, the files t2v_metrics' generate.py writes and evaluate.py reads
    genai = BENCHMARKS.get("genai-bench")
    assert genai.image_path(tmp_path, "00001", 0) == tmp_path / "00001.jpeg"
    assert genai.image_path(tmp_path, "00001", 2) == tmp_path / "00001_2.jpeg"
    assert BENCHMARKS.get("jsonl").image_path(tmp_path, "my-prompt", 1) == tmp_path / "my-prompt_1.png"
    assert BENCHMARKS.get("shapes").image_path(tmp_path, "00003", 0) == tmp_path / "00003.png"
    with pytest.raises(PromptFileError, match="cannot be used as a file name"):
        layout.keyed_image_path(tmp_path, "../escape", 0)
    with pytest.raises(ValueError, match="sample index"):
        layout.keyed_image_path(tmp_path, "a", -1)


def test_write_png_is_atomic_and_lossless(tmp_path, monkeypatch):
    img = Image.new("RGB", (8, 6), (1, 2, 3))
    img.putpixel((5, 4), (250, 0, 7))
    path = layout.write_png(img, tmp_path / "a" / "x.png")
    with Image.open(path) as back:
        assert back.format == "PNG" and back.convert("RGB").tobytes() == img.tobytes()
    assert os.listdir(path.parent) == ["x.png"]

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        layout.write_png(img, tmp_path / "a" / "y.png")
    assert os.listdir(path.parent) == ["x.png"]  # neither a partial y.png nor a temporary file


def record(pid, sample, path, config="c1", text_used="original"):
    return layout.ImageRecord(prompt_id=pid, sample=sample, seed=42 + sample, config_hash=config,
                              path=path, text_used=text_used)


def test_sidecar_round_trip_and_done_images(tmp_path):
    for name in ("00001.png", "00002.png"):
        layout.write_png(Image.new("RGB", (2, 2)), tmp_path / name)
    layout.append_record(tmp_path, record("00001", 0, "00001.png"))
    layout.append_record(tmp_path, record("00002", 0, "00002.png", config="c2", text_used="rewritten"))
    layout.append_record(tmp_path, record("00003", 0, "00003.png"))  # recorded, but the file is gone
    recs = list(layout.read_records(tmp_path))
    assert [r.prompt_id for r in recs] == ["00001", "00002", "00003"] and recs[1].text_used == "rewritten"
    lines = (tmp_path / layout.SIDECAR).read_text().splitlines()
    assert set(json.loads(lines[0])) == {"prompt_id", "sample", "seed", "config_hash", "path", "text_used"}
    assert layout.done_images(tmp_path) == {("00001", 0), ("00002", 0)}
    assert layout.done_images(tmp_path, config_hash="c1") == {("00001", 0)}
    assert layout.done_images(tmp_path / "fresh") == set()


def test_sidecar_survives_a_torn_write_and_rejects_foreign_lines(tmp_path):
    for name in ("a.png", "c.png"):
        layout.write_png(Image.new("RGB", (2, 2)), tmp_path / name)
    layout.append_record(tmp_path, record("a", 0, "a.png"))
    with open(tmp_path / layout.SIDECAR, "a") as f:
        f.write('{"prompt_id": "b", "sam')  # crash mid-append
    with pytest.warns(UserWarning, match="images.jsonl:2: ignoring an incomplete line"):
        assert layout.done_images(tmp_path) == {("a", 0)}
    layout.append_record(tmp_path, record("c", 0, "c.png"))  # the next run appends after the torn line
    assert (tmp_path / layout.SIDECAR).read_text().splitlines()[2].startswith('{"prompt_id": "c"')
    with pytest.warns(UserWarning, match="incomplete line"):
        assert layout.done_images(tmp_path) == {("a", 0), ("c", 0)}
    (tmp_path / layout.SIDECAR).write_text('{"bad": 1}\n')
    with pytest.raises(PromptFileError, match=r"images.jsonl:1: malformed image record"):
        layout.done_images(tmp_path)


def test_record_rejects_unknown_text_used(tmp_path):
    with pytest.raises(ValueError, match="text_used"):
        layout.append_record(tmp_path, record("a", 0, "a.png", text_used="both"))


def test_save_image_writes_layout_png_and_record(tmp_path):
    meta = {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"}
    p = Prompt("00001", "a photo of a cow", ("single_object",), meta, rewritten="a cow grazing in a field")
    path = layout.save_image(tmp_path, BENCHMARKS.get("geneval"), p, 2, seed=7, config_hash="h",
                             image=Image.new("RGB", (4, 4)))
    assert path == tmp_path / "00001" / "samples" / "0002.png" and path.is_file()
    assert json.loads((tmp_path / "00001" / "metadata.jsonl").read_text()) == meta
    (rec,) = layout.read_records(tmp_path)
    assert rec == layout.ImageRecord("00001", 2, 7, "h", "00001/samples/0002.png", "rewritten")
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    g = layout.save_image(tmp_path / "g", BENCHMARKS.get("genai-bench"), Prompt("00009", "x"), 0, 1, "h", image)
    assert g == tmp_path / "g" / "00009.jpeg" and layout.done_images(tmp_path / "g", "h") == {("00009", 0)}
    with Image.open(g) as back:  # a JPEG as Pillow's default save writes it (what the official generator makes)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG")
        assert back.format == "JPEG" and g.read_bytes() == buffer.getvalue()
