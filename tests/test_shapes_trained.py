"""The trained ShapesBench models shipped in the package: they load offline by name, the tokenizer keeps
the oracle's accuracy on reconstructions, and the s = 1 model clears the issue's quality bar on held-out
prompts under the settings of ``suites/shapes.yaml``."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch

import tsbench
from tsbench.benchmarks import load_prompts
from tsbench.benchmarks.shapes import TAGS, judge_image
from tsbench.benchmarks.shapes.train import reconstruction_accuracy
from tsbench.config.suite import load_suite
from tsbench.models.token_shuffle import trained_checkpoint

SUITE = Path(__file__).resolve().parents[1] / "suites" / "shapes.yaml"


@pytest.mark.parametrize("window", [1, 2, 4])
def test_shipped_models_load_by_name(window: int) -> None:
    assert trained_checkpoint("shapes", window) is not None, "shipped weights missing from tsbench/models/trained"
    model = tsbench.load_model("token-shuffle", preset="shapes", window=window)
    facts = model.describe()
    assert facts["window"] == window and facts["preset"] == "shapes" and facts["tokenizer"] == "words"
    assert len(facts["weights"]) >= 12 and facts["weights"] != "random"
    assert next(model.parameters()).dtype == torch.float32
    named = tsbench.load_model("token-shuffle", preset=f"shapes-s{window}")
    assert named.window == window and named.weights == model.weights
    assert f"shapes-s{window}" in tsbench.list_presets("token-shuffle")["token-shuffle"]


def test_unknown_trained_window_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown token-shuffle preset 'shapes' at window 8"):
        tsbench.load_model("token-shuffle", preset="shapes", window=8)


def test_shipped_tokenizer_keeps_oracle_accuracy_on_reconstructions() -> None:
    vq = tsbench.load_model("token-shuffle", preset="shapes").vq
    assert reconstruction_accuracy(vq, n=600) >= 0.99


def _generate(window: int):
    """The shipped model's images for the suite's test prompts under the suite's sampling settings."""
    suite = load_suite(SUITE)
    w = suite.workload
    model = tsbench.load_model("token-shuffle", preset="shapes", window=window)
    prompts = load_prompts("shapes", version=suite.quality.version).prompts
    result = tsbench.generate(model, [p.text for p in prompts], w.resolution, cfg_schedule="constant",
                              cfg_scale=w.cfg_scale, temperature=w.temperature, top_k=w.top_k, top_p=w.top_p,
                              seeds=list(range(len(prompts))), batch_size=len(prompts))
    return prompts, result.images


def _accuracy(prompts, images, judged_against) -> float:
    """GenEval's overall: the mean over tags of the share of images correct for ``judged_against``."""
    by_tag: dict[str, list[bool]] = defaultdict(list)
    for prompt, image, other in zip(prompts, images, judged_against):
        by_tag[prompt.tags[0]].append(judge_image(image, other.metadata)[0])
    assert set(by_tag) == set(TAGS)
    return sum(sum(v) / len(v) for v in by_tag.values()) / len(by_tag)


def test_s1_model_follows_its_prompts() -> None:
    """Images match their own prompts far more often than another prompt of the same tag: the model
    learned the text, not only what scenes look like."""
    prompts, images = _generate(1)
    own = _accuracy(prompts, images, prompts)
    by_tag: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_tag[p.tags[0]].append(i)
    other = list(prompts)
    for indices in by_tag.values():  # each image judged against the next different prompt of its tag
        for n, i in enumerate(indices):
            ring = indices[n + 1:] + indices[:n]
            other[i] = next((prompts[k] for k in ring if prompts[k].text != prompts[i].text), prompts[i])
    assert own >= _accuracy(prompts, images, other) + 0.1
