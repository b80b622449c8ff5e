"""Official aggregation: GenAI-Bench per skill / basic / advanced / overall, GenEval per tag / overall.

The expected numbers are recomputed here straight from the official files, independently of
tsbench's code.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tsbench.scoring import ScoringInputError
from tsbench.scoring.aggregate import read_score_rows, summarize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GENAI_527 = SHARED / "genai_bench" / "GenAI-Bench-527"
GENEVAL = SHARED / "geneval"


def need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"official files not available: {folder} is absent (shared/data is not checked out here)")


def row(pid, sample, score, metric="vqascore"):
    return {"prompt_id": pid, "sample": sample, "metric": metric, "score": score,
            "scorer": "test", "scorer_version": "0"}


def genai_rows(n_samples: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [row(f"{i:05d}", s, rng.random()) for i in range(1, 528) for s in range(n_samples)]


@pytest.mark.parametrize("n_samples", [1, 3])
def test_genai_bench_527_matches_independent_recomputation(n_samples):
    need(GENAI_527)
    rows = genai_rows(n_samples)
    got = summarize("genai-bench", rows, version="527", data_dir=SHARED)

    # independent recomputation from genai_skills.json
    skills = json.loads((GENAI_527 / "genai_skills.json").read_text())
    per_prompt = {}
    for i in range(1, 528):
        mine = [r["score"] for r in rows if r["prompt_id"] == f"{i:05d}"]
        per_prompt[i] = sum(mine) / len(mine)
    expected = {tag: sum(per_prompt[i] for i in ids) / len(ids) for tag, ids in skills.items()}
    union = set()
    for ids in skills.values():
        union |= set(ids)
    expected["overall"] = sum(per_prompt[i] for i in union) / len(union)

    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    # basic/advanced come from their own lists, which differs from the mean of the sub-skill means
    sub_mean = sum(expected[t] for t in ("attribute", "scene", "spatial relation", "action relation",
                                         "part relation")) / 5
    assert got["basic"] != pytest.approx(sub_mean, abs=1e-9)


def test_genai_bench_output_order_follows_the_official_groups():
    need(GENAI_527)
    got = summarize("genai-bench", genai_rows(1), version="527", data_dir=SHARED)
    assert list(got) == ["attribute", "scene", "spatial relation", "action relation", "part relation", "basic",
                         "counting", "comparison", "differentiation", "negation", "universal", "advanced", "overall"]


def test_genai_bench_joins_by_id_not_position():
    need(GENAI_527)
    # prompt 00001 gets 1.0, all others 0.0: only tags listing prompt 1 may be non-zero
    rows = [row(f"{i:05d}", 0, 1.0 if i == 1 else 0.0) for i in range(1, 528)]
    got = summarize("genai-bench", rows, version="527", data_dir=SHARED)
    skills = json.loads((GENAI_527 / "genai_skills.json").read_text())
    for tag, ids in skills.items():
        assert (got[tag] > 0) == (1 in ids), tag
    assert got["overall"] == pytest.approx(1 / 527)


def test_missing_scores_are_an_error_unless_partial_is_explicit():
    need(GENAI_527)
    rows = genai_rows(1)[:100]
    with pytest.raises(ScoringInputError, match="427 of 527 GenAI-Bench-527 prompts have no score"):
        summarize("genai-bench", rows, version="527", data_dir=SHARED)
    got = summarize("genai-bench", rows, version="527", data_dir=SHARED, require_all=False)
    assert got["overall"] == pytest.approx(sum(r["score"] for r in rows) / 100)


def test_wrong_id_scheme_is_caught():
    need(GENAI_527)
    rows = [row(f"{i:05d}", 0, 0.5) for i in range(0, 527)]  # 0-based ids against the 1-based 527 file
    with pytest.raises(ScoringInputError, match=r"not in GenAI-Bench-527, e\.g\. \[0\]"):
        summarize("genai-bench", rows, version="527", data_dir=SHARED)


def test_several_metrics_need_a_choice():
    need(GENAI_527)
    rows = genai_rows(1) + [dict(r, metric="clipscore", score=30.0) for r in genai_rows(1)]
    with pytest.raises(ScoringInputError, match="pass metric"):
        summarize("genai-bench", rows, version="527", data_dir=SHARED)
    assert summarize("genai-bench", rows, version="527", data_dir=SHARED, metric="clipscore")["overall"] == 30.0


def test_geneval_per_image_fraction_and_mean_of_tags():
    need(GENEVAL)
    tags = [json.loads(line)["tag"] for line in (GENEVAL / "evaluation_metadata.jsonl").read_text().splitlines()]
    rng = random.Random(1)
    rows = [row(str(i), s, float(rng.random() < 0.6), "geneval_correct") for i in range(553) for s in range(4)]
    got = summarize("geneval", rows, data_dir=SHARED)

    per_tag = {}
    for r in rows:
        per_tag.setdefault(tags[int(r["prompt_id"])], []).append(r["score"])
    expected = {t: sum(v) / len(v) for t, v in per_tag.items()}
    expected["overall"] = sum(expected[t] for t in per_tag) / 6
    assert set(got) == set(expected) and len(expected) == 7
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    # the overall is not the fraction of correct images (the tags have different sizes)
    assert got["overall"] != pytest.approx(sum(r["score"] for r in rows) / len(rows), abs=1e-9)


def test_geneval_rejects_non_binary_scores_and_unknown_prompts():
    need(GENEVAL)
    with pytest.raises(ScoringInputError, match="expected 0 or 1"):
        summarize("geneval", [row("0", 0, 0.5, "geneval_correct")], data_dir=SHARED, require_all=False)
    with pytest.raises(ScoringInputError, match="not a GenEval prompt"):
        summarize("geneval", [row("553", 0, 1.0, "geneval_correct")], data_dir=SHARED, require_all=False)


def test_unknown_benchmark():
    with pytest.raises(ScoringInputError, match="supported: genai-bench, geneval"):
        summarize("parti", [])


def test_read_score_rows(tmp_path):
    f = tmp_path / "scores.jsonl"
    f.write_text(json.dumps(row("00001", 0, 0.25)) + "\n\n" + json.dumps(row("00002", 0, 0.75)) + "\n")
    assert [r["score"] for r in read_score_rows(f)] == [0.25, 0.75]
    f.write_text(json.dumps(row("00001", 0, 0.25)) + '\n{"prompt_id": "1"}\n')
    with pytest.raises(ScoringInputError, match=r"scores.jsonl:2: score row lacks \['sample', 'metric', 'score'\]"):
        read_score_rows(f)
    with pytest.raises(ScoringInputError, match="does not exist"):
        read_score_rows(tmp_path / "none.jsonl")
