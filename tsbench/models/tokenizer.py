"""Text tokenizers for the unified text+image sequence.

The default is dependency-free and byte-level, so tsbench runs with no download; any Hugging Face
tokenizer can be named instead when ``transformers`` is installed.
"""
from __future__ import annotations

from typing import Protocol


class TextTokenizer(Protocol):
    bos_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; 256 is BOS. Needs a text vocabulary of at least 257 ids."""

    name = "bytes"
    bos_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer:
    """Any ``transformers`` tokenizer by name or local path (loaded offline when it is cached)."""

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(f"tokenizer {name_or_path!r} needs transformers: pip install 'tsbench[hf]'") from err
        self.name = name_or_path
        self._tok = AutoTokenizer.from_pretrained(name_or_path)
        self.vocab_size = len(self._tok)
        self.bos_id = self._tok.bos_token_id if self._tok.bos_token_id is not None else 0

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)


def get_tokenizer(name: str) -> TextTokenizer:
    return ByteTokenizer() if name == "bytes" else HFTokenizer(name)
