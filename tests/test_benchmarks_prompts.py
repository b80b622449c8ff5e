"""Custom prompt files (txt, jsonl), rewrites, limit and the prompt-suite registry."""
from __future__ import annotations

import json

import pytest

from tsbench.benchmarks import BENCHMARKS, Benchmark, PromptFileError, apply_rewrites, load_jsonl, load_prompts, load_txt
from tsbench.config.registry import RegistryError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_ids_are_zero_padded_line_numbers_and_blank_lines_skipped(tmp_path):
    f = write(tmp_path / "p.txt", "a red cat\n\n  a blue dog  \n")
    ps = load_txt(f)
    assert [(p.id, p.text) for p in ps] == [("00000", "a red cat"), ("00002", "a blue dog")]
    assert ps.name == "p" and ps.version == "custom"
    assert all(p.text_used == "original" and p.generation_text == p.text for p in ps)


def test_txt_without_prompts_is_an_error(tmp_path):
    with pytest.raises(PromptFileError, match="no prompts"):
        load_txt(write(tmp_path / "e.txt", "\n \n"))


def test_missing_prompt_file_names_it(tmp_path):
    with pytest.raises(PromptFileError, match="does not exist"):
        load_txt(tmp_path / "nope.txt")


def test_jsonl_fields_tags_and_metadata(tmp_path):
    lines = [
        {"id": 7, "prompt": "two apples", "tags": ["counting"], "source": "me"},
        {"id": "b", "prompt": "a cube", "tags": "shape"},
    ]
    ps = load_jsonl(write(tmp_path / "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n"))
    assert [p.id for p in ps] == ["7", "b"]
    assert ps.prompts[0].tags == ("counting",) and ps.prompts[0].metadata == {"source": "me"}
    assert ps.prompts[1].tags == ("shape",)


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"prompt": "x"}', r"p.jsonl:2: missing field 'id'"),
        ('{"id": 1}', r"missing field 'prompt'"),
        ('{"id": 1, "prompt": ""}', r"'prompt' must be a non-empty string"),
        ('{"id": 1, "prompt": "x", "tags": [1]}', r"'tags' must be a list of strings"),
        ('{"id": "../x", "prompt": "x"}', r"cannot be used as a file name"),
        ('{"id": "0", "prompt": "dup"}', r"'0' occurs more than once"),
        ("[1, 2]", r"expected a JSON object"),
        ("{oops", r"p.jsonl:2: invalid JSON"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(tmp_path, line, match):
    f = write(tmp_path / "p.jsonl", '{"id": "0", "prompt": "ok"}\n' + line + "\n")
    with pytest.raises(PromptFileError, match=match):
        load_jsonl(f)


def test_rewrites_json_and_jsonl_record_text_used(tmp_path):
    ps = load_txt(write(tmp_path / "p.txt", "cat\ndog\n"))
    mapping = write(tmp_path / "r.json", json.dumps({"00000": "a fluffy cat", "00001": "a happy dog"}))
    rw = apply_rewrites(ps, mapping)
    assert [(p.text, p.rewritten, p.text_used, p.generation_text) for p in rw] == [
        ("cat", "a fluffy cat", "rewritten", "a fluffy cat"),
        ("dog", "a happy dog", "rewritten", "a happy dog"),
    ]
    assert rw.rewritten and not ps.rewritten
    assert rw.sha256 != ps.sha256  # the content hash sees the rewrite
    jl = write(tmp_path / "r.jsonl", '{"id": "00000", "rewritten": "c"}\n{"id": "00001", "prompt": "d"}\n')
    assert [p.generation_text for p in apply_rewrites(ps, jl)] == ["c", "d"]


def test_partial_rewrites_must_be_explicit_and_unknown_ids_always_fail(tmp_path):
    ps = load_txt(write(tmp_path / "p.txt", "cat\ndog\n"))
    partial = write(tmp_path / "r.json", json.dumps({"00001": "a dog"}))
    with pytest.raises(PromptFileError, match="no rewrite for 1 of 2"):
        apply_rewrites(ps, partial)
    mixed = apply_rewrites(ps, partial, partial=True)
    assert [p.text_used for p in mixed] == ["original", "rewritten"]
    wrong = write(tmp_path / "w.json", json.dumps({"1": "a dog"}))
    with pytest.raises(PromptFileError, match=r"not in prompt set .* look like \['00000', '00001'\]"):
        apply_rewrites(ps, wrong, partial=True)


def test_to_dict_records_text_used(tmp_path):
    ps = load_txt(write(tmp_path / "p.txt", "cat\n"))
    assert ps.prompts[0].to_dict()["text_used"] == "original"


def test_load_prompts_file_suites_limit_and_hash(tmp_path):
    f = write(tmp_path / "p.txt", "a\nb\nc\n")
    full = load_prompts("txt", path=f)
    first2 = load_prompts("txt", path=f, limit=2)
    assert [p.id for p in first2] == ["00000", "00001"]
    assert first2.sha256 != full.sha256 and len(full) == 3
    assert load_prompts("txt", path=f).sha256 == full.sha256  # deterministic
    r = write(tmp_path / "r.json", json.dumps({"00000": "A", "00001": "B", "00002": "C"}))
    assert [p.generation_text for p in load_prompts("txt", path=f, rewrites=r, limit=1)] == ["A"]
    jl = write(tmp_path / "p.jsonl", '{"id": "x", "prompt": "y"}\n')
    assert load_prompts("jsonl", path=jl).prompts[0].id == "x"


def test_load_prompts_argument_errors(tmp_path):
    with pytest.raises(PromptFileError, match="needs a prompt file"):
        load_prompts("txt")
    f = write(tmp_path / "p.txt", "a\n")
    for bad in (0, -1, True, 1.5):
        with pytest.raises(PromptFileError, match="limit must be a positive integer"):
            load_prompts("txt", path=f, limit=bad)
    with pytest.raises(PromptFileError, match="not a prompt file"):
        load_prompts("geneval", path=f)


def test_registry_holds_benchmark_objects_and_suggests():
    assert set(BENCHMARKS.names()) >= {"genai-bench", "geneval", "shapes", "txt", "jsonl"}
    for name in BENCHMARKS.names():
        bench = BENCHMARKS.get(name)
        assert isinstance(bench, Benchmark) and bench.name == name and bench.protocol
    with pytest.raises(RegistryError, match="Did you mean 'geneval'"):
        load_prompts("gen-eval")
