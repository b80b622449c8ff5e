"""Name -> object registries with lazy ``"module:attr"`` entries.

Heavy backends (transformers, open_clip, t2v_metrics) are registered by string so that importing
tsbench never imports them; the string is resolved on first ``get``. Re-registering a name to a
different object is an error (silent replacement hides plugin clashes), and an unknown name
suggests the closest registered ones.
"""
from __future__ import annotations

import difflib
import importlib
import threading
from typing import Any, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or conflicting registry name; the message is meant for the user."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


def suggest(name: str, choices: list[str]) -> str:
    """' Did you mean ...?' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """The message for a name that is not in ``known``: ``unknown KIND 'NAME'. Did you mean ...? Known: ...``."""
    known = list(known)
    return f"unknown {kind} {name!r}.{suggest(name, known)} Known: {', '.join(known)}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, name: str, obj: T | str | None = None):
        """Register ``obj`` (or a ``"module:attr"`` string) under ``name``; usable as a decorator."""
        if obj is None:
            return lambda o: self.register(name, o) or o
        with self._lock:
            old = self._entries.get(name)
            if old is not None and old is not obj:
                # upgrading a lazy string to the object it names is fine
                if not (isinstance(old, str) and not isinstance(obj, str) and self._resolve(old) is obj):
                    raise RegistryError(f"{self.kind} {name!r} is already registered to {old!r}")
            self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise RegistryError(unknown_name(self.kind, name, self.names())) from None
        if isinstance(entry, str):
            entry = self._resolve(entry)
            self._entries[name] = entry
        return entry

    @staticmethod
    def _resolve(path: str) -> Any:
        module, _, attr = path.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# The registries of the layers above config, by kind. Config validates names against them through
# ``registry(kind)``, which imports a registry module only when a config is checked: config imports none
# of them at import time and knows none of their entries.
REGISTRIES = {"adapter": "tsbench.models:ADAPTERS", "benchmark": "tsbench.benchmarks.registry:BENCHMARKS",
              "scorer": "tsbench.scoring:SCORERS"}


def registry(kind: str) -> Registry[Any]:
    return Registry._resolve(REGISTRIES[kind])
