"""Compiled decode: the static-shape step gives eager's logits and tokens, compiles once per shape,
and an adapter without a static step is refused by name."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import tsbench
from tsbench.engine.generate import GuidanceConfig, generate_tokens
from tsbench.engine.sampling import SamplingConfig
from tsbench.models import ADAPTERS
from tsbench.models.base import ARImageModel
from tsbench.models.compiled import CompileUnsupported, compile_decode, compile_now

PROMPTS = ["a red circle", "two blue squares on a long grey road"]  # different lengths: left padding
GREEDY = SamplingConfig(top_k=1)
CASES = [("token-shuffle", "tiny", 1), ("token-shuffle", "tiny", 2), ("llamagen", "GPT-tiny", 1),
         ("llamagen-ts", "GPT-tiny", 2)]


def pair(adapter: str, preset: str, window: int) -> tuple[ARImageModel, ARImageModel]:
    """Two copies of one model, with weights large enough that the greedy choice is never a near tie."""
    eager = tsbench.load_model(adapter, preset=preset, window=window)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        for p in eager.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    other = tsbench.load_model(adapter, preset=preset, window=window)
    other.load_state_dict(eager.state_dict())
    return eager, other


@pytest.mark.parametrize("whole_buffer", [False, True])
@pytest.mark.parametrize("adapter, preset, window", CASES)
def test_static_step_gives_eager_logits(adapter: str, preset: str, window: int, whole_buffer: bool) -> None:
    """The static cache (prefix read at run time, or the whole buffer under a mask as CUDA graphs need)
    computes what the eager prefix read computes."""
    model, _ = pair(adapter, preset, window)
    grid = (4, 4) if window < 4 else (8, 8)
    with torch.inference_mode():
        cond = model.condition(PROMPTS, cfg=True)
        eager_state, _ = model.start(cond, grid)
        static_state, _ = model.start(cond, grid)
        static_state.cache.start_static(whole_buffer)
        codes = torch.randint(0, model.codebook_size, (cond.rows, 3, window * window))
        for i in range(codes.shape[1]):
            expected = model.step(eager_state, codes[:, i])
            got = model.step(static_state, codes[:, i])
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        assert static_state.cache.slot.item() == static_state.cache.filled == eager_state.cache.filled


@pytest.mark.parametrize("adapter, preset, window", CASES)
def test_captured_graph_gives_eager_tokens_and_compiles_once_per_shape(adapter: str, preset: str,
                                                                       window: int) -> None:
    """Graph capture without code generation (aot_eager: dynamo with fullgraph, then functionalised
    cache writes), so every adapter and window stays fast; the next test runs inductor itself."""
    eager, compiled = pair(adapter, preset, window)
    counter = CompileCounterWithBackend("aot_eager")
    compile_decode(compiled, backend=counter)
    guidance = GuidanceConfig(4.0, "linear")
    grid = (4, 4) if window < 4 else (8, 8)
    for seeds in ([0, 1], [2, 3]):  # a second image of the same shape reuses the graph
        want = generate_tokens(eager, PROMPTS, grid, guidance, GREEDY, seeds)
        assert torch.equal(generate_tokens(compiled, PROMPTS, grid, guidance, GREEDY, seeds), want)
    assert counter.frame_count == 1
    generate_tokens(compiled, PROMPTS[:1], grid, guidance, GREEDY, [0])  # one prompt: other shapes
    assert counter.frame_count == 2


def test_inductor_gives_eager_tokens_on_the_tiny_preset() -> None:
    """The real CPU path (inductor C++, frozen weights) on the smallest honest case: tiny preset, s = 1,
    a 4 x 4 grid. Most of its time is the one-off C++ compilation of a dozen kernels."""
    eager, compiled = pair("token-shuffle", "tiny", 1)
    compile_decode(compiled)
    guidance, grid = GuidanceConfig(4.0, "constant"), (4, 4)
    seconds = compile_now(compiled, compiled.condition(PROMPTS, cfg=True), grid)
    assert seconds > 0
    want = generate_tokens(eager, PROMPTS, grid, guidance, GREEDY, [0, 1])
    assert torch.equal(generate_tokens(compiled, PROMPTS, grid, guidance, GREEDY, [0, 1]), want)


def test_load_model_compile_flag_and_eager_compile_time() -> None:
    compiled = tsbench.load_model("token-shuffle", preset="tiny", compile=True)
    assert compiled.compiled_decode is not None
    eager = tsbench.load_model("token-shuffle", preset="tiny")
    assert eager.compiled_decode is None
    assert compile_now(eager, eager.condition(PROMPTS, cfg=True), (4, 4)) == 0.0


class StepOnly(ARImageModel):
    """An adapter written against the eager interface: it overrides step() and has no decode()."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(2, 2)

    def step(self, state, codes):  # pragma: no cover - never reached
        raise AssertionError

    def describe(self) -> dict:
        return {"adapter": "step-only"}


def test_adapter_without_decode_is_refused_by_name() -> None:
    with pytest.raises(CompileUnsupported, match="adapter 'step-only' implements step\\(\\) but no decode\\(\\)"):
        compile_decode(StepOnly())


@pytest.mark.parametrize("adapter, preset", [("token-shuffle", "tiny"), ("llamagen", "GPT-tiny"),
                                             ("llamagen-ts", "GPT-tiny"), ("janus", "tiny"), ("emu3", "tiny")])
def test_registry_says_which_adapters_compile(adapter: str, preset: str) -> None:
    """The suite loader refuses model.compile by the registry's flag; it must agree with the model."""
    if adapter in ("janus", "emu3"):
        pytest.importorskip("transformers")
    model = tsbench.load_model(adapter, preset=preset, device="meta")
    assert ADAPTERS.get(adapter).compiles == (type(model).decode is not ARImageModel.decode)
    if not ADAPTERS.get(adapter).compiles:
        with pytest.raises(CompileUnsupported, match=f"adapter {adapter!r} implements step"):
            compile_decode(model)


def test_many_compiled_models_in_one_process_each_compile_their_own_graph() -> None:
    """A sweep compiles one model per cell in one process. Dynamo caches graphs per code object, so
    models sharing ``decode``'s code would pile into one cache and fail at its recompile limit (8)."""
    limit = torch._dynamo.config.recompile_limit
    guidance, grid = GuidanceConfig(4.0, "constant"), (4, 4)
    counters = []
    for _ in range(limit + 2):
        model = tsbench.load_model("token-shuffle", preset="tiny", window=1)
        counter = CompileCounterWithBackend("eager")
        compile_decode(model, backend=counter)
        generate_tokens(model, PROMPTS[:1], grid, guidance, GREEDY, [0])
        counters.append(counter.frame_count)
    assert counters == [1] * (limit + 2)
