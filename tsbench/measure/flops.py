"""FLOPs per image: an analytic model (the number tsbench reports) and two counters that check it.

Convention: **2 FLOPs per multiply-add** ("2*MAC", ``FlopCounterMode``'s; fvcore counts 1 per MAC and is
doubled here). Matmuls and convolutions only: norms, softmax, activations, rotary embeddings, embedding
lookups, sampling and element-wise ops count 0 (``FlopCounterMode`` counts none of them either).

The analytic model is written once from the config (:func:`analytic_flops`) and split by phase
(``prefill``, ``decode``, ``vq_decode``) and component (``attention`` = score and value matmuls,
``attn_proj`` = QKV and output projections, ``ffn``, ``shuffle`` = shuffle/unshuffle MLPs,
``lm_head``, ``caption_mlp`` = LlamaGen's caption projection, ``vq_decoder``). Its default is algorithmic: causal prefill (query i sees i + 1 keys),
decode attention over the real prefix length. ``causal=False`` gives the *executed* variant that SDPA
kernels and the counters report (full T x T prefill attention). The VQ decoder is the one part that is
counted rather than derived: once per (VQ config, grid) on the meta device, then cached.

:func:`counted_flops` runs the real ``start``/``step``/``decode_codes`` calls of a model under
``FlopCounterMode`` or fvcore and must agree with the executed analytic variant (tests: exactly).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from tsbench.models.shuffle import check_grid
from tsbench.models.vq import VQConfig, VQModel, get_vq_config

CONVENTION = "2*MAC"
PHASES = ("prefill", "decode", "vq_decode")
COMPONENTS = ("attention", "attn_proj", "ffn", "shuffle", "lm_head", "caption_mlp", "vq_decoder")
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
@dataclass(frozen=True)
class ARSpec:
    """The shape facts the analytic model needs from an adapter's decoder-only transformer."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int  # SwiGLU: three dim x ffn_hidden matrices
    logit_width: int  # columns of the LM head matmul (the full vocabulary, before any slicing)
    window: int = 1
    n_mlp_blocks: int = 0
    shuffle_hidden: int = 0
    prompt_tokens: int | None = None  # fixed prefill length (LlamaGen pads captions); None: prompt-dependent
    caption_mlp_per_token: int = 0  # conditioning projection per prefill position (LlamaGen's cap_proj)


def _token_shuffle_spec(cfg: Any, window: int) -> ARSpec:
    return ARSpec(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                  head_dim=cfg.head_dim, ffn_hidden=cfg.ffn_hidden, logit_width=cfg.vocab_size, window=window,
                  n_mlp_blocks=cfg.n_mlp_blocks, shuffle_hidden=cfg.shuffle_hidden or cfg.dim)


def _llamagen_spec(cfg: Any, window: int) -> ARSpec:
    """tsbench's LlamaGen: logits for the last caption position only and a KV cache read up to its
    filled prefix (the official code computes all T prefill logits and attends over round8(T + N) keys)."""
    return ARSpec(dim=cfg.dim, n_layers=cfg.n_layer, n_heads=cfg.n_head, n_kv_heads=cfg.n_head,
                  head_dim=cfg.head_dim, ffn_hidden=cfg.ffn_hidden, logit_width=cfg.vocab_size, window=window,
                  n_mlp_blocks=cfg.shuffle_blocks, shuffle_hidden=cfg.shuffle_hidden or cfg.dim,
                  prompt_tokens=cfg.cls_token_num,
                  caption_mlp_per_token=2 * (cfg.caption_dim * cfg.dim + cfg.dim * cfg.dim))


# One analytic spec per adapter config class, by name so that importing this module loads no adapter.
SPECS: dict[str, Callable[[Any, int], ARSpec]] = {"TokenShuffleConfig": _token_shuffle_spec,
                                                  "LlamaGenConfig": _llamagen_spec}


