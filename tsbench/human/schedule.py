"""Which pair a rater sees next: balanced coverage of every system pair on every prompt.

The pairs form a grid: image keys (prompt and seed) × system pairs. One round visits every cell once in
a diagonal order, step k taking key k mod R and system pair (k + k // lcm(R, S)) mod S, which visits
each cell exactly once and keeps both the keys and the system pairs within one visit of each other
after every step. Keys are interleaved so that consecutive keys are different prompts, and prompts and
system pairs are shuffled once with a fixed seed (the same order after a restart).

A rater gets the pair with the fewest presentations so far (pending or voted, all raters), earliest in
that order, among the pairs they have not seen: the first rater walks through every pair before any
pair gets a second rating, and raters working at once get different pairs. Which system is on the
left is drawn per presentation.
"""
from __future__ import annotations

import math
import random
from typing import Callable

from tsbench.human.store import Pair


def round_order(pairs: list[Pair], seed: int = 0) -> dict[int, int]:
    """Pair id -> its step in the diagonal round over (prompt, seed) keys × system pairs."""
    rng = random.Random(seed)
    units = sorted({p.unit for p in pairs})
    rng.shuffle(units)
    systems = sorted({(p.system_a, p.system_b) for p in pairs})
    rng.shuffle(systems)
    seeds = {unit: sorted({p.seed for p in pairs if p.unit == unit}) for unit in units}
    depth = max(len(s) for s in seeds.values())
    keys = [(unit, seeds[unit][i]) for i in range(depth) for unit in units if i < len(seeds[unit])]
    n_keys, n_systems = len(keys), len(systems)
    block = math.lcm(n_keys, n_systems)
    step = {(keys[k % n_keys], systems[(k + k // block) % n_systems]): k for k in range(n_keys * n_systems)}
    return {p.id: step[((p.unit, p.seed), (p.system_a, p.system_b))] for p in pairs}


class Schedule:
    """The study's pairs in their balanced order."""

    def __init__(self, pairs: list[Pair], seed: int = 0) -> None:
        self.pairs = pairs
        self.order = round_order(pairs, seed) if pairs else {}

    def next_pair(self, seen: set[int], coverage: dict[int, int]) -> Pair | None:
        """The pair for a rater who has seen ``seen``; None when none is left."""
        candidates = [p for p in self.pairs if p.id not in seen]
        if not candidates:
            return None
        return min(candidates, key=lambda p: (coverage.get(p.id, 0), self.order[p.id]))

    def picker(self, rng: random.Random | None = None
               ) -> Callable[[set[int], dict[int, int]], tuple[Pair, int] | None]:
        """``VoteStore.assign``'s callback: the next pair and the system drawn for the left side."""
        rng = rng or random.SystemRandom()

        def pick(seen: set[int], coverage: dict[int, int]) -> tuple[Pair, int] | None:
            pair = self.next_pair(seen, coverage)
            return None if pair is None else (pair, rng.choice((pair.system_a, pair.system_b)))
        return pick
