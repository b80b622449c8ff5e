"""User-facing errors of the benchmark layer.

Every class here describes a problem the user can fix (a missing file, a malformed line), so the CLI
catches ``BenchmarkInputError`` and prints the message instead of a traceback.
"""
from __future__ import annotations


class BenchmarkInputError(ValueError):
    """Base class: the message names the file/field/value and says what to do."""


class PromptFileError(BenchmarkInputError):
    """A prompt, rewrite or metadata file is malformed."""


class DataNotFoundError(BenchmarkInputError, FileNotFoundError):
    """The official files of a benchmark could not be found in any searched folder."""


class DataFetchError(BenchmarkInputError):
    """Downloading an official file failed or its checksum did not match."""
