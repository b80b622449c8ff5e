"""VQAScore ``hf`` backend on tiny randomly initialised VLMs built offline (a LLaVA-style
decoder-only model and an InstructBLIP model with a T5 decoder), saved to disk and loaded by path
exactly as a real checkpoint would be."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from tsbench.scoring import SCORERS, ScoreItem, ScorerUnavailable  # noqa: E402
from tsbench.scoring.vqascore_hf import QUESTION_TEMPLATE, HFVQAScorer  # noqa: E402
from tiny_models import tiny_instructblip, tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="module")
def instructblip_dir(tmp_path_factory):
    return tiny_instructblip(tmp_path_factory.mktemp("tiny-instructblip"))


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    out = []
    for i, (color, text) in enumerate([((200, 0, 0), "a red cube"), ((0, 0, 200), 'a "blue" ball {x}'),
                                       ((0, 200, 0), "a green tree")]):
        Image.new("RGB", (40, 30), color).save(folder / f"{i}.png")
        out.append(ScoreItem(f"{i:05d}", 0, folder / f"{i}.png", text))
    return out


def spy_texts(scorer):
    """Record the texts handed to the processor."""
    seen = []
    real = scorer.processor

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, *args, **kwargs):
            seen.extend(kwargs["text"])
            return real(*args, **kwargs)

    scorer.processor = Spy()
    return seen


def test_decoder_only_scores_are_probabilities_of_yes(llava_dir, items):
    scorer = SCORERS.get("vqascore-hf")(str(llava_dir), device="cpu", local_files_only=True)
    seen = spy_texts(scorer)
    rows = scorer.score(items)
    assert [(r.prompt_id, r.metric, r.scorer) for r in rows] == [(it.prompt_id, "vqascore", "vqascore-hf") for it in items]
    assert all(0.0 < r.score < 1.0 for r in rows)
    assert seen == [f'USER: <image>\n{QUESTION_TEMPLATE.format(it.prompt)} ASSISTANT:' for it in items]
    assert seen[1] == 'USER: <image>\nDoes this figure show "a "blue" ball {x}"? Please answer yes or no. ASSISTANT:'

    # independent computation: softmax of the next-token logits after the prompt, at the "Yes" token
    proc = transformers.AutoProcessor.from_pretrained(llava_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    yes = proc.tokenizer.convert_tokens_to_ids("Yes")
    img = Image.open(items[0].image_path).convert("RGB")
    with torch.no_grad():
        logits = model(**proc(images=[img], text=[seen[0]], return_tensors="pt")).logits[0, -1]
    assert rows[0].score == pytest.approx(logits.softmax(-1)[yes].item(), rel=1e-5)


def test_deterministic_across_loads_and_batch_sizes(llava_dir, items):
    a = HFVQAScorer(str(llava_dir), device="cpu", local_files_only=True).score(items)
    b = HFVQAScorer(str(llava_dir), device="cpu", local_files_only=True).score(items)
    assert [r.score for r in a] == [r.score for r in b]
    batched = HFVQAScorer(str(llava_dir), device="cpu", batch_size=3, local_files_only=True).score(items)
    # left padding shifts positions in this tiny Llama, so only approximate equality is expected
    assert [r.score for r in batched] == pytest.approx([r.score for r in a], abs=0.05)
    assert len({r.score for r in a}) == 3  # the image/prompt changes the score


def test_prompt_format_and_template_override(llava_dir, items):
    scorer = HFVQAScorer(str(llava_dir), device="cpu", local_files_only=True,
                         prompt_format="<image>\nQ: {question}\nA:", question_template="Is it {}?")
    assert scorer.build_prompt("x") == "<image>\nQ: Is it x?\nA:"
    assert 0 < scorer.score(items[:1])[0].score < 1


def test_multi_token_answer_is_refused(llava_dir):
    with pytest.raises(ValueError, match=r"'Yes please' is 8 tokens"):
        HFVQAScorer(str(llava_dir), device="cpu", answer="Yes please", local_files_only=True)


def test_encoder_decoder_reads_the_first_decoder_step(instructblip_dir, items):
    scorer = HFVQAScorer(str(instructblip_dir), device="cpu", local_files_only=True)
    assert scorer.encoder_decoder
    seen = spy_texts(scorer)
    rows = scorer.score(items)
    assert seen == [QUESTION_TEMPLATE.format(it.prompt) for it in items]  # no chat template: bare question
    assert all(0.0 < r.score < 1.0 for r in rows)
    assert [r.score for r in rows] == [r.score for r in scorer.score(items)]


def test_missing_model_is_unavailable(tmp_path):
    with pytest.raises(ScorerUnavailable, match="cannot load the processor"):
        HFVQAScorer(str(tmp_path), device="cpu", local_files_only=True)
    with pytest.raises(ScorerUnavailable, match="cannot load"):
        HFVQAScorer("no-such-org/no-such-model", device="cpu", local_files_only=True)
