"""Text tokenizers for the unified text+image sequence.

The default is dependency-free and byte-level, so tsbench runs with no download; a closed word
vocabulary (stored in the checkpoint's config) serves small synthetic worlds such as ShapesBench; any
Hugging Face tokenizer can be named instead when ``transformers`` is installed.
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


class WordTokenizer:
    """Whitespace-split words of a closed vocabulary: word i is id i, BOS is ``len(vocabulary)``.

    Prompts of a synthetic world are a handful of words, so one id per word keeps the text prefix short
    and a small model learns it in minutes. A word outside the vocabulary is an error, never a silent
    unknown token: the model could not have learned what it means."""

    name = "words"

    def __init__(self, vocabulary: tuple[str, ...] | list[str]) -> None:
        if not vocabulary:
            raise ValueError("the 'words' tokenizer needs the model config's 'vocabulary' (a list of words)")
        self.vocabulary = tuple(vocabulary)
        self._ids = {word: i for i, word in enumerate(self.vocabulary)}
        self.bos_id = len(self.vocabulary)
        self.vocab_size = len(self.vocabulary) + 1

    def encode(self, text: str) -> list[int]:
        words = text.lower().split()
        unknown = sorted({w for w in words if w not in self._ids})
        if unknown:
            raise ValueError(f"prompt {text!r} has words outside this model's vocabulary: {', '.join(unknown)}; "
                             f"it knows: {' '.join(self.vocabulary)}")
        return [self._ids[w] for w in words]


class HFTokenizer:
    """Any ``transformers`` tokenizer by name or local path (loaded offline when it is cached);
    ``local_files_only`` never touches the network (a checkpoint directory's own tokenizer)."""

    def __init__(self, name_or_path: str, local_files_only: bool = False) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(f"tokenizer {name_or_path!r} needs transformers: pip install 'tsbench[hf]'") from err
        self.name = name_or_path
        self._tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
        self.vocab_size = len(self._tok)
        self.bos_id = self._tok.bos_token_id if self._tok.bos_token_id is not None else 0

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)


def get_tokenizer(name: str, vocabulary: tuple[str, ...] | list[str] = ()) -> TextTokenizer:
    if name == "bytes":
        return ByteTokenizer()
    if name == "words":
        return WordTokenizer(vocabulary)
    return HFTokenizer(name)
