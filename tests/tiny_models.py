"""Tiny randomly initialised scorer models built offline and saved to disk, so tests load them by path
exactly as a real checkpoint would be (nothing is downloaded).

- ``tiny_llava``: a LLaVA-style decoder-only VLM (VQAScore ``hf`` backend);
- ``tiny_instructblip``: an InstructBLIP VLM with a T5 decoder (encoder-decoder VQAScore);
- ``tiny_mask2former``: a Swin Mask2Former with GenEval's 80 COCO classes (GenEval detector);
- ``tiny_open_clip``: an open_clip model (CLIPScore, GenEval colour classifier), registered under a
  name *and* laid out as a ``local-dir:`` folder.

Shared by the scorer tests and the end-to-end quality test; import ``torch``/``transformers``/
``open_clip`` lazily so a test module can ``importorskip`` them first.
"""
from __future__ import annotations

import json
from pathlib import Path

CHAT = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:")

OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def byte_tokenizer(*extra: str):
    """Byte-level BPE without merges, built from scratch: any text encodes, nothing is downloaded."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))},
                               merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>", unk_token="<unk>")
    fast.add_tokens(["Yes", *extra])
    return fast


def tiny_llava(path: str | Path, seed: int = 0) -> Path:
    """Decoder-only LLaVA (1-layer CLIP vision tower + 1-layer Llama) with processor and chat template."""
    import torch
    import transformers

    tok = byte_tokenizer("<image>")
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=16)
    text = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=512)
    cfg = transformers.LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                                   image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(cfg)
    proc = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=16, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=CHAT)
    path = Path(path)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def tiny_instructblip(path: str | Path, seed: int = 0) -> Path:
    """InstructBLIP with a 1-layer T5 encoder-decoder language model."""
    import torch
    import transformers

    tok, qtok = byte_tokenizer(), byte_tokenizer()
    tok.add_tokens(["<image>"], special_tokens=True)
    cfg = transformers.InstructBlipConfig(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        qformer_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            vocab_size=len(qtok), encoder_hidden_size=16),
        text_config=transformers.T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                                          num_heads=2, vocab_size=len(tok), decoder_start_token_id=tok.pad_token_id,
                                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id).to_dict(),
        num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = transformers.InstructBlipForConditionalGeneration(cfg)
    proc = transformers.InstructBlipProcessor(image_processor=transformers.BlipImageProcessor(size={"height": 32, "width": 32}),
                                              tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4)
    path = Path(path)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def tiny_mask2former(path: str | Path, seed: int = 0, num_labels: int = 80) -> Path:
    """Swin Mask2Former for COCO instance segmentation (80 classes, as GenEval's detector needs)."""
    import torch
    import transformers

    backbone = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1],
                                       num_heads=[1, 1, 1, 1], window_size=2,
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=num_labels, hidden_dim=32,
                                         mask_feature_size=32, feature_size=32, encoder_feedforward_dim=32,
                                         dim_feedforward=32, decoder_layers=2, encoder_layers=1, num_queries=10,
                                         num_attention_heads=2)
    torch.manual_seed(seed)
    path = Path(path)
    transformers.Mask2FormerForUniversalSegmentation(cfg).save_pretrained(path)
    transformers.Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 64},
                                           size_divisor=32).save_pretrained(path)
    return path


def tiny_open_clip(folder: str | Path, name: str, seed: int = 0) -> Path:
    """A tiny open_clip model with random weights. Registers architecture ``name`` in this process
    (use ``model=name, pretrained=<returned file>``) and also writes ``open_clip_config.json`` next
    to the weights, so ``model="local-dir:<folder>"`` works in any process. Returns the weights file."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(OPEN_CLIP_CONFIG))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": OPEN_CLIP_CONFIG}))
    open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(seed)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), path)
    return path


T5_WORDS = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "cat": 5}


def tiny_t5(path: str | Path, width: int, seed: int = 0) -> Path:
    """A 1-layer T5 encoder of width ``width`` with a six-word tokenizer (EOS appended), as a local
    directory: LlamaGen's ``text_encoder`` option loads it like flan-t5-xl."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(T5_WORDS, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    path = Path(path)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=len(T5_WORDS), d_model=width, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    transformers.T5EncoderModel(config).eval().save_pretrained(path)
    return path


def _special_byte_tokenizer(specials: dict[str, int], **roles: str):
    """Byte-level BPE without merges (bytes are ids 0..255) plus ``specials`` at their given ids."""
    import transformers
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update(specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _perturb(model, seed: int, scale: float) -> None:
    """Weights far from the tiny init, so greedy decisions differ from token to token."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def tiny_janus(path: str | Path, seed: int = 0) -> Path:
    """The ``janus`` adapter's ``tiny`` preset as a local transformers checkpoint (weights, byte tokenizer,
    generation_config with boi_token_id), loadable with ``model.checkpoint``."""
    import torch
    import transformers

    from tsbench.models.janus import JANUS_PRESETS, generation_config, janus_config

    preset = JANUS_PRESETS["tiny"]
    tok = _special_byte_tokenizer({"<bos>": preset.bos, "<eos>": preset.eos, "<pad>": preset.pad,
                                   "<begin_of_image>": preset.boi, "<image_placeholder>": preset.image_token},
                                  bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    model = transformers.JanusForConditionalGeneration(janus_config(preset)).eval()
    _perturb(model, seed, 0.2)
    model.generation_config = generation_config(preset)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_emu3(path: str | Path, seed: int = 0) -> Path:
    """The ``emu3`` adapter's ``tiny`` preset as a local transformers checkpoint (weights with the
    vocabulary map, byte tokenizer with Emu3's special tokens)."""
    import torch
    import transformers

    from tsbench.models.emu3 import EMU3_PRESETS, SPECIAL, emu3_config

    preset = EMU3_PRESETS["tiny"]
    specials = {"<bos>": preset.bos, "<eos>": preset.eos, "<pad>": preset.pad,
                **{SPECIAL[name]: token for name, token in preset.special}}
    tok = _special_byte_tokenizer(specials, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    model = transformers.Emu3ForConditionalGeneration(emu3_config(preset)).eval()
    _perturb(model, seed, 0.2)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