def _resolve(model_or_config: nn.Module | Any, window: int | None) -> tuple[ARSpec, VQConfig]:
    """The spec and VQ config of a model (its own window unless one is given) or of a bare config."""
    if isinstance(model_or_config, nn.Module):
        config, vq, own_window = model_or_config.config, model_or_config.vq.config, model_or_config.window
    else:
        config, vq = model_or_config, get_vq_config(model_or_config.vq)
        own_window = getattr(config, "window", 1)
    name = type(config).__name__
    if name not in SPECS:
        raise NotImplementedError(f"no analytic FLOP model for {name}; known: {', '.join(SPECS)}")
    return SPECS[name](config, window or own_window), vq


def _ar_steps(grid: tuple[int, int], window: int) -> int:
    check_grid(grid, window)
    return (grid[0] // window) * (grid[1] // window)


def _per_token(spec: ARSpec) -> dict[str, int]:
    """Linear work of one position through all layers (GQA: K and V use n_kv_heads)."""
    d, q, kv = spec.dim, spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
    return {"attn_proj": spec.n_layers * 2 * (d * q + 2 * d * kv + q * d),
            "ffn": spec.n_layers * 2 * 3 * spec.dim * spec.ffn_hidden}


def _shuffle_per_window(spec: ARSpec) -> tuple[int, int]:
    """(input side per fed window, output side per predicted window); both 0 at s = 1.

    Input: compress s^2 tokens d -> d/s^2 (2d^2 together), then the residual blocks on the fused token.
    Output: the residual blocks, then expand s^2 chunks d/s^2 -> d (2d^2 together).
    """
    if spec.window == 1:
        return 0, 0
    blocks = spec.n_mlp_blocks * 2 * 2 * spec.dim * spec.shuffle_hidden
    squeeze = 2 * spec.dim * spec.dim
    return squeeze + blocks, blocks + squeeze


def _ar_table(spec: ARSpec, grid: tuple[int, int], rows: int, prompt_tokens: int,
              causal: bool) -> dict[str, dict[str, int]]:
    """Prefill over T prompt positions (logits for the last one only), then M - 1 one-token decode steps,
    each predicting s^2 codes through the full-vocabulary head; every term times the rows per image."""
    t = prompt_tokens
    fed = _ar_steps(grid, spec.window) - 1  # decode steps: every window but the last is fed back
    linear = _per_token(spec)
    per_pair = spec.n_layers * 4 * spec.n_heads * spec.head_dim  # scores + values, per (query, key)
    prefill_pairs = t * (t + 1) // 2 if causal else t * t  # query i sees i + 1 keys, or all T
    decode_pairs = fed * (t + 1) + fed * (fed - 1) // 2  # step k attends over T + k + 1 cached keys
    head = spec.window ** 2 * 2 * spec.dim * spec.logit_width  # s^2 logit vectors per predicted window
    shuffle_in, shuffle_out = _shuffle_per_window(spec)
    prefill = {"attention": per_pair * prefill_pairs, "attn_proj": linear["attn_proj"] * t,
               "ffn": linear["ffn"] * t, "shuffle": shuffle_out, "lm_head": head,
               "caption_mlp": spec.caption_mlp_per_token * t}
    decode = {"attention": per_pair * decode_pairs, "attn_proj": linear["attn_proj"] * fed,
              "ffn": linear["ffn"] * fed, "shuffle": (shuffle_in + shuffle_out) * fed, "lm_head": head * fed}
    return {phase: {c: rows * f for c, f in row.items()} for phase, row in (("prefill", prefill), ("decode", decode))}


@lru_cache(maxsize=None)
def vq_decode_flops(config: VQConfig, grid: tuple[int, int]) -> int:
    """One image's VQ decode, counted on the meta device (no allocation): convolutions are registered
    and the attention blocks' SDPA takes the math path there, so it is counted as bmm."""
    with torch.device("meta"):
        vq = VQModel(config)
    codes = torch.zeros(1, *grid, dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vq.decode_codes(codes)
    return counter.get_total_flops()


def _grid(resolution: int | tuple[int, int], downsample: int) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h < 1 or w < 1:
        raise ValueError(f"resolution {h}x{w} must be positive")
    if h % downsample or w % downsample:
        raise ValueError(f"resolution {h}x{w} is not a multiple of the VQ downsampling factor {downsample}")
    return h // downsample, w // downsample


def analytic_flops(model_or_config: nn.Module | Any, resolution: int | tuple[int, int], window: int | None = None,
                   cfg: bool = True, prompt_tokens: int | None = None, causal: bool = True) -> FlopBreakdown:
    """FLOPs per image from the config alone.

    ``prompt_tokens`` is T, the prefill length ([bos] text [soi] for Token-Shuffle, default
    ``DEFAULT_PROMPT_TOKENS``; LlamaGen's is fixed at ``cls_token_num``). With CFG the unconditional row
    is left-padded to T and computes all T positions, as the implementations do. ``causal=False`` is the
    executed variant: full T x T prefill attention, as SDPA kernels and FLOP counters count it. Decode
    attention always covers the real prefix (tsbench's KV cache reads only its filled part).
    """
    spec, vq = _resolve(model_or_config, window)
    if spec.prompt_tokens is not None and prompt_tokens not in (None, spec.prompt_tokens):
        raise ValueError(f"this model always prefills {spec.prompt_tokens} positions, not {prompt_tokens}")
    if prompt_tokens is not None and prompt_tokens < 1:  # a count, never negative FLOPs
        raise ValueError(f"prompt_tokens must be >= 1, got {prompt_tokens}")
    t = spec.prompt_tokens or prompt_tokens or DEFAULT_PROMPT_TOKENS
    grid = _grid(resolution, vq.downsample)
    rows = 2 if cfg else 1
    table = _ar_table(spec, grid, rows, t, causal)
    table["vq_decode"] = {"vq_decoder": vq_decode_flops(vq, grid)}
    meta = {"source": "analytic", "resolution": [grid[0] * vq.downsample, grid[1] * vq.downsample],
            "grid": list(grid), "window": spec.window, "ar_steps": _ar_steps(grid, spec.window), "cfg": cfg,
            "rows_per_image": rows, "prompt_tokens": t,
            "zero_cost": "norms, softmax, activations, rotary embeddings, embedding lookups, sampling"}
    return FlopBreakdown.from_table(table, causal=causal, kv_cache_length="actual", meta=meta)


# ---- counters -------------------------------------------------------------------------------------
def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FlopCounterMode has no formula for the default CPU SDPA kernel and would count 0 (harness.md 11.3)."""
    return sdpa_flop_count(query, key, value)


CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
# fvcore counts these (norms, upsampling) by default; this convention counts matmuls and convolutions only.
# A None handle would only silence the warning and keep the default handle, so they get a zero handle.
FVCORE_ZERO = ("aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
               "aten::upsample_nearest2d", "aten::upsample_bilinear2d")
MATMUL_LIKE = re.compile(r"mm|matmul|linear|conv|einsum|attention")
# Attention is found by operator (the matmuls between activations); everything else by module name.
MODULE_COMPONENTS = (("attn_proj", re.compile(r"\.attention\.w(q|k|v|o|qkv)$")),
                     ("ffn", re.compile(r"\.feed_forward$")),
                     ("shuffle", re.compile(r"\.shuffle_(in|out)$")),
                     ("lm_head", re.compile(r"(^|\.)model\.output$")),
                     ("caption_mlp", re.compile(r"\.cls_embedding$")))

Counts = dict[str, dict[str, int]]  # module name ("" = everything) -> operator -> FLOPs


def _is_attention(op: str) -> bool:
    return "attention" in op or op in ("bmm", "baddbmm", "matmul")


class _Probe(nn.Module):
    """Root module around one model call: stable names (``model.layers.0...``) for both counters and a
    tensor-in, tensor-out forward that fvcore's tracer accepts."""

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


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


def _split(counts: Counts, phase: str) -> dict[str, int]:
    """Components of one counted call; fails when some FLOPs fit no component (an unknown module)."""
    total = sum(counts.get("", {}).values())
    if phase == "vq_decode":
        return {"vq_decoder": total}
    parts = {"attention": sum(n for op, n in counts.get("", {}).items() if _is_attention(op))}
    for component, pattern in MODULE_COMPONENTS:
        parts[component] = sum(n for name, ops in counts.items() if pattern.search(name)
                               for op, n in ops.items() if not _is_attention(op))
    if sum(parts.values()) != total:
        raise RuntimeError(f"{total - sum(parts.values())} counted {phase} FLOPs match no component: {counts}")
    return parts


def _sum_steps(counted: list[dict[str, int]], steps: int) -> dict[str, int]:
    """All ``steps`` decode steps from the first ones counted. A step's cost is affine in its index (only
    attention grows, by one key per step), so the first and last counted steps fix the sum exactly."""
    if len(counted) == steps:
        return {c: sum(step[c] for step in counted) for c in (counted[0] if counted else {})}
    first, last = counted[0], counted[-1]
    pairs = steps * (steps - 1) // 2
    return {c: round(steps * first[c] + Fraction(last[c] - first[c], len(counted) - 1) * pairs) for c in first}


def counted_flops(model: nn.Module, resolution: int | tuple[int, int], cfg: bool = True,
                  prompt: str = DEFAULT_PROMPT, counter: str = "flop_counter",
                  decode_steps: int | None = None) -> FlopBreakdown:
    """Count one image's real ``start``, decode ``step`` calls (synthetic codes) and VQ decode.

    Compare with ``analytic_flops(..., causal=False, prompt_tokens=result.meta["prompt_tokens"])``.
    ``decode_steps`` counts only the first n >= 2 steps and extrapolates the rest exactly (see
    :func:`_sum_steps`); None counts every step.
    """
    if counter not in COUNTERS:
        raise ValueError(f"unknown FLOP counter {counter!r}; use one of {', '.join(COUNTERS)}")
    if decode_steps is not None and decode_steps < 2:
        raise ValueError("decode_steps must be at least 2 (two points fix the per-step cost) or None")
    count = COUNTERS[counter]
    grid = model.grid(resolution)
    fed = _ar_steps(grid, model.window) - 1
    counted_steps = fed if decode_steps is None else min(decode_steps, fed)
    cond = model.condition([prompt], cfg)
    state: dict[str, Any] = {}

    def prefill(mask: torch.Tensor) -> torch.Tensor:
        state["decode"], logits = model.start(replace(cond, mask=mask), grid)
        return logits

    codes = torch.zeros(cond.rows, model.window ** 2, dtype=torch.long, device=cond.mask.device)
    with torch.no_grad():
        table = {"prefill": _split(count(_Probe(model, prefill), cond.mask), "prefill")}
        step = _Probe(model, lambda window_codes: model.step(state["decode"], window_codes))
        table["decode"] = _sum_steps([_split(count(step, codes), "decode") for _ in range(counted_steps)], fed)
        grid_codes = torch.zeros(1, *grid, dtype=torch.long, device=cond.mask.device)
        table["vq_decode"] = _split(count(_Probe(model.vq, model.vq.decode_codes), grid_codes), "vq_decode")
    meta = {"source": counter, "torch": torch.__version__, "device": str(cond.mask.device),
            "resolution": [grid[0] * model.vq.config.downsample, grid[1] * model.vq.config.downsample],
            "grid": list(grid), "window": model.window, "ar_steps": fed + 1, "cfg": cfg, "rows_per_image": cond.rows,
            "prompt_tokens": cond.length, "decode_steps_counted": counted_steps}
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


def flops_report(adapter: str, preset: str, resolution: int | tuple[int, int], window: int = 1, cfg: bool = True,
                 as_json: bool = False, prompt_tokens: int | None = None, causal: bool = True) -> str:
    """The analytic breakdown of one setting, built on the meta device (no weights are allocated)."""
    import tsbench

    model = tsbench.load_model(adapter, preset=preset, window=window, device="meta")
    result = analytic_flops(model, resolution, cfg=cfg, prompt_tokens=prompt_tokens, causal=causal)
    result.meta.update(adapter=adapter, preset=preset)
    if as_json:
        return result.to_json()
    m = result.meta
    title = (f"{adapter} {preset}: {m['resolution'][0]}x{m['resolution'][1]}, window {m['window']}, "
             f"{m['ar_steps']} AR steps, CFG {'on' if cfg else 'off'} ({m['rows_per_image']} rows), "
             f"prompt {m['prompt_tokens']} tokens\nFLOPs per image ({result.convention}; "
             f"{'causal' if causal else 'full'} prefill attention; decode over the {result.kv_cache_length} "
             f"KV prefix; {m['zero_cost']} count 0)\n")
    return format_table(result, title)
