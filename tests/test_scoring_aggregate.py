"""Official aggregation: GenAI-Bench per skill / basic / advanced / overall, GenEval per tag / overall;
coverage and ``partial`` summaries; bootstrap intervals and paired differences.

The expected numbers are recomputed here straight from the official files, independently of
tsbench's code.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from tsbench.config.registry import RegistryError

from tsbench.scoring import ScoringInputError
from tsbench.scoring.aggregate import PARTIAL, paired_difference, parse_column, read_score_rows, summarize

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
    summary = summarize("genai-bench", rows, version="527", data_dir=SHARED)
    got = summary.values()
    assert summary.summary == "complete" and set(summary.coverage.values()) == {
        f"{len(ids)}/{len(ids)}" for ids in json.loads((GENAI_527 / "genai_skills.json").read_text()).values()
    } | {"527/527"}

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
    got = summarize("genai-bench", genai_rows(1), version="527", data_dir=SHARED).values()
    assert list(got) == ["attribute", "scene", "spatial relation", "action relation", "part relation", "basic",
                         "counting", "comparison", "differentiation", "negation", "universal", "advanced", "overall"]


def test_genai_bench_joins_by_id_not_position():
    need(GENAI_527)
    # prompt 00001 gets 1.0, all others 0.0: only tags listing prompt 1 may be non-zero
    rows = [row(f"{i:05d}", 0, 1.0 if i == 1 else 0.0) for i in range(1, 528)]
    got = summarize("genai-bench", rows, version="527", data_dir=SHARED).values()
    skills = json.loads((GENAI_527 / "genai_skills.json").read_text())
    for tag, ids in skills.items():
        assert (got[tag] > 0) == (1 in ids), tag
    assert got["overall"] == pytest.approx(1 / 527)


def test_missing_prompts_make_a_partial_summary_without_overall():
    need(GENAI_527)
    rows = genai_rows(1)[:100]  # prompts 1-100: all "basic", none "advanced"
    summary = summarize("genai-bench", rows, version="527", data_dir=SHARED)
    assert summary.summary == PARTIAL and "overall" not in summary.numbers and "advanced" not in summary.numbers
    assert summary.coverage["overall"] == "100/527" and summary.coverage["advanced"] == "0/313"
    basic = summary.numbers["basic"]
    assert (basic.prompts, basic.of) == (100, 214) and basic.value == pytest.approx(sum(r["score"] for r in rows) / 100)
    columns = summary.columns("s")
    assert columns["quality.s.summary"] == "partial" and "quality.s.overall" not in columns
    assert columns["quality.s.coverage.overall"] == "100/527" and columns["quality.s.coverage.basic"] == "100/214"
    table = summary.table().splitlines()
    assert "partial (no overall" in table[0] and not any(line.startswith("overall") for line in table)


def test_geneval_limit_covers_one_tag_which_is_exact_and_no_overall():
    need(GENEVAL)
    rows = [row(str(i), s, float((i + s) % 3 == 0), "geneval") for i in range(80) for s in range(4)]  # single_object
    summary = summarize("geneval", rows, data_dir=SHARED)
    assert summary.summary == PARTIAL and list(summary.numbers) == ["single_object"]
    assert summary.coverage == {"single_object": "80/80", "two_object": "0/99", "counting": "0/80",
                                "colors": "0/94", "position": "0/100", "color_attr": "0/100", "overall": "80/553"}
    assert summary.numbers["single_object"].value == pytest.approx(sum(r["score"] for r in rows) / len(rows))


def test_intervals_resample_prompts_with_their_images_and_are_reproducible():
    need(GENAI_527)
    rows = genai_rows(4)
    one = summarize("genai-bench", rows, version="527", data_dir=SHARED, resamples=500)
    again = summarize("genai-bench", rows, version="527", data_dir=SHARED, resamples=500)
    assert one == again  # fixed seed
    for n in one.numbers.values():
        assert n.ci_low < n.value < n.ci_high
    # the interval is over prompts: four identical images per prompt give the interval of one image per prompt
    single = genai_rows(1)
    copies = [dict(r, sample=s) for r in single for s in range(4)]
    a = summarize("genai-bench", single, version="527", data_dir=SHARED, resamples=500).numbers["overall"]
    b = summarize("genai-bench", copies, version="527", data_dir=SHARED, resamples=500).numbers["overall"]
    assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high))
    # more resamples, same seed: a different but close interval; 0 resamples: none
    wide = one.numbers["overall"].ci_high - one.numbers["overall"].ci_low
    more = summarize("genai-bench", rows, version="527", data_dir=SHARED, resamples=2000).numbers["overall"]
    assert more.ci_high - more.ci_low == pytest.approx(wide, rel=0.2)
    none = summarize("genai-bench", rows, version="527", data_dir=SHARED, resamples=0)
    assert all(math.isnan(n.ci_low) for n in none.numbers.values())
    assert "quality.s.overall.ci_low" not in none.columns("s") and "quality.s.overall" in none.columns("s")


def test_geneval_overall_interval_is_stratified_by_tag():
    """Every tag all correct except one all wrong: each tag's interval is a point, so the overall's (the
    mean of the tags, each resampled within its tag) is a point too."""
    need(GENEVAL)
    tags = [json.loads(line)["tag"] for line in (GENEVAL / "evaluation_metadata.jsonl").read_text().splitlines()]
    rows = [row(str(i), s, 0.0 if tags[i] == "position" else 1.0, "geneval") for i in range(553) for s in range(4)]
    overall = summarize("geneval", rows, data_dir=SHARED).numbers["overall"]
    assert (overall.value, overall.ci_low, overall.ci_high) == pytest.approx((5 / 6,) * 3, abs=1e-12)


def test_paired_difference_resamples_shared_prompts_once_for_both_cells():
    need(GENAI_527)
    base = genai_rows(1)
    shifted = [dict(r, score=r["score"] + 0.1) for r in base]  # every prompt exactly 0.1 better
    diff = paired_difference("genai-bench", shifted, base, version="527", data_dir=SHARED, metric="vqascore")
    assert set(diff) >= {"overall", "basic", "advanced", "counting"}
    for d in diff.values():  # paired: the noise of the prompts cancels, the interval is the shift itself
        assert (d.value, d.ci_low, d.ci_high) == pytest.approx((0.1, 0.1, 0.1), abs=1e-12) and d.excludes_zero
    noisy = genai_rows(1, seed=5)
    unpaired = paired_difference("genai-bench", noisy, base, version="527", data_dir=SHARED, metric="vqascore")
    assert unpaired["overall"].ci_low < 0 < unpaired["overall"].ci_high and not unpaired["overall"].excludes_zero
    # a partial pair keeps its tags but never compares overalls
    part = paired_difference("genai-bench", shifted[:50], base[:50], version="527", data_dir=SHARED, metric="vqascore")
    assert "overall" not in part and part["basic"].prompts == 50


def test_column_names_round_trip():
    assert parse_column("quality.vqascore-hf.spatial relation") == ("vqascore-hf", "spatial relation", None)
    assert parse_column("quality.geneval-official.overall.ci_low") == ("geneval-official", "overall", "ci_low")
    for other in ("quality.benchmark", "quality.vqascore-hf.status", "quality.x.coverage.basic", "latency.x.y"):
        assert parse_column(other) is None


def test_wrong_id_scheme_is_caught():
    need(GENAI_527)
    rows = [row(f"{i:05d}", 0, 0.5) for i in range(0, 527)]  # 0-based ids against the 1-based 527 file
    with pytest.raises(ScoringInputError, match=r"not prompts of GenAI-Bench 527 \(527 prompts\), e\.g\. \['0'\]"):
        summarize("genai-bench", rows, version="527", data_dir=SHARED)


def test_several_metrics_need_a_choice():
    need(GENAI_527)
    rows = genai_rows(1) + [dict(r, metric="clipscore", score=30.0) for r in genai_rows(1)]
    with pytest.raises(ScoringInputError, match="pass metric"):
        summarize("genai-bench", rows, version="527", data_dir=SHARED)
    assert summarize("genai-bench", rows, version="527", data_dir=SHARED, metric="clipscore").values()["overall"] == 30.0
    mean = summarize("genai-bench", rows, version="527", data_dir=SHARED, metric="clipscore", aggregation="mean")
    assert mean.values() == {"mean": 30.0} and mean.summary == "complete"


def test_geneval_per_image_fraction_and_mean_of_tags():
    need(GENEVAL)
    tags = [json.loads(line)["tag"] for line in (GENEVAL / "evaluation_metadata.jsonl").read_text().splitlines()]
    rng = random.Random(1)
    rows = [row(str(i), s, float(rng.random() < 0.6), "geneval") for i in range(553) for s in range(4)]
    got = summarize("geneval", rows, data_dir=SHARED).values()

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
        summarize("geneval", [row("0", 0, 0.5, "geneval")], data_dir=SHARED)
    with pytest.raises(ScoringInputError, match=r"not prompts of GenEval \(553 prompts\), e\.g\. \['553'\]"):
        summarize("geneval", [row("553", 0, 1.0, "geneval")], data_dir=SHARED)
    # another metric on GenEval's prompts is summarised by the same rule, without the 0/1 check
    assert summarize("geneval", [row("0", 0, 0.5, "vqascore")], data_dir=SHARED).values() == {"single_object": 0.5}


def test_unknown_benchmark():
    with pytest.raises(RegistryError, match="unknown benchmark 'parti'"):
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
