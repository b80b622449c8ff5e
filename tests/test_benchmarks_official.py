"""Official GenAI-Bench / GenEval prompt files: loading, data-folder resolution and fetching."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tsbench.benchmarks import DataFetchError, DataNotFoundError, PromptFileError, load_prompts
from tsbench.benchmarks import data as data_mod
from tsbench.benchmarks.genai_bench import ADVANCED_SKILLS, BASIC_SKILLS
from tsbench.benchmarks.geneval import load_object_names

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GENAI_527 = SHARED / "genai_bench" / "GenAI-Bench-527"
GENEVAL = SHARED / "geneval"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Never read the developer's own cache or TSBENCH_DATA."""
    monkeypatch.setenv("TSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TSBENCH_DATA", raising=False)


def need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"official files not available: {folder} is absent (shared/data is not checked out here)")


def test_genai_bench_527_from_shared_files():
    need(GENAI_527)
    ps = load_prompts("genai-bench", version=527, data_dir=SHARED)
    assert (ps.name, ps.version, len(ps)) == ("genai-bench", "527", 527)
    first, last = ps.prompts[0], ps.prompts[-1]
    assert first.id == "00001" and first.text == "A baker pulling freshly baked bread out of an oven in a bakery."
    assert last.id == "00527"
    skills = json.loads((GENAI_527 / "genai_skills.json").read_text())
    for tag, ids in skills.items():  # tags joined by id, as listed in the official file
        assert {int(p.id) for p in ps if tag in p.tags} == set(ids)
    assert sum("basic" in p.tags for p in ps) == 214 and sum("advanced" in p.tags for p in ps) == 313
    assert ps.sources["genai_skills.json"] == "f68a544fb8929d031e15be68df8320455202cac1b08246864abd12add2122b7b"
    assert "models" in first.metadata and "prompt" not in first.metadata


def test_genai_tag_lists_are_the_official_ones():
    assert BASIC_SKILLS == ("attribute", "scene", "spatial relation", "action relation", "part relation")
    assert ADVANCED_SKILLS == ("counting", "comparison", "differentiation", "negation", "universal")


def test_genai_bench_data_dir_may_be_the_file_folder_itself():
    need(GENAI_527)
    assert len(load_prompts("genai-bench", version="527", data_dir=GENAI_527)) == 527


def make_genai(folder: Path, n: int, base: int, skills: dict[str, list[int]]) -> Path:
    folder.mkdir(parents=True)
    images = {f"{i:05d}": {"id": str(i), "prompt": f"prompt {i}"} for i in range(base, base + n)}
    (folder / "genai_image.json").write_text(json.dumps(images))
    (folder / "genai_skills.json").write_text(json.dumps(skills))
    return folder


def test_genai_bench_1600_zero_based_keys(tmp_path):
    make_genai(tmp_path / "genai_bench" / "GenAI-Bench-1600", 4, 0, {"basic": [0, 1], "advanced": [2], "counting": [2]})
    ps = load_prompts("genai-bench", data_dir=tmp_path)  # default version is the official 1600
    assert ps.version == "1600"
    assert [(p.id, p.tags) for p in ps] == [
        ("00000", ("basic",)), ("00001", ("basic",)), ("00002", ("advanced", "counting")), ("00003", ()),
    ]


def test_genai_skills_must_reference_existing_prompts(tmp_path):
    make_genai(tmp_path / "d", 3, 1, {"basic": [1, 2, 3, 4]})
    with pytest.raises(PromptFileError, match=r"skill 'basic' lists prompt ids \[4\]"):
        load_prompts("genai-bench", version=527, data_dir=tmp_path / "d")


def test_unknown_genai_version():
    with pytest.raises(PromptFileError, match="choose one of 527, 1600"):
        load_prompts("genai-bench", version=600)


def test_geneval_from_shared_files():
    need(GENEVAL)
    ps = load_prompts("geneval", data_dir=SHARED)
    assert (ps.version, len(ps)) == ("553", 553)
    counts: dict[str, int] = {}
    for p in ps:
        counts[p.tags[0]] = counts.get(p.tags[0], 0) + 1
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                      "color_attr": 100}
    lines = (GENEVAL / "evaluation_metadata.jsonl").read_text().splitlines()
    assert all(p.id == f"{i:05d}" and p.metadata == json.loads(lines[i]) for i, p in enumerate(ps))
    assert all("exclude" in p.metadata for p in ps if p.tags == ("counting",))
    names = load_object_names(SHARED)
    assert len(names) == 80 and names[0] == "person" and "computer mouse" in names


def test_env_var_and_cache_are_searched_in_order(tmp_path, monkeypatch):
    need(GENEVAL)
    assert data_mod.resolve_data_dir("geneval", SHARED) == GENEVAL
    monkeypatch.setenv("TSBENCH_DATA", str(SHARED))
    assert data_mod.resolve_data_dir("geneval") == GENEVAL
    monkeypatch.setenv("TSBENCH_DATA", str(tmp_path / "empty"))
    cached = data_mod.cache_dir() / "geneval"
    cached.mkdir(parents=True)
    for f in ("evaluation_metadata.jsonl", "object_names.txt"):
        (cached / f).write_bytes((GENEVAL / f).read_bytes())
    assert data_mod.cache_dir() == tmp_path / "cache" / "data"
    assert data_mod.resolve_data_dir("geneval") == cached


