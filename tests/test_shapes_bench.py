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


TOY_VQ = VQRecipe(steps=2, batch=4)
TOY_LM = LMRecipe(steps=24, batch=8, examples=48, dim=32, n_layers=1, n_heads=2, ffn_hidden=64, warmup=2,
                  save_every=4)

_KILLED_RUN = """
import sys, torch
from pathlib import Path
torch.set_num_threads(1)
from tsbench.benchmarks.shapes.train import run_recipe
from tests.test_shapes_bench import TOY_LM, TOY_VQ
run_recipe(Path(sys.argv[1]), stages=("lm",), windows=(2,), vq_recipe=TOY_VQ, lm_recipe=TOY_LM, log=print)
"""


def test_a_killed_training_run_resumes_to_the_uninterrupted_result(tmp_path) -> None:
    """SIGKILL mid-run, then ``resume=True``: the weights equal those of a run that was never stopped."""
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from safetensors.torch import load_file

    from tsbench.benchmarks.shapes.train import state_path

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed subprocess runs on one thread; same arithmetic order here
    try:
        run_recipe(tmp_path / "vq_only", stages=("vq",), vq_recipe=TOY_VQ, log=lambda _: None)
        whole, killed = tmp_path / "whole", tmp_path / "killed"
        for out in (whole, killed):
            shutil.copytree(tmp_path / "vq_only", out)
        run_recipe(whole, stages=("lm",), windows=(2,), vq_recipe=TOY_VQ, lm_recipe=TOY_LM, log=lambda _: None)

        repo = Path(__file__).resolve().parents[1]
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(killed)], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        state = state_path(killed, "shapes-s2")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and torch.load(state, weights_only=True)["step"] >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved_step = torch.load(state, weights_only=True)["step"]
        assert 0 < saved_step < TOY_LM.steps, "the run must be killed midway for this test to mean anything"
        assert not (killed / "shapes-s2" / "model.safetensors").exists()

        logged: list[str] = []
        run_recipe(killed, stages=("lm",), windows=(2,), vq_recipe=TOY_VQ, lm_recipe=TOY_LM, log=logged.append,
                   resume=True)
        assert any(f"resuming at step {saved_step}/" in line for line in logged)
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(whole / "shapes-s2" / "model.safetensors"))
    b = load_file(str(killed / "shapes-s2" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), rtol=1e-3, atol=1e-4, msg=key)
    curve_a = json.loads((whole / "shapes-s2" / "recipe.json").read_text())["loss_curve"]
    curve_b = json.loads((killed / "shapes-s2" / "recipe.json").read_text())["loss_curve"]
    assert [s for s, _ in curve_a] == [s for s, _ in curve_b]


def test_resuming_with_other_settings_names_the_setting(tmp_path) -> None:
    from tsbench.benchmarks.shapes.train import ResumeError, load_state, save_state, state_path

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    path = state_path(tmp_path, "shapes-s1")
    save_state(path, TOY_LM, 20, model, opt, torch.Generator(), {"seconds": 1.0, "losses": []})
    assert load_state(path, TOY_LM)["step"] == 20
    assert load_state(path, replace(TOY_LM, save_every=2))["step"] == 20  # where to save may change
    with pytest.raises(ResumeError, match=r"lr: saved 0.002, now 0.01"):
        load_state(path, replace(TOY_LM, lr=0.01))
    # lengthening is allowed while the run is still at constant learning rate (step 20 of 100) ...
    assert load_state(path, replace(TOY_LM, steps=100))["step"] == 20
    # ... but not once the new schedule's decay would already have started (decay from step 19 of 24)
    with pytest.raises(ResumeError, match="inside the new schedule's decay"):
        load_state(path, replace(TOY_LM, steps=22))


def test_precision_auto_uses_bf16_only_where_the_hardware_has_bf16_matrix_units(monkeypatch) -> None:
    from tsbench.benchmarks.shapes import train

    monkeypatch.setattr(train, "cpu_has_bf16_matrix_units", lambda: False)
    assert train.autocast_dtype("auto", "cpu")[0] is None
    assert train.autocast_dtype("auto", "cuda")[0] is torch.bfloat16
    monkeypatch.setattr(train, "cpu_has_bf16_matrix_units", lambda: True)
    dtype, why = train.autocast_dtype("auto", "cpu")
    assert dtype is torch.bfloat16 and "AMX" in why
    assert train.autocast_dtype("fp32", "cuda")[0] is None
    with pytest.raises(ValueError, match="precision must be one of"):
        train.autocast_dtype("fp8", "cpu")


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16-autocast"])
def test_teacher_forced_training_steps_lower_the_loss_in_fp32_master_weights(amp) -> None:
    """The storage-free cache lets autograd run through every layer (an in-place cache write would not);
    under bf16 autocast the logits, the loss and the master weights stay fp32."""
    from tsbench.benchmarks.shapes.train import _autocast, build_lm

    torch.manual_seed(0)
    model = build_lm(replace(TOY_LM, window=2, n_layers=2)).train()
    windows = torch.randint(0, model.codebook_size, (4, 16, 4))
    cond = model.condition(["a red circle", "two squares", "", "a blue triangle above a green circle"], cfg=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        with _autocast(amp, "cpu"):
            logits = model(cond, windows[:, :-1])
        assert logits.dtype == torch.float32
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), windows.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_training_examples_follow_the_tag_weights_and_are_cached(tmp_path) -> None:
    from tsbench.benchmarks.shapes.prompts import tag_counts
    from tsbench.benchmarks.shapes.train import training_examples
    from tsbench.models.vq import VQModel, get_vq_config

    assert tag_counts(120) == [20] * 6 and sum(tag_counts(1001, (1, 1, 1, 1, 2, 2))) == 1001
    assert tag_counts(80, (1, 1, 1, 1, 2, 2)) == [10, 10, 10, 10, 20, 20]
    with pytest.raises(ValueError, match="tag weights"):
        tag_counts(10, (1, 2))
    vq = VQModel(get_vq_config("vq8-shapes")).eval()
    recipe = replace(TOY_LM, examples=40, tag_weights=(1, 1, 1, 1, 3, 3))
    logged: list[str] = []
    prompts, codes = training_examples(recipe, vq, "digest", tmp_path, logged.append)
    assert codes.shape == (40, 8, 8) and len(prompts) == 40
    position_or_attr = {r["prompt"] for tag in ("position", "color_attr") for r in all_prompts(tag)}
    assert sum(p in position_or_attr for p in prompts) == 24  # 40 * (3 + 3) / 10
    again = training_examples(recipe, vq, "digest", tmp_path, logged.append)
    assert again[0] == prompts and torch.equal(again[1], codes)
    assert "from" in logged[-1] and len(list(tmp_path.glob("codes-*.safetensors"))) == 1
