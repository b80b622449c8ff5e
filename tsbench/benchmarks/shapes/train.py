"""The ShapesBench training recipe: a VQ tokenizer on rendered scenes, then one Token-Shuffle model per
window on (train-split prompt, scene codes) pairs. Every knob, seed and data source is in the two
recipe dataclasses, so ``tsbench shapes train`` reproduces the shipped weights.

The VQ is LlamaGen's architecture (``vq8-shapes``) trained with its losses minus the perceptual and
adversarial terms, which flat-colour scenes do not need: pixel MSE, codebook and commitment losses on
L2-normalised codes, plus LlamaGen-style restarts of codes that went unused.
"""
from __future__ import annotations

import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from tsbench.config.suite import config_hash
from tsbench.io import atomic_write_bytes, atomic_write_text
from tsbench.measure.env import cpu_has_bf16_matrix_units, device_name
from tsbench.models.checkpoint import file_digest, load_strict, read_tensors
from tsbench.models.shuffle import grid_to_windows
from tsbench.models.token_shuffle import TokenShuffleConfig, TokenShuffleLM, count_parameters, save_checkpoint
from tsbench.models.vq import VQModel, get_vq_config, load_vq_state_dict, to_uint8

from .oracle import judge_image
from .prompts import TAGS, all_prompts, sample_scene, shapes_prompts
from .scenes import render

Log = Callable[[str], None]


@dataclass(frozen=True)
class VQRecipe:
    preset: str = "vq8-shapes"
    resolution: int = 64
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    commitment: float = 0.25
    restart_every: int = 100  # steps between restarts of codes no image used since the last restart
    seed: int = 0
    precision: str = "auto"  # see autocast_dtype
    save_every: int = 250  # steps between resumable training states


@dataclass(frozen=True)
class LMRecipe:
    window: int = 1
    vq: str = "vq8-shapes"
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 8
    ffn_hidden: int = 768
    examples: int = 200_000  # distinct (prompt, scene) pairs, encoded once and cached in OUT/data/
    # prompts per tag in TAGS order: the two binding tags (position, colour attribution), where a colour
    # must land on the right shape, get twice the share of the others
    tag_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 2.0, 2.0)
    # the shipped models: 6,000 x 64 = 384,000 examples seen at every window (about 1.9 epochs)
    steps: int = 6_000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 500
    decay_fraction: float = 0.2  # warmup-stable-decay: constant lr, then linear to 0 over this last share
    weight_decay: float = 0.05
    cond_dropout: float = 0.1  # share of prompts replaced by the empty prompt, so CFG has an unconditional model
    resolution: int = 64
    seed: int = 0  # also picks the examples: a continuation with another seed sees fresh scenes
    init_from: str | None = None  # a recipe output directory whose shapes-s<window> this run continues
    precision: str = "auto"  # see autocast_dtype
    save_every: int = 250  # steps between resumable training states


PRECISIONS = ("auto", "fp32", "bf16")
# Recipe fields a resumed run may change: where to checkpoint, and (before the decay starts) how long to train.
RESUMABLE_CHANGES = ("save_every", "steps")


def autocast_dtype(precision: str, device: str) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``precision`` on ``device`` and why. ``auto`` picks bf16 where the hardware
    has bf16 matrix units (CUDA, AMX CPUs) and fp32 elsewhere. Master weights, optimizer state and the
    loss stay fp32 either way."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return (torch.bfloat16 if precision == "bf16" else None), f"{precision} (asked for)"
    if torch.device(device).type == "cuda":
        return torch.bfloat16, "bf16 autocast (auto: CUDA)"
    if cpu_has_bf16_matrix_units():
        return torch.bfloat16, "bf16 autocast (auto: the CPU has AMX-BF16)"
    return None, "fp32 (auto: the CPU has no AMX-BF16 matrix units, so bf16 matmuls would be slower than fp32)"


def _autocast(dtype: torch.dtype | None, device: str):
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def vocabulary() -> tuple[str, ...]:
    """Every word of every ShapesBench prompt, both splits (the test split shares words, never prompts)."""
    return tuple(sorted({w for tag in TAGS for record in all_prompts(tag) for w in record["prompt"].split()}))


