"""The ShapesBench training recipe: a VQ tokenizer on rendered scenes, then one Token-Shuffle model per
window on (train-split prompt, scene codes) pairs. Every knob, seed and data source is in the two
recipe dataclasses, so ``tsbench shapes train`` reproduces the shipped weights.

The VQ is LlamaGen's architecture (``vq8-shapes``) trained with its losses minus the perceptual and
adversarial terms, which flat-colour scenes do not need: pixel MSE, codebook and commitment losses on
L2-normalised codes, plus LlamaGen-style restarts of codes that went unused.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from tsbench.models.checkpoint import load_strict, read_tensors
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
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    commitment: float = 0.25
    restart_every: int = 100  # steps between restarts of codes no image used since the last restart
    seed: int = 0


@dataclass(frozen=True)
class LMRecipe:
    window: int = 1
    vq: str = "vq8-shapes"
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ffn_hidden: int = 768
    examples: int = 60_000  # distinct (prompt, scene) pairs, encoded once
    steps: int = 2000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    cond_dropout: float = 0.1  # share of prompts replaced by the empty prompt, so CFG has an unconditional model
    resolution: int = 64
    seed: int = 0  # also picks the examples: a continuation with another seed sees fresh scenes
    init_from: str | None = None  # a recipe output directory whose shapes-s<window> this run continues


def vocabulary() -> tuple[str, ...]:
    """Every word of every ShapesBench prompt, both splits (the test split shares words, never prompts)."""
    return tuple(sorted({w for tag in TAGS for record in all_prompts(tag) for w in record["prompt"].split()}))


def scene_examples(n: int, seed: int, resolution: int = 64, split: str = "train"
                   ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` prompt records balanced over the six tags and one seeded scene rendered for each:
    uint8 [n, H, W, 3]."""
    rng = random.Random(seed)
    records = shapes_prompts(split, n, seed=seed)
    return records, np.stack([render(sample_scene(r, rng), resolution) for r in records])


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], the VQ's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _vq_losses(vq: VQModel, x: torch.Tensor, commitment: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = F.normalize(vq.quant_conv(vq.encoder(x)), p=2, dim=1)
    ids = vq.quantize.nearest(z)
    zq = vq.quantize.lookup(ids)
    straight_through = z + (zq - z).detach()
    recon = vq.decoder(vq.post_quant_conv(straight_through))
    loss = F.mse_loss(recon, x) + F.mse_loss(zq, z.detach()) + commitment * F.mse_loss(z, zq.detach())
    return loss, ids, z


def train_vq(recipe: VQRecipe, log: Log = print, device: str = "cpu") -> VQModel:
    torch.manual_seed(recipe.seed)
    vq = VQModel(get_vq_config(recipe.preset)).to(device)
    opt = torch.optim.Adam(vq.parameters(), lr=recipe.lr, betas=(0.9, 0.95))
    used = torch.zeros(vq.config.codebook_size, dtype=torch.bool, device=device)
    start = time.perf_counter()
    for step in range(recipe.steps):
        lr = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        _, images = scene_examples(recipe.batch, seed=recipe.seed * 1_000_003 + step, resolution=recipe.resolution)
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
            log(f"vq step {step + 1}/{recipe.steps} loss {loss.item():.4f} codes used {int(used.sum())} "
                f"restarted {len(dead)} ({time.perf_counter() - start:.0f}s)")
            used[:] = False
    return vq.cpu().eval()


@torch.no_grad()
def reconstruction_accuracy(vq: VQModel, n: int = 300, seed: int = 12345, resolution: int = 64) -> float:
    """Oracle accuracy on VQ reconstructions of ``n`` test-split scenes (the ceiling for any AR model)."""
    records, images = scene_examples(n, seed, resolution, split="test")
    recon = to_uint8(vq(to_model_input(images)))
    return float(np.mean([judge_image(img, r)[0] for img, r in zip(recon, records)]))


