"""VQAScore with any Hugging Face vision-language model.

score = P(first token of ``answer`` | image, question), read from the model's next-token
distribution right after the prompt (decoder-only models: the last prompt position; encoder-decoder
models: the first decoder step). The question is t2v_metrics' template
``Does this figure show "{}"? Please answer yes or no.``. The reference CLIP-FlanT5 scorer uses
exp(-mean CE) over ``▁Yes </s>``, i.e. the geometric mean of P(Yes) and P(</s> | Yes), which is
≈ P(Yes); use the ``vqascore-t2v`` backend for exactly the published number.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from .base import ScoreItem, ScoreRow, ScorerUnavailable, batched, default_device, load_image, option_text

QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"
_MODEL_CLASSES = (  # tried in order; the first that knows the config wins
    "AutoModelForImageTextToText",
    "AutoModelForVision2Seq",
    "AutoModelForVisualQuestionAnswering",
    "AutoModelForCausalLM",
)


class HFVQAScorer:
    name = "vqascore-hf"
    metric = "vqascore"
    aggregation = "official"
    higher_is_better = True
    needs: tuple[str, ...] = ()
    caveat = "P(Yes) of a transformers VLM: not the clip-flant5-xxl numbers of published tables"

    @classmethod
    def measured_with(cls, options: Mapping[str, Any]) -> str:
        """``hf:<model>``: a transformers VLM is never the CLIP-FlanT5 of the published tables."""
        extra = {k: v for k, v in options.items() if k in ("question_template", "answer", "prompt_format", "revision")}
        return f"hf:{options.get('model', '?')}{option_text(extra)}"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        question_template: str = QUESTION_TEMPLATE,
        answer: str = ANSWER,
        prompt_format: str | None = None,
        batch_size: int = 1,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> None:
        """``model``: hub id or local folder. ``prompt_format``: e.g. ``"USER: <image>\\n{question} ASSISTANT:"``
        when the processor has no chat template (default: chat template if any, else the bare
        question). ``batch_size`` > 1 left-pads prompts, which can shift scores slightly on models
        whose positions do not follow the attention mask; 1 is exact."""
        try:
            import torch
            import transformers
        except ImportError as e:
            raise ScorerUnavailable(f"transformers is not installed ({e}); pip install 'tsbench[hf]'") from None
        self.device = device or default_device()
        if dtype is not None and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. 'bfloat16', 'float32')")
        # bf16 on GPU as the reference scorer; fp32 on CPU, where bf16 is slow and imprecise
        self.dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device.startswith("cuda") else torch.float32)
        self.question_template = question_template
        self.prompt_format = prompt_format
        self.batch_size = batch_size
        kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(model, **kwargs)
        except (OSError, ValueError) as e:  # not found / offline / a folder without a processor
            raise ScorerUnavailable(f"cannot load the processor of {model!r}: {str(e).splitlines()[0]}") from None
        try:
            self.model = _load_model(transformers, model, self.dtype, kwargs)
        except OSError as e:
            raise ScorerUnavailable(f"cannot load VQA model {model!r}: {str(e).splitlines()[0]}") from None
        self.model.to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"answer {answer!r} is {len(ids)} tokens for the tokenizer of {model!r}; VQAScore reads the "
                "probability of one answer token, so pass an answer that is a single token (e.g. ' Yes')"
            )
        self.answer_id = ids[0]
        self.encoder_decoder = _is_encoder_decoder(self.model.config)
        commit = getattr(self.model.config, "_commit_hash", None) or revision or "local"
        self.version = f"{model}@{commit}; transformers {transformers.__version__}; answer {answer!r}"

    def build_prompt(self, text: str) -> str:
        """The exact text given to the processor for benchmark prompt ``text``."""
        question = self.question_template.format(text)
        if self.prompt_format is not None:
            return self.prompt_format.format(question=question)
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return question

    def score(self, items: list[ScoreItem]) -> list[ScoreRow]:
        rows = []
        for batch in batched(items, self.batch_size):
            for item, p in zip(batch, self._probabilities(batch)):
                rows.append(ScoreRow(item.prompt_id, item.sample, self.metric, p, self.name, self.version))
        return rows

    def _probabilities(self, batch: list[ScoreItem]) -> list[float]:
        import torch

        images = [load_image(it.image_path) for it in batch]
        texts = [self.build_prompt(it.prompt) for it in batch]
        enc = self.processor(images=images, text=texts, return_tensors="pt", padding=True)
        enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
               for k, v in enc.items() if isinstance(v, torch.Tensor)}
        with torch.inference_mode():
            if self.encoder_decoder:
                start = _decoder_start_id(self.model)
                enc["decoder_input_ids"] = torch.full((len(batch), 1), start, device=self.device)
                out = self.model(**enc)
                logits = _logits(out)[:, 0]
            else:
                logits = _logits(self.model(**enc))[:, -1]
        return logits.float().softmax(-1)[:, self.answer_id].tolist()


def _load_model(transformers: Any, model: str, dtype: Any, kwargs: dict[str, Any]) -> Any:
    errors = []
    for cls_name in _MODEL_CLASSES:
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls.from_pretrained(model, dtype=dtype, **kwargs)
        except (ValueError, KeyError) as e:  # config not supported by this auto class
            errors.append(f"{cls_name}: {str(e).splitlines()[0]}")
    raise ScorerUnavailable(f"{model!r} is not a vision-language model transformers can load: {'; '.join(errors)}")


def _is_encoder_decoder(config: Any) -> bool:
    text_config = getattr(config, "text_config", None)
    return bool(getattr(config, "is_encoder_decoder", False) or getattr(text_config, "is_encoder_decoder", False))


def _decoder_start_id(model: Any) -> int:
    for cfg in (model.generation_config, model.config, getattr(model.config, "text_config", None)):
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ScorerUnavailable("encoder-decoder VQA model has no decoder_start_token_id in its config")


def _logits(out: Any) -> Any:
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.decoder_logits
