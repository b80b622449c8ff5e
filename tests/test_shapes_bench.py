"""ShapesBench plugged into tsbench: the word tokenizer, the prompt suite, the oracle scorer and the
GenEval-style summary, and the training recipe end to end on a toy budget."""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import tsbench
from tsbench.benchmarks import PromptFileError, load_prompts
from tsbench.benchmarks.shapes import TAGS, all_prompts, render, sample_scene
from tsbench.benchmarks.shapes.suite import PROMPTS_PER_SPLIT
from tsbench.benchmarks.shapes.train import LMRecipe, VQRecipe, run_recipe, vocabulary
from tsbench.models.tokenizer import WordTokenizer
from tsbench.scoring import SCORERS, ScoreItem
from tsbench.scoring.aggregate import summarize


def test_word_tokenizer_covers_every_prompt_and_names_unknown_words() -> None:
    tok = WordTokenizer(vocabulary())
    for tag in TAGS:
        for record in all_prompts(tag):
            ids = tok.encode(record["prompt"])
            assert len(ids) == len(record["prompt"].split()) and max(ids) < tok.bos_id
    assert tok.vocab_size == len(vocabulary()) + 1
    with pytest.raises(ValueError, match="outside this model's vocabulary: dog"):
        tok.encode("a red dog")


def test_shapes_suite_is_balanced_deterministic_and_test_only() -> None:
    prompts = load_prompts("shapes")
    assert prompts.version == "test" and len(prompts) == PROMPTS_PER_SPLIT
    assert Counter(p.tags[0] for p in prompts) == {tag: PROMPTS_PER_SPLIT // len(TAGS) for tag in TAGS}
    assert load_prompts("shapes").sha256 == prompts.sha256
    train_texts = {p.text for p in load_prompts("shapes", version="train")}
    assert not train_texts & {p.text for p in prompts}
    with pytest.raises(PromptFileError, match="not a split"):
        load_prompts("shapes", version="val")
    with pytest.raises(PromptFileError, match="drop quality.path"):
        load_prompts("shapes", path="prompts.txt")


def _items(tmp_path, prompts, images):
    items = []
    for i, (prompt, image) in enumerate(zip(prompts, images)):
        path = tmp_path / f"{prompt.id}.png"
        Image.fromarray(image).save(path)
        items.append(ScoreItem(prompt.id, 0, path, prompt.text, prompt.metadata))
    return items


def test_oracle_scorer_and_summary_on_clean_and_blank_images(tmp_path) -> None:
    prompts = load_prompts("shapes")
    rng = random.Random(0)
    scorer = SCORERS.get("shapes-oracle")()
    clean = scorer.score(_items(tmp_path, prompts, [render(sample_scene(p.metadata, rng)) for p in prompts]))
    assert {r.score for r in clean} == {1.0} and {r.details["tag"] for r in clean} == set(TAGS)
    summary = summarize("shapes", [r.to_dict() for r in clean])
    assert summary.values() == {**{tag: 1.0 for tag in TAGS}, "overall": 1.0} and summary.summary == "complete"

    blank = np.full((64, 64, 3), 128, dtype=np.uint8)
    rows = scorer.score(_items(tmp_path, prompts, [blank] * len(prompts)))
    assert {r.score for r in rows} == {0.0}
    partial = summarize("shapes", [r.to_dict() for r in clean[:10]])  # prompts 0-9 only
    assert partial.summary == "partial" and "overall" not in partial.numbers
    first = Counter(p.tags[0] for p in prompts.prompts[:10])
    assert {name: n.coverage for name, n in partial.numbers.items()} == {t: f"{k}/20" for t, k in first.items()}


def test_recipe_trains_saves_and_loads_every_window(tmp_path) -> None:
    """A toy budget of the real recipe: VQ, then windows 1 and 2; the fp16 checkpoints load by path,
    decode images, and record their recipe and training time."""
    torch.manual_seed(0)
    vq = VQRecipe(steps=2, batch=4)
    lm = LMRecipe(steps=6, batch=8, examples=32, dim=32, n_layers=1, n_heads=2, ffn_hidden=64, warmup=1)
    logged: list[str] = []
    written = run_recipe(tmp_path, windows=(1, 2), vq_recipe=vq, lm_recipe=lm, log=logged.append)
    assert [d.name for d in written] == ["shapes-s1", "shapes-s2"]
    assert any("oracle accuracy on reconstructions" in line for line in logged)
    for directory, window in zip(written, (1, 2)):
        recipe = json.loads((directory / "recipe.json").read_text())
        assert recipe["recipe"]["window"] == window and recipe["train_seconds"] > 0
        assert recipe["vq"]["recipe"]["steps"] == 2
        from safetensors import safe_open

        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys() if "codebook_used" not in k} == {torch.float16}
        model = tsbench.load_model("token-shuffle", checkpoint=str(directory))
        assert model.window == window and model.weights != "random"
        assert next(model.parameters()).dtype == torch.float32
        result = tsbench.generate(model, ["a red circle"], 64, cfg_scale=3.0, seeds=[0])
        assert result.images[0].shape == (64, 64, 3)


def test_teacher_forced_training_step_lowers_the_loss() -> None:
    """The storage-free cache lets autograd run through every layer (an in-place cache write would not)."""
    from tsbench.benchmarks.shapes.train import build_lm

    torch.manual_seed(0)
    model = build_lm(LMRecipe(window=2, dim=32, n_layers=2, n_heads=2, ffn_hidden=64)).train()
    windows = torch.randint(0, model.codebook_size, (4, 16, 4))
    cond = model.condition(["a red circle", "two squares", "", "a blue triangle above a green circle"], cfg=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        logits = model(cond, windows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), windows.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