@torch.no_grad()
def encode_examples(vq: VQModel, images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    return torch.cat([vq.encode(to_model_input(images[i:i + chunk])) for i in range(0, len(images), chunk)])


def build_lm(recipe: LMRecipe) -> TokenShuffleLM:
    words = vocabulary()
    cfg = TokenShuffleConfig(
        dim=recipe.dim, n_layers=recipe.n_layers, n_heads=recipe.n_heads, n_kv_heads=recipe.n_heads,
        ffn_hidden=recipe.ffn_hidden, text_vocab_size=len(words) + 1,
        codebook_size=get_vq_config(recipe.vq).codebook_size, vq=recipe.vq, window=recipe.window,
        max_text_tokens=16, tokenizer="words", vocabulary=words)
    return TokenShuffleLM(cfg, preset="shapes")


def train_lm(recipe: LMRecipe, vq: VQModel, log: Log = print, device: str = "cpu") -> TokenShuffleLM:
    torch.manual_seed(recipe.seed)
    model = build_lm(recipe)
    if recipe.init_from:
        source = Path(recipe.init_from) / f"shapes-s{recipe.window}" / "model.safetensors"
        load_strict(model, read_tensors(source), str(source))
        log(f"lm s={recipe.window}: continuing from {source}")
    model.vq.load_state_dict(vq.state_dict())
    model.vq_weights = "trained with the model"
    records, images = scene_examples(recipe.examples, seed=10_000 + recipe.seed, resolution=recipe.resolution)
    prompts = [r["prompt"] for r in records]
    codes = encode_examples(vq, images)
    windows = grid_to_windows(codes, recipe.window).to(device)  # [N, M, s^2]
    model.to(device)
    log(f"lm s={recipe.window}: {len(prompts)} examples, {windows.shape[1]} windows of {windows.shape[2]} codes, "
        f"{count_parameters(model, exclude=('vq.',)) / 1e6:.2f}M params")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("vq.")]
    other = [p for n, p in model.named_parameters() if p.dim() < 2 and not n.startswith("vq.")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
    rng = torch.Generator().manual_seed(recipe.seed)
    model.train()
    start = time.perf_counter()
    for step in range(recipe.steps):
        lr = recipe.lr * min(1.0, (step + 1) / recipe.warmup) * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(prompts), (recipe.batch,), generator=rng).to(device)
        drop = torch.rand(recipe.batch, generator=rng) < recipe.cond_dropout
        batch_prompts = ["" if d else prompts[i] for i, d in zip(idx.tolist(), drop.tolist())]
        target = windows[idx]  # [batch, M, s^2]
        logits = model(model.condition(batch_prompts, cfg=False), target[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 2), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 50 == 0:
            log(f"lm s={recipe.window} step {step + 1}/{recipe.steps} loss {loss.item():.4f} "
                f"({time.perf_counter() - start:.0f}s)")
    return model.cpu().eval()


def save_vq(vq: VQModel, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, str(path))


def load_vq(preset: str, path: Path) -> VQModel:
    vq = VQModel(get_vq_config(preset))
    load_vq_state_dict(vq, path)
    return vq.eval()


def write_recipe_log(directory: Path, recipe: object, facts: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recipe.json").write_text(json.dumps({"recipe": asdict(recipe), **facts}, indent=2) + "\n")


def _hardware(device: str) -> str:
    from tsbench.measure.env import device_name

    name = device_name(torch.device(device))
    return name if device.startswith("cuda") else f"{name}, {torch.get_num_threads()} thread(s)"


def run_recipe(out: Path, stages: tuple[str, ...] = ("vq", "lm"), windows: tuple[int, ...] = (1, 2, 4),
               vq_recipe: VQRecipe = VQRecipe(), lm_recipe: LMRecipe = LMRecipe(), device: str = "cpu",
               log: Log = print) -> list[Path]:
    """The whole recipe: ``out/vq/`` (the tokenizer), then ``out/shapes-s<w>/`` per window, each an fp16
    checkpoint (VQ included) with a ``recipe.json`` of its settings, training time and hardware."""
    from dataclasses import replace

    vq_path = out / "vq" / "vq.safetensors"
    if "vq" in stages:
        start = time.perf_counter()
        vq = train_vq(vq_recipe, log, device)
        seconds = time.perf_counter() - start
        save_vq(vq, vq_path)
        accuracy = reconstruction_accuracy(vq)
        log(f"vq: oracle accuracy on reconstructions {accuracy:.3f} ({seconds:.0f}s)")
        write_recipe_log(vq_path.parent, vq_recipe, {"train_seconds": round(seconds, 1), "hardware": _hardware(device),
                                                     "reconstruction_accuracy": accuracy})
    written = []
    if "lm" in stages:
        if not vq_path.is_file() and lm_recipe.init_from:  # a continuation keeps its tokenizer
            vq_path = Path(lm_recipe.init_from) / "vq" / "vq.safetensors"
        if not vq_path.is_file():
            raise FileNotFoundError(f"{vq_path}: train the tokenizer first (stage 'vq')")
        vq = load_vq(lm_recipe.vq, vq_path)
        for window in windows:
            recipe = replace(lm_recipe, window=window)
            start = time.perf_counter()
            model = train_lm(recipe, vq, log, device)
            seconds = time.perf_counter() - start
            directory = save_checkpoint(model, out / f"shapes-s{window}", dtype=torch.float16)
            vq_log = vq_path.parent / "recipe.json"
            facts = {"train_seconds": round(seconds, 1), "hardware": _hardware(device),
                     "vq": json.loads(vq_log.read_text()) if vq_log.is_file() else None}
            if recipe.init_from:  # the chain of runs that made these weights
                facts["continued"] = json.loads((Path(recipe.init_from) / directory.name / "recipe.json").read_text())
            write_recipe_log(directory, recipe, facts)
            written.append(directory)
    return written