def test_explicit_data_dir_is_strict_and_the_error_says_what_to_do(tmp_path, monkeypatch):
    need(GENEVAL)
    monkeypatch.setenv("TSBENCH_DATA", str(SHARED))  # would be found, but an explicit folder wins
    with pytest.raises(DataNotFoundError) as e:
        load_prompts("geneval", data_dir=tmp_path / "elsewhere")
    msg = str(e.value)
    assert "evaluation_metadata.jsonl" in msg and str(tmp_path / "elsewhere") in msg
    assert "tsbench data fetch geneval" in msg and "TSBENCH_DATA" in msg and "--data-dir" in msg


def test_nothing_found_lists_env_and_cache(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"tsbench data fetch genai-bench-1600.*") as e:
        load_prompts("genai-bench", version=1600)
    assert str(data_mod.cache_dir()) in str(e.value)


def test_modified_official_file_is_refused(tmp_path):
    need(GENEVAL)
    folder = tmp_path / "geneval"
    folder.mkdir()
    (folder / "object_names.txt").write_bytes((GENEVAL / "object_names.txt").read_bytes())
    (folder / "evaluation_metadata.jsonl").write_text('{"tag": "single_object", "include": [], "prompt": "x"}\n')
    with pytest.raises(DataNotFoundError, match=r"but the official geneval file has 5c48e08"):
        load_prompts("geneval", data_dir=tmp_path)


def _serve(tmp_path: Path, files: dict[str, bytes], pins: dict[str, str | None]) -> data_mod.Dataset:
    src = tmp_path / "upstream"
    src.mkdir(exist_ok=True)
    entries = []
    for name, content in files.items():
        (src / name).write_bytes(content)
        entries.append(data_mod.DataFile(name, (src / name).as_uri(), pins.get(name)))
    return data_mod.Dataset("toy", "toy/v1", tuple(entries))


def test_fetch_downloads_verifies_and_records(tmp_path, monkeypatch):
    a, b = b"alpha\n", b"beta\n"
    ds = _serve(tmp_path, {"a.txt": a, "b.txt": b}, {"a.txt": hashlib.sha256(a).hexdigest()})
    monkeypatch.setitem(data_mod.DATASETS, "toy", ds)
    folder = data_mod.fetch("toy", tmp_path / "root")
    assert folder == tmp_path / "root" / "toy" / "v1"
    assert (folder / "a.txt").read_bytes() == a and (folder / "b.txt").read_bytes() == b
    manifest = json.loads((folder / data_mod.MANIFEST).read_text())
    assert manifest["b.txt"]["sha256"] == hashlib.sha256(b).hexdigest() and manifest["b.txt"]["pinned"] is False
    assert sorted(os.listdir(folder)) == ["a.txt", "b.txt", data_mod.MANIFEST]  # no temporary files left
    assert data_mod.resolve_data_dir("toy", tmp_path / "root") == folder


def test_fetch_default_destination_is_the_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(data_mod.DATASETS, "toy", _serve(tmp_path, {"a.txt": b"x"}, {}))
    assert data_mod.fetch("toy") == data_mod.cache_dir() / "toy" / "v1"
    assert data_mod.resolve_data_dir("toy") == data_mod.cache_dir() / "toy" / "v1"


def test_fetch_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    ds = _serve(tmp_path, {"a.txt": b"tampered"}, {"a.txt": "0" * 64})
    monkeypatch.setitem(data_mod.DATASETS, "toy", ds)
    with pytest.raises(DataFetchError, match="expected 0000"):
        data_mod.fetch("toy", tmp_path / "root")
    assert os.listdir(tmp_path / "root" / "toy" / "v1") == []


def test_fetch_network_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    ds = data_mod.Dataset("toy", "toy", (data_mod.DataFile("a.txt", (tmp_path / "missing.txt").as_uri(), None),))
    monkeypatch.setitem(data_mod.DATASETS, "toy", ds)
    with pytest.raises(DataFetchError, match=r"download the file by hand and save it as .*a\.txt"):
        data_mod.fetch("toy", tmp_path / "root")


def test_official_sources_are_pinned_for_geneval():
    ds = data_mod.DATASETS["geneval"]
    assert all(data_mod.GENEVAL_COMMIT in f.url for f in ds.files)
    if GENEVAL.is_dir():  # the pins are the SHA-256 of the byte-exact official copies
        for name, sha in ds.pinned().items():
            assert hashlib.sha256((GENEVAL / name).read_bytes()).hexdigest() == sha


def test_cli_data_fetch_asks_the_benchmark_for_its_data_set(monkeypatch, capsys):
    from tsbench.cli import main

    fetched = []
    monkeypatch.setattr(data_mod, "fetch", lambda name, dest=None: fetched.append(name) or Path("/x") / name)
    assert main(["data", "fetch", "genai-bench"]) == 0  # the benchmark's default version: 1600
    assert main(["data", "fetch", "genai-bench", "--version", "527"]) == 0
    assert main(["data", "fetch", "geneval"]) == 0
    assert main(["data", "fetch", "genai-bench-527"]) == 0  # a data set by its own name
    assert fetched == ["genai-bench-1600", "genai-bench-527", "geneval", "genai-bench-527"]
    assert main(["data", "fetch", "shapes"]) == 2
    assert "has no files to download" in capsys.readouterr().err
    assert main(["data", "fetch", "genai-bench", "--version", "600"]) == 2
