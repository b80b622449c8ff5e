"""Compiled decode: an adapter's :meth:`~tsbench.models.base.ARImageModel.decode` under ``torch.compile``
with one static-shape graph for the whole image.

What makes it fast, and what a naive ``torch.compile(model.step, dynamic=True)`` misses:

* **Static shapes.** After the eager prefill the KV cache switches to static decode
  (:meth:`~tsbench.models.layers.KVCache.start_static`): each step writes at a position held in a
  tensor, and attention reads the filled prefix through an operator the compiler treats as opaque
  (:func:`~tsbench.models.layers.prefix_attention`). Shapes then never change within an image, so
  one graph per batch and resolution serves every step. On CUDA, whose graphs cannot read the length
  from the device, attention covers the whole preallocated buffer with a mask, as gpt-fast does.
* **No graph breaks.** ``decode`` reads only tensors; the Python bookkeeping (positions, step count)
  stays in ``step`` outside the graph, and so do guidance and seeded sampling (``torch.Generator``
  objects cannot enter a graph).
* **In-place cache writes.** One buffer per layer, so inductor updates each where it lies.
* **CPU:** inductor's C++ backend with ``freezing``: weights become constants that inductor prepacks
  for MKL/oneDNN, and the element-wise work between the matmuls is fused; its C++ wrapper calls
  the kernels without Python in between.
* **CUDA:** mode ``reduce-overhead`` (CUDA graphs), with the cache buffers marked as static addresses
  so that a replay does not copy them.

Compilation happens at the first decode step of the first image of a shape. The runner triggers it
with :func:`compile_now` before anything is timed and reports it on its own (``latency.compile_s``),
so compile time never enters the measured latency.
"""
from __future__ import annotations

import contextlib
import time
import types
import warnings
from typing import Any, Iterator

import torch

from tsbench.models.base import ARImageModel, Conditioning, DecodeState


class CompileUnsupported(ValueError):
    """The adapter cannot run its decode under torch.compile."""


def adapter_name(model: ARImageModel) -> str:
    try:
        return str(model.describe()["adapter"])
    except (NotImplementedError, KeyError):
        return type(model).__name__


def reads_whole_cache(device: torch.device) -> bool:
    """Whether compiled steps on ``device`` attend over the whole cache buffer: a CUDA graph cannot
    look up the filled length on the host, a CPU step can (and reads only the prefix)."""
    return device.type == "cuda"


def compile_options(device: torch.device) -> dict[str, Any]:
    """``torch.compile`` keyword arguments for a device: CUDA graphs on CUDA, inductor's C++ on CPU."""
    return {"mode": "reduce-overhead"} if device.type == "cuda" else {"backend": "inductor"}


@contextlib.contextmanager
def tracing_settings(device: torch.device) -> Iterator[None]:
    """Settings in force while a graph is traced and compiled, patched here so that the caller's other
    graphs keep theirs. CPU: ``freezing`` (it must be on while dynamo traces, to keep the weights out
    of the graph inputs, which ``torch.compile(options=...)`` is too late for) and ``cpp_wrapper``
    (the kernels are called from C++, not from inductor's Python wrapper: a few per cent of a GPT-B
    step in an A/B, for some seconds more compilation)."""
    from torch._inductor import config

    cpu = device.type == "cpu"
    with warnings.catch_warnings(), config.patch(freezing=cpu, cpp_wrapper=cpu):
        # the rotary embedding's complex multiply stays an ATen kernel inside the graph, on purpose
        warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
        yield


def own_code(method: Any) -> Any:
    """``method`` bound to a private copy of its function's code object.

    Dynamo keeps its compiled graphs per code object, guarded on ``self``. Every model of one adapter
    would share one cache: a sweep's ninth compiled model then hits dynamo's recompile limit (a hard
    error under ``fullgraph``), and the frozen weights of every earlier model stay alive in that cache.
    With its own code object, each model's graphs are its own and are freed with it."""
    fn = method.__func__
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{id(method.__self__):x}")
    copy = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = fn.__kwdefaults__, f"{fn.__qualname__}[{code.co_name}]"
    return types.MethodType(copy, method.__self__)


def compile_decode(model: ARImageModel, **overrides: Any) -> ARImageModel:
    """Route ``model.step`` through a compiled static-shape ``decode``; returns the model.

    ``overrides`` replace :func:`compile_options` (e.g. ``backend="eager"`` checks graph capture
    without code generation). Raises :class:`CompileUnsupported` naming the adapter when it has no
    ``decode`` (an adapter that implements only ``step`` runs eagerly).
    """
    if type(model).decode is ARImageModel.decode:
        raise CompileUnsupported(f"adapter {adapter_name(model)!r} implements step() but no decode(), so its decode "
                                 f"step cannot be compiled; set model.compile: false for it")
    device = next(model.parameters()).device
    compiled = torch.compile(own_code(model.decode), fullgraph=True, dynamic=False,
                             **{**compile_options(device), **overrides})

    def static_decode(state: DecodeState, codes: torch.Tensor) -> torch.Tensor:
        cache = state.cache
        if cache.slot is not None:
            return compiled(state, codes)
        # the first step of an image, after the eager prefill: the only call that can (re)compile,
        # since shapes stay fixed for the rest of the image
        cache.start_static(whole_buffer=reads_whole_cache(device))
        if device.type == "cuda":
            for buffer in (*cache.keys, *cache.values):
                torch._dynamo.mark_static_address(buffer)
        with tracing_settings(device):
            return compiled(state, codes)

    model.compiled_decode = static_decode
    return model


@torch.inference_mode()
def compile_now(model: ARImageModel, cond: Conditioning, grid: tuple[int, int]) -> float:
    """Compile the graph for these shapes before anything is timed: one eager prefill, then one decode
    step on zero codes. Returns the seconds that step took, almost all of it tracing and compilation
    (0 for an eager model)."""
    if model.compiled_decode is None:
        return 0.0
    state, _ = model.start(cond, grid)
    codes = torch.zeros(cond.rows, model.window**2, dtype=torch.long, device=cond.mask.device)
    t0 = time.perf_counter()
    model.step(state, codes)
    if codes.device.type == "cuda":
        torch.cuda.synchronize(codes.device)
    return time.perf_counter() - t0
