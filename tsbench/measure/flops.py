"""FLOPs per image: an analytic model (the number tsbench reports) and two counters that check it.

Convention: **2 FLOPs per multiply-add** ("2*MAC", ``FlopCounterMode``'s; fvcore counts 1 per MAC and is
doubled here). Matmuls and convolutions only: norms, softmax, activations, rotary embeddings, embedding
lookups, sampling and element-wise ops count 0 (``FlopCounterMode`` counts none of them either).

The analytic model (:func:`analytic_flops`) reads the shapes an adapter declares in its
:class:`~tsbench.models.cost.CostModel` and knows no adapter. It is split by phase (``text_encoder``,
``prefill``, ``decode``, ``vq_decode``) and component (``attention`` = score and value matmuls,
``attn_proj`` = QKV and output projections, ``ffn``, ``shuffle`` = shuffle/unshuffle MLPs, ``lm_head`` =
the output head, ``input_proj`` = projections into the backbone such as LlamaGen's caption MLP or
Janus's generation aligner, ``text_encoder``, ``vq_decoder``). Its default is algorithmic: causal prefill
(query i sees i + 1 keys), decode attention over the real prefix length. ``causal=False`` gives the
*executed* variant that SDPA kernels and the counters report (full T x T prefill attention). The VQ
decoder is the one part that is counted rather than derived: once per (decoder, grid) on the meta
device, then cached.

:func:`counted_flops` runs the real ``condition``/``start``/``step``/``decode_codes`` calls of a model
under ``FlopCounterMode`` or fvcore and must agree with the executed analytic variant (tests: within 1 %).
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from tsbench.models.base import ARImageModel
from tsbench.models.cost import CostModel, Shuffle, TextEncoder, VQDecode, decode_feed
from tsbench.models.shuffle import ar_steps

CONVENTION = "2*MAC"
PHASES = ("text_encoder", "prefill", "decode", "vq_decode")
COMPONENTS = ("attention", "attn_proj", "ffn", "shuffle", "lm_head", "input_proj", "text_encoder", "vq_decoder")
# T for the analytic model when no prompt is given: a 30-byte prompt plus [bos] and [soi] under the
# byte tokenizer. At 1024^2 the prompt is ~3 % of the AR positions at s = 2 and ~1 % at s = 1, so the
# choice barely moves totals; pass the real T (counted_flops reports it in meta) when it matters.
DEFAULT_PROMPT_TOKENS = 32
DEFAULT_PROMPT = "a photo of a red cat on a sofa"  # 30 bytes: DEFAULT_PROMPT_TOKENS under the byte tokenizer


# ---- result ---------------------------------------------------------------------------------------
@dataclass
class FlopBreakdown:
    """FLOPs per image; ``by_phase_component[phase][component]`` is the source of every other field."""

    total: int
    by_phase: dict[str, int]
    by_component: dict[str, int]
    by_phase_component: dict[str, dict[str, int]]
    convention: str = CONVENTION
    causal: bool = True
    kv_cache_length: str = "actual"
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: dict[str, dict[str, int]], **flags: Any) -> "FlopBreakdown":
        table = {p: {c: int(table.get(p, {}).get(c, 0)) for c in COMPONENTS} for p in PHASES}
        by_phase = {p: sum(row.values()) for p, row in table.items()}
        by_component = {c: sum(table[p][c] for p in PHASES) for c in COMPONENTS}
        return cls(sum(by_phase.values()), by_phase, by_component, table, **flags)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# ---- analytic model -------------------------------------------------------------------------------
def _cost(model_or_cost: ARImageModel | CostModel) -> CostModel:
    return model_or_cost if isinstance(model_or_cost, CostModel) else model_or_cost.cost_model()


def _linear_per_token(cost: CostModel) -> dict[str, int]:
    """Linear work of one position through all backbone layers (GQA: K and V use n_kv_heads)."""
    b = cost.backbone
    return {component: b.n_layers * 2 * weights for component, weights in b.layer_parameters.items()}


def _shuffle_per_window(shuffle: Shuffle | None) -> tuple[int, int]:
    """(input side per fed window, output side per predicted window); both 0 without shuffle modules.

    Input: compress s^2 tokens d -> d/s^2 (2d^2 together), then the residual blocks on the fused token.
    Output: the residual blocks, then expand s^2 chunks d/s^2 -> d (2d^2 together).
    """
    if shuffle is None:
        return 0, 0
    blocks = shuffle.n_blocks * 2 * 2 * shuffle.dim * shuffle.hidden
    squeeze = 2 * shuffle.dim * shuffle.dim
    return squeeze + blocks, blocks + squeeze


def _text_encoder_flops(encoder: TextEncoder, rows: int) -> int:
    """One bidirectional pass: projections and MLP per token, every query against all keys."""
    e, t = encoder.layers, encoder.tokens
    per_token = 2 * (e.dim * e.q_dim + 2 * e.dim * e.kv_dim + e.q_dim * e.dim) + 2 * e.ffn_matrices * e.dim * e.ffn_hidden
    attention = 4 * e.q_dim * t * t
    passes = rows if encoder.per_cfg_row else 1
    return passes * e.n_layers * (per_token * t + attention)


def _ar_table(cost: CostModel, grid: tuple[int, int], rows: int, prompt_tokens: int,
              causal: bool) -> dict[str, dict[str, int]]:
    """Prefill over T prompt positions (logits for the last one only), then one decode step per fed window
    (plus any row-end tokens), each predicting s^2 codes through the head; every term times the rows."""
    t, s2 = prompt_tokens, cost.window ** 2
    feed = decode_feed(cost, grid)
    linear = _linear_per_token(cost)
    per_pair = cost.backbone.n_layers * 4 * cost.backbone.q_dim  # scores + values, per (query, key)
    prefill_pairs = t * (t + 1) // 2 if causal else t * t  # query i sees i + 1 keys, or all T
    decode_pairs, length = 0, t
    for q in feed:  # q new positions attend over the cache and each other
        decode_pairs += q * length + (q * (q + 1) // 2 if causal else q * q)
        length += q
    fed, tokens = len(feed), sum(feed)
    head = s2 * cost.head_flops_per_code  # s^2 codes per predicted window
    shuffle_in, shuffle_out = _shuffle_per_window(cost.shuffle)
    prefill = {"attention": per_pair * prefill_pairs, "attn_proj": linear["attn_proj"] * t,
               "ffn": linear["ffn"] * t, "shuffle": shuffle_out, "lm_head": head,
               "input_proj": cost.input_flops_per_prompt_token * t}
    decode = {"attention": per_pair * decode_pairs, "attn_proj": linear["attn_proj"] * tokens,
              "ffn": linear["ffn"] * tokens, "shuffle": (shuffle_in + shuffle_out) * fed, "lm_head": head * fed,
              "input_proj": cost.input_flops_per_code * s2 * fed}
    return {phase: {c: rows * f for c, f in row.items()} for phase, row in (("prefill", prefill), ("decode", decode))}


_VQ_FLOPS: dict[tuple[Any, tuple[int, int]], int] = {}


def vq_decode_flops(vq: VQDecode, grid: tuple[int, int]) -> int:
    """One image's VQ decode, counted on the meta device (no allocation): convolutions are registered
    and attention blocks take the math path there, so their matmuls are counted too. Cached."""
    key = (vq.key, tuple(grid))
    if key not in _VQ_FLOPS:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            vq.run_on_meta(tuple(grid))
        _VQ_FLOPS[key] = counter.get_total_flops()
    return _VQ_FLOPS[key]


def analytic_flops(model_or_cost: ARImageModel | CostModel, resolution: int | tuple[int, int], cfg: bool = True,
                   prompt_tokens: int | None = None, causal: bool = True) -> FlopBreakdown:
    """FLOPs per image from the shapes alone.

    ``prompt_tokens`` is T, the prefill length (default ``DEFAULT_PROMPT_TOKENS``; a model with a fixed
    prefill, like LlamaGen's 120 caption slots, uses its own). With CFG the unconditional row is
    left-padded to T and computes all T positions, as the implementations do. ``causal=False`` is the
    executed variant: full T x T prefill attention, as SDPA kernels and FLOP counters count it. Decode
    attention always covers the real prefix (every adapter's cache is read up to its filled part).
    """
    cost = _cost(model_or_cost)
    if cost.prompt_tokens is not None and prompt_tokens not in (None, cost.prompt_tokens):
        raise ValueError(f"this model always prefills {cost.prompt_tokens} positions, not {prompt_tokens}")
    if prompt_tokens is not None and prompt_tokens < 1:  # a count, never negative FLOPs
        raise ValueError(f"prompt_tokens must be >= 1, got {prompt_tokens}")
    t = cost.prompt_tokens or prompt_tokens or DEFAULT_PROMPT_TOKENS
    grid = cost.grid(resolution)
    rows = 2 if cfg else 1
    table = _ar_table(cost, grid, rows, t, causal)
    if cost.text_encoder is not None:
        table["text_encoder"] = {"text_encoder": _text_encoder_flops(cost.text_encoder, rows)}
    table["vq_decode"] = {"vq_decoder": vq_decode_flops(cost.vq, grid)}
    f = cost.vq.downsample
    meta = {"source": "analytic", "resolution": [grid[0] * f, grid[1] * f], "grid": list(grid),
            "window": cost.window, "ar_steps": ar_steps(grid, cost.window), "cfg": cfg, "rows_per_image": rows,
            "prompt_tokens": t, "decode_positions": sum(decode_feed(cost, grid)),
            "zero_cost": "norms, softmax, activations, rotary embeddings, embedding lookups, sampling"}
    if cost.text_encoder is not None:
        meta["text_encoder"] = {"name": cost.text_encoder.name, "tokens": cost.text_encoder.tokens,
                                "executed": cost.text_encoder.executed}
    return FlopBreakdown.from_table(table, causal=causal, kv_cache_length="actual", meta=meta)


# ---- counters -------------------------------------------------------------------------------------
def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """FlopCounterMode has no formula for the default CPU SDPA kernel and would count 0 (harness.md 11.3)."""
    return sdpa_flop_count(query, key, value)


CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
# fvcore counts these (norms, upsampling) by default; this convention counts matmuls and convolutions only.
# A None handle would only silence the warning and keep the default handle, so they get a zero handle.
FVCORE_ZERO = ("aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
               "aten::upsample_nearest2d", "aten::upsample_bilinear2d")
MATMUL_LIKE = re.compile(r"mm|matmul|linear|conv|einsum|attention")

Counts = dict[str, dict[str, int]]  # module name ("" = everything) -> operator -> FLOPs
PROBED = "probed"  # the attribute of the probe that holds the model: module names are relative to it


def _is_attention(op: str) -> bool:
    return "attention" in op or op in ("bmm", "baddbmm", "matmul")


class _Probe(nn.Module):
    """Root module around one model call: stable names (``probed.layers.0...``) for both counters and a
    tensor-in, tensor-out forward that fvcore's tracer accepts."""

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        setattr(self, PROBED, model)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _relative(name: str) -> str | None:
    """A counted module's name relative to the model (``_Probe.probed.layers.0`` -> ``layers.0``)."""
    parts = name.split(".")
    if PROBED not in parts:
        return None
    return ".".join(parts[parts.index(PROBED) + 1:])


def _count_flop_counter(probe: _Probe, x: torch.Tensor) -> Counts:
    with FlopCounterMode(display=False, depth=None, custom_mapping=CPU_SDPA) as counter:
        probe(x)
    return {("" if name == "Global" else name): {str(op).split(".")[-1]: n for op, n in ops.items()}
            for name, ops in counter.get_flop_counts().items()}


def _sdpa_macs_fvcore(inputs: list, outputs: list) -> int:
    """fvcore has no handle for SDPA: b * hq * sq * sk * (d + dv) multiply-adds (K/V heads broadcast)."""
    from fvcore.nn.jit_handles import get_shape

    (b, heads, sq, d), (_, _, sk, dv) = get_shape(inputs[0]), get_shape(inputs[2])
    return b * heads * sq * sk * (d + dv)


def _zero(inputs: list, outputs: list) -> int:
    return 0


def _count_fvcore(probe: _Probe, x: torch.Tensor) -> Counts:
    """One traced call; fvcore's 1-per-MAC numbers are doubled. Refuses to return with an uncounted matmul."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(probe, (x,)).set_op_handle(
        "aten::scaled_dot_product_attention", _sdpa_macs_fvcore, **dict.fromkeys(FVCORE_ZERO, _zero))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    counts = {name: {op: 2 * n for op, n in ops.items()} for name, ops in analysis.by_module_and_operator().items()}
    missed = [op for op in analysis.unsupported_ops() if MATMUL_LIKE.search(op)]
    if missed:
        raise RuntimeError(f"fvcore left matmul-like operators uncounted: {missed}")
    return counts


COUNTERS: dict[str, Callable[[_Probe, torch.Tensor], Counts]] = {
    "flop_counter": _count_flop_counter, "fvcore": _count_fvcore}


def _matching(counts: Counts, patterns: tuple[str, ...]) -> list[dict[str, int]]:
    """Operator counts of the modules whose relative names match ``patterns`` (glob), outermost only so
    nested matches are not counted twice."""
    names = [n for n in counts if n and (rel := _relative(n)) is not None and
             any(fnmatch.fnmatchcase(rel, p) for p in patterns)]
    outermost = [n for n in names if not any(n != m and n.startswith(m + ".") for m in names)]
    return [counts[n] for n in outermost]


def _split(counts: Counts, phase: str, modules: dict[str, tuple[str, ...]]) -> tuple[dict[str, int], int]:
    """Components of one counted call by the adapter's module map, and the FLOPs of modules it declares
    zero-cost ("ignored", e.g. rotary tables). Fails when some FLOPs fit no component."""
    total = sum(counts.get("", {}).values())
    if phase in ("vq_decode", "text_encoder"):  # one component each
        return {"vq_decoder" if phase == "vq_decode" else "text_encoder": total}, 0
    ignored_ops = _matching(counts, modules.get("ignored", ()))
    ignored = sum(n for ops in ignored_ops for n in ops.values())
    ignored_attention = sum(n for ops in ignored_ops for op, n in ops.items() if _is_attention(op))
    parts = {"attention": sum(n for op, n in counts.get("", {}).items() if _is_attention(op)) - ignored_attention}
    for component, patterns in modules.items():
        if component != "ignored":
            parts[component] = sum(n for ops in _matching(counts, patterns) for op, n in ops.items()
                                   if not _is_attention(op))
    if sum(parts.values()) + ignored != total:
        raise RuntimeError(f"{total - ignored - sum(parts.values())} counted {phase} FLOPs match no component "
                           f"of the model's cost map {dict(modules)}: {counts}")
    return parts, ignored


def _sum_steps(counted: list[dict[str, int]], steps: int) -> dict[str, int]:
    """All ``steps`` decode steps from the first ones counted. A step's cost is affine in its index (only
    attention grows, by one key per step), so the first and last counted steps fix the sum exactly."""
    if len(counted) == steps:
        return {c: sum(step[c] for step in counted) for c in (counted[0] if counted else {})}
    first, last = counted[0], counted[-1]
    pairs = steps * (steps - 1) // 2
    return {c: round(steps * first[c] + Fraction(last[c] - first[c], len(counted) - 1) * pairs) for c in first}


def counted_flops(model: ARImageModel, resolution: int | tuple[int, int], cfg: bool = True,
                  prompt: str = DEFAULT_PROMPT, counter: str = "flop_counter",
                  decode_steps: int | None = None) -> FlopBreakdown:
    """Count one image's real ``condition`` (the text encoder, if any), ``start``, decode ``step`` calls
    (synthetic codes) and VQ decode.

    Compare with ``analytic_flops(..., causal=False, prompt_tokens=result.meta["prompt_tokens"])``.
    ``decode_steps`` counts only the first n >= 2 steps and extrapolates the rest exactly (see
    :func:`_sum_steps`); it needs steps of equal width, so a model with row-end tokens is counted in
    full. fvcore cannot trace a call on strings: the text encoder is counted with ``FlopCounterMode``.
    """
    if counter not in COUNTERS:
        raise ValueError(f"unknown FLOP counter {counter!r}; use one of {', '.join(COUNTERS)}")
    if decode_steps is not None and decode_steps < 2:
        raise ValueError("decode_steps must be at least 2 (two points fix the per-step cost) or None")
    count = COUNTERS[counter]
    cost = model.cost_model()
    grid = model.grid(resolution)
    feed = decode_feed(cost, grid)
    uniform = len(set(feed)) <= 1
    counted_steps = len(feed) if decode_steps is None or not uniform else min(decode_steps, len(feed))
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as text_counter:
        cond = model.condition([prompt], cfg, grid=grid)
    state: dict[str, Any] = {}

    def prefill(mask: torch.Tensor) -> torch.Tensor:
        state["decode"], logits = model.start(replace(cond, mask=mask), grid)
        return logits

    codes = torch.zeros(cond.rows, model.window ** 2, dtype=torch.long, device=cond.mask.device)
    modules = dict(cost.modules)
    ignored = 0
    with torch.no_grad():
        table = {"text_encoder": {"text_encoder": text_counter.get_total_flops()}}
        table["prefill"], skipped = _split(count(_Probe(model, prefill), cond.mask), "prefill", modules)
        ignored += skipped
        step = _Probe(model, lambda window_codes: model.step(state["decode"], window_codes))
        steps = []
        for _ in range(counted_steps):
            parts, skipped = _split(count(step, codes), "decode", modules)
            steps.append(parts)
            ignored += skipped
        table["decode"] = _sum_steps(steps, len(feed)) if steps else {}
        grid_codes = torch.zeros(1, *grid, dtype=torch.long, device=cond.mask.device)
        # the decoder may sit outside the model's module tree (LlamaGen keeps it there): hold both, so that
        # fvcore's tracer sees its weights as parameters
        holder = nn.ModuleList([model] + [m for m in (getattr(model, "vq", None),) if isinstance(m, nn.Module)])
        table["vq_decode"], _ = _split(count(_Probe(holder, model.decode_codes), grid_codes), "vq_decode", modules)
    f = model.downsample
    meta = {"source": counter, "torch": torch.__version__, "device": str(cond.mask.device),
            "resolution": [grid[0] * f, grid[1] * f], "grid": list(grid), "window": model.window,
            "ar_steps": len(feed) + 1, "cfg": cfg, "rows_per_image": cond.rows, "prompt_tokens": cond.length,
            "decode_steps_counted": counted_steps, "ignored_by_convention": ignored}
    return FlopBreakdown.from_table(table, causal=False, kv_cache_length="actual", meta=meta)


# ---- report ---------------------------------------------------------------------------------------
UNITS = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def human(flops: float) -> str:
    """1.23e12 -> '1.23 TFLOP'."""
    for scale, prefix in UNITS:
        if flops >= scale:
            return f"{flops / scale:.2f} {prefix}FLOP"
    return f"{flops:.0f} FLOP"


def format_table(result: FlopBreakdown, title: str = "") -> str:
    """Components x phases with totals and shares, human units; components that cost nothing are left out."""
    cols = [*PHASES, "total", "share"]
    share = {c: f"{100 * n / result.total:.1f} %" for c, n in result.by_component.items()}

    def cell(n: int) -> str:
        return human(n) if n else "-"

    rows = [[c, *(cell(result.by_phase_component[p][c]) for p in PHASES), cell(result.by_component[c]), share[c]]
            for c in COMPONENTS if result.by_component[c]]
    rows.append(["total", *(cell(result.by_phase[p]) for p in PHASES), cell(result.total), "100.0 %"])
    rows.append(["share", *(f"{100 * result.by_phase[p] / result.total:.1f} %" for p in PHASES), "100.0 %", ""])
    widths = [max(len(str(r[i])) for r in [["component", *cols], *rows]) for i in range(len(cols) + 1)]
    lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in [["component", *cols], *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(-2, "-" * len(lines[0]))
    return "\n".join([title, *lines] if title else lines)


def flops_report(adapter: str, preset: str | None, resolution: int | tuple[int, int], window: int | None = None,
                 cfg: bool = True,
                 as_json: bool = False, prompt_tokens: int | None = None, causal: bool = True) -> str:
    """The analytic breakdown of one setting, built on the meta device (no weights are allocated)."""
    import tsbench

    model = tsbench.load_model(adapter, preset=preset, window=window, device="meta")  # no weights allocated
    result = analytic_flops(model, resolution, cfg=cfg, prompt_tokens=prompt_tokens, causal=causal)
    result.meta.update(adapter=adapter, preset=model.describe()["preset"])
    if as_json:
        return result.to_json()
    m = result.meta
    title = (f"{adapter} {m['preset']}: {m['resolution'][0]}x{m['resolution'][1]}, window {m['window']}, "
             f"{m['ar_steps']} AR steps, CFG {'on' if cfg else 'off'} ({m['rows_per_image']} rows), "
             f"prompt {m['prompt_tokens']} tokens\nFLOPs per image ({result.convention}; "
             f"{'causal' if causal else 'full'} prefill attention; decode over the {result.kv_cache_length} "
             f"KV prefix; {m['zero_cost']} count 0)\n")
    return format_table(result, title)