def scene_examples(n: int, seed: int, resolution: int = 64, split: str = "train",
                   weights: tuple[float, ...] | None = None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` prompt records over the six tags (balanced, or as ``weights`` says) and one seeded scene
    rendered for each: uint8 [n, H, W, 3]."""
    rng = random.Random(seed)
    records = shapes_prompts(split, n, seed=seed, weights=weights)
    return records, np.stack([render(sample_scene(r, rng), resolution) for r in records])


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], the VQ's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---- resumable training state ------------------------------------------------------------------
class ResumeError(ValueError):
    """A saved training state that does not belong to this run; the message says which setting differs."""


def state_path(out: Path, name: str) -> Path:
    return out / "state" / f"{name}.pt"


def save_state(path: Path, recipe: object, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
               generator: torch.Generator | None, extra: dict[str, Any]) -> None:
    """Everything a killed run needs to continue as if it had never stopped, written atomically."""
    state = {"recipe": asdict(recipe), "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "torch_rng": torch.get_rng_state(), "generator": generator.get_state() if generator else None,
             "extra": extra}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path, recipe: object) -> dict[str, Any] | None:
    """The saved state at ``path`` (None if there is none), after checking it was made by ``recipe``."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, current = state["recipe"], json.loads(json.dumps(asdict(recipe)))
    saved = json.loads(json.dumps(saved))
    differ = sorted(k for k in current if saved.get(k) != current[k] and k not in RESUMABLE_CHANGES)
    if differ:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r}, now {current[k]!r}" for k in differ)
        raise ResumeError(f"{path}: the saved training state was made with other settings ({detail}); "
                          f"rerun with the same settings, or remove {path} to start over")
    decay_start = getattr(recipe, "steps") * (1 - getattr(recipe, "decay_fraction", 0.0))
    if current.get("steps") != saved.get("steps") and state["step"] > decay_start:
        raise ResumeError(f"{path}: steps changed from {saved.get('steps')} to {current['steps']} after step "
                          f"{state['step']}, inside the new schedule's decay; only a run still at constant "
                          f"learning rate can be lengthened")
    return state


def restore(state: dict[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer,
            generator: torch.Generator | None) -> int:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if generator is not None:
        generator.set_state(state["generator"])
    return int(state["step"])


# ---- VQ ----------------------------------------------------------------------------------------
def _vq_losses(vq: VQModel, x: torch.Tensor, commitment: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = F.normalize(vq.quant_conv(vq.encoder(x)).float(), p=2, dim=1)
    ids = vq.quantize.nearest(z)
    zq = vq.quantize.lookup(ids)
    straight_through = z + (zq - z).detach()
    recon = vq.decoder(vq.post_quant_conv(straight_through)).float()
    loss = F.mse_loss(recon, x) + F.mse_loss(zq, z.detach()) + commitment * F.mse_loss(z, zq.detach())
    return loss, ids, z


def train_vq(recipe: VQRecipe, log: Log = print, device: str = "cpu", state_file: Path | None = None,
             resume: bool = False) -> tuple[VQModel, dict[str, Any]]:
    """The trained tokenizer and the facts of its run (precision, seconds, loss curve)."""
    torch.manual_seed(recipe.seed)
    amp, precision = autocast_dtype(recipe.precision, device)
    vq = VQModel(get_vq_config(recipe.preset)).to(device)
    opt = torch.optim.Adam(vq.parameters(), lr=recipe.lr, betas=(0.9, 0.95))
    used = torch.zeros(vq.config.codebook_size, dtype=torch.bool, device=device)
    first, extra = 0, {"seconds": 0.0, "losses": []}
    state = load_state(state_file, recipe) if resume and state_file else None
    if state:
        first, extra = restore(state, vq, opt, None), state["extra"]
        used = extra.pop("used").to(device)
        log(f"vq: resuming at step {first}/{recipe.steps} from {state_file}")
    log(f"vq: {precision}")
    start = time.perf_counter() - extra["seconds"]
    for step in range(first, recipe.steps):
        lr = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        _, images = scene_examples(recipe.batch, seed=recipe.seed * 1_000_003 + step, resolution=recipe.resolution)
        with _autocast(amp, device):
            loss, ids, z = _vq_losses(vq, to_model_input(images).to(device), recipe.commitment)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        used[ids.flatten()] = True
        if (step + 1) % recipe.restart_every == 0 and step + 1 < recipe.steps:
            dead = (~used).nonzero().flatten()
            if len(dead):  # restart unused codes on latents of this batch
                pool = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                with torch.no_grad():
                    vq.quantize.embedding.weight[dead] = pool[torch.randint(len(pool), (len(dead),), device=device)]
            extra["losses"].append([step + 1, round(loss.item(), 5)])
            log(f"vq step {step + 1}/{recipe.steps} loss {loss.item():.4f} codes used {int(used.sum())} "
                f"restarted {len(dead)} ({time.perf_counter() - start:.0f}s)")
            used[:] = False
        if state_file and ((step + 1) % recipe.save_every == 0 or step + 1 == recipe.steps):
            extra["seconds"] = time.perf_counter() - start
            save_state(state_file, recipe, step + 1, vq, opt, None, {**extra, "used": used.cpu()})
    facts = {"train_seconds": round(time.perf_counter() - start, 1), "precision": precision,
             "loss_curve": extra["losses"]}
    return vq.cpu().eval(), facts


@torch.no_grad()
def reconstruction_accuracy(vq: VQModel, n: int = 600, seed: int = 12345, resolution: int = 64) -> float:
    """Oracle accuracy on VQ reconstructions of ``n`` test-split scenes (the ceiling for any AR model)."""
    records, images = scene_examples(n, seed, resolution, split="test")
    recon = to_uint8(vq(to_model_input(images)))
    return float(np.mean([judge_image(img, r)[0] for img, r in zip(recon, records)]))


@torch.no_grad()
def encode_examples(vq: VQModel, images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    return torch.cat([vq.encode(to_model_input(images[i:i + chunk])) for i in range(0, len(images), chunk)])


def training_examples(recipe: LMRecipe, vq: VQModel, vq_digest: str, cache_dir: Path, log: Log = print,
                      chunk: int = 5000) -> tuple[list[str], torch.Tensor]:
    """The run's (prompt, scene codes [N, h, w]) pairs. Encoding is the slow part, so the codes are cached
    under ``cache_dir`` keyed on everything that makes them: every window and a resumed run reuse them."""
    from safetensors.torch import load_file, save_file

    seed = 10_000 + recipe.seed
    records = shapes_prompts("train", recipe.examples, seed=seed, weights=recipe.tag_weights)
    key = config_hash({"vq": vq_digest, "seed": seed, "examples": recipe.examples, "resolution": recipe.resolution,
                       "weights": list(recipe.tag_weights)})
    path = cache_dir / f"codes-{key}.safetensors"
    if path.is_file():
        codes = load_file(str(path))["codes"].long()
        log(f"examples: {len(records)} scenes' codes from {path}")
        return [r["prompt"] for r in records], codes
    rng, parts, start = random.Random(seed), [], time.perf_counter()
    for i in range(0, len(records), chunk):  # render and encode in chunks: 200k scenes would need 2.5 GB at once
        images = np.stack([render(sample_scene(r, rng), recipe.resolution) for r in records[i:i + chunk]])
        parts.append(encode_examples(vq, images).to(torch.int16))
        log(f"examples: encoded {i + len(images)}/{len(records)} ({time.perf_counter() - start:.0f}s)")
    codes = torch.cat(parts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"codes": codes}, str(tmp))
    tmp.replace(path)
    return [r["prompt"] for r in records], codes.long()


def build_lm(recipe: LMRecipe) -> TokenShuffleLM:
    words = vocabulary()
    cfg = TokenShuffleConfig(
        dim=recipe.dim, n_layers=recipe.n_layers, n_heads=recipe.n_heads, n_kv_heads=recipe.n_heads,
        ffn_hidden=recipe.ffn_hidden, text_vocab_size=len(words) + 1,
        codebook_size=get_vq_config(recipe.vq).codebook_size, vq=recipe.vq, window=recipe.window,
        max_text_tokens=16, tokenizer="words", vocabulary=words)
    return TokenShuffleLM(cfg, preset="shapes")


def learning_rate(recipe: LMRecipe, step: int) -> float:
    """Warmup, then constant, then a linear decay to 0 over the last ``decay_fraction`` of the steps
    (warmup-stable-decay: a run still at constant rate can be lengthened by resuming with more steps)."""
    warm = min(1.0, (step + 1) / recipe.warmup)
    decay_start = recipe.steps * (1 - recipe.decay_fraction)
    if step < decay_start:
        return recipe.lr * warm
    return recipe.lr * warm * max(0.0, recipe.steps - step) / (recipe.steps - decay_start)


def train_lm(recipe: LMRecipe, vq: VQModel, examples: tuple[list[str], torch.Tensor], log: Log = print,
             device: str = "cpu", state_file: Path | None = None, resume: bool = False
             ) -> tuple[TokenShuffleLM, dict[str, Any]]:
    """The trained model and the facts of its run (precision, seconds, loss curve)."""
    torch.manual_seed(recipe.seed)
    amp, precision = autocast_dtype(recipe.precision, device)
    model = build_lm(recipe)
    if recipe.init_from:
        source = Path(recipe.init_from) / f"shapes-s{recipe.window}" / "model.safetensors"
        load_strict(model, read_tensors(source), str(source))
        log(f"lm s={recipe.window}: continuing from {source}")
    model.vq.load_state_dict(vq.state_dict())
    model.vq_weights = "trained with the model"
    prompts, codes = examples
    windows = grid_to_windows(codes, recipe.window).to(device)  # [N, M, s^2]
    model.to(device)
    log(f"lm s={recipe.window}: {len(prompts)} examples, {windows.shape[1]} windows of {windows.shape[2]} codes, "
        f"{count_parameters(model, exclude=('vq.',)) / 1e6:.2f}M params, {precision}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("vq.")]
    other = [p for n, p in model.named_parameters() if p.dim() < 2 and not n.startswith("vq.")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
    rng = torch.Generator().manual_seed(recipe.seed)
    first, extra = 0, {"seconds": 0.0, "losses": []}
    state = load_state(state_file, recipe) if resume and state_file else None
    if state:
        first, extra = restore(state, model, opt, rng), state["extra"]
        log(f"lm s={recipe.window}: resuming at step {first}/{recipe.steps} from {state_file}")
    model.train()
    start, window_loss = time.perf_counter() - extra["seconds"], []
    for step in range(first, recipe.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(recipe, step)
        idx = torch.randint(len(prompts), (recipe.batch,), generator=rng).to(device)
        drop = torch.rand(recipe.batch, generator=rng) < recipe.cond_dropout
        batch_prompts = ["" if d else prompts[i] for i, d in zip(idx.tolist(), drop.tolist())]
        target = windows[idx]  # [batch, M, s^2]
        with _autocast(amp, device):
            logits = model(model.condition(batch_prompts, cfg=False), target[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 2), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss.append(loss.item())
        if (step + 1) % 50 == 0:
            extra["losses"].append([step + 1, round(sum(window_loss) / len(window_loss), 5)])
            window_loss = []
            log(f"lm s={recipe.window} step {step + 1}/{recipe.steps} loss {extra['losses'][-1][1]:.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({time.perf_counter() - start:.0f}s)")
        if state_file and ((step + 1) % recipe.save_every == 0 or step + 1 == recipe.steps):
            extra["seconds"] = time.perf_counter() - start
            save_state(state_file, recipe, step + 1, model, opt, rng, extra)
    facts = {"train_seconds": round(time.perf_counter() - start, 1), "precision": precision,
             "loss_curve": extra["losses"]}
    return model.cpu().eval(), facts


def save_vq(vq: VQModel, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, str(path))


def load_vq(preset: str, path: Path) -> VQModel:
    vq = VQModel(get_vq_config(preset))
    load_vq_state_dict(vq, path)
    return vq.eval()


def write_recipe_log(directory: Path, recipe: object, facts: dict) -> None:
    atomic_write_text(directory / "recipe.json", json.dumps({"recipe": asdict(recipe), **facts}, indent=2) + "\n")


def _hardware(device: str) -> str:
    name = device_name(torch.device(device))
    return name if device.startswith("cuda") else f"{name}, {torch.get_num_threads()} thread(s)"


def run_recipe(out: Path, stages: tuple[str, ...] = ("vq", "lm"), windows: tuple[int, ...] = (1, 2, 4),
               vq_recipe: VQRecipe = VQRecipe(), lm_recipe: LMRecipe = LMRecipe(), device: str = "cpu",
               log: Log = print, resume: bool = False) -> list[Path]:
    """The whole recipe: ``out/vq/`` (the tokenizer), then ``out/shapes-s<w>/`` per window, each an fp16
    checkpoint (VQ included) with a ``recipe.json`` of its settings, training time, precision and hardware.
    Training states go to ``out/state/`` every ``save_every`` steps; ``resume=True`` continues from them."""
    vq_path = out / "vq" / "vq.safetensors"
    if "vq" in stages:
        vq, facts = train_vq(vq_recipe, log, device, state_path(out, "vq"), resume)
        save_vq(vq, vq_path)
        accuracy = reconstruction_accuracy(vq)
        log(f"vq: oracle accuracy on reconstructions of 600 test scenes {accuracy:.3f} ({facts['train_seconds']:.0f}s)")
        write_recipe_log(vq_path.parent, vq_recipe, {**facts, "hardware": _hardware(device),
                                                     "reconstruction_accuracy": accuracy})
    written = []
    if "lm" in stages:
        if not vq_path.is_file() and lm_recipe.init_from:  # a continuation keeps its tokenizer
            vq_path = Path(lm_recipe.init_from) / "vq" / "vq.safetensors"
        if not vq_path.is_file():
            raise FileNotFoundError(f"{vq_path}: train the tokenizer first (stage 'vq')")
        vq = load_vq(lm_recipe.vq, vq_path)
        examples = training_examples(lm_recipe, vq, file_digest(vq_path), out / "data", log)
        for window in windows:
            recipe = replace(lm_recipe, window=window)
            name = f"shapes-s{window}"
            model, facts = train_lm(recipe, vq, examples, log, device, state_path(out, name), resume)
            directory = save_checkpoint(model, out / name, dtype=torch.float16)
            vq_log = vq_path.parent / "recipe.json"
            facts = {**facts, "hardware": _hardware(device), "examples_seen": recipe.steps * recipe.batch,
                     "vq": json.loads(vq_log.read_text()) if vq_log.is_file() else None}
            if recipe.init_from:  # the chain of runs that made these weights
                facts["continued"] = json.loads((Path(recipe.init_from) / name / "recipe.json").read_text())
            write_recipe_log(directory, recipe, facts)
            written.append(directory)
    return written
