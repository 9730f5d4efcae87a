"""The statistics behind the sweep summary (rlreason/sweep_summary.py): mean ± sample std over seeds, the
configuration-name grid, and the shuffle "chance checks" of the seed-spread line (with_spread, below_best,
chance_of_below) and of the "By axis" table (axis_chance).

A shuffle test deals the observed per-seed values out at random to the configurations (or to the values of
one part of their names), within blocks of comparable runs (e.g. those of one seed), and counts how often
chance alone gives a result as extreme as the observed one.
"""
from __future__ import annotations

import math
import random
from typing import Dict, List, Optional, Sequence


def mean_std(values: Sequence[Optional[float]]) -> tuple:
    """(mean, sample std) of the non-None values; (None, None) if none, std None for one value."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def grid_axes(names: Sequence[str]) -> Optional[List[List[str]]]:
    """Each part's values, in order of first appearance, when every name is the same number (two or more) of
    parts joined by `__` and each part takes two or more values; None otherwise.

    Example: ["a__x", "a__y", "b__x"] -> [["a", "b"], ["x", "y"]]; ["a__x", "b"] -> None; ["a__x", "b__x"] -> None.
    """
    parts = [n.split("__") for n in names]
    if not parts or len({len(p) for p in parts}) != 1 or len(parts[0]) < 2:
        return None
    axes = [list(dict.fromkeys(p[i] for p in parts)) for i in range(len(parts[0]))]
    return axes if all(len(a) >= 2 for a in axes) else None


def axis_chance(by_seed: Dict[str, Dict[str, float]], part: int, shuffles: int = 2000,
                seed: int = 0) -> Dict[str, float]:
    """{value of part `part` (0-based) of the configuration names: fraction of shuffles in which that value's
    pooled mean is at least as far from the mean of all runs as observed}, a two-sided shuffle test.

    `by_seed` is {configuration: {seed name: value}} with names as in grid_axes. Each shuffle permutes, within
    every block of runs that share the seed and the other parts of the name (e.g. seed0 of `*__ppo_clip`),
    which value of this part each run belongs to; so a good seed or a good value of another part helps every
    value alike. Example: a__x = {s0: 1}, b__x = {s0: 0}, a__y = {s0: 1}, b__y = {s0: 0} -> {a: 0.5, b: 0.5}:
    part 1 has blocks (x, s0) and (y, s0), each keeps or swaps a's and b's values, and a's mean is as far from
    0.5 as its observed 1 when both keep (mean 1) or both swap (mean 0), in 2 of the 4 equally likely deals.
    """
    blocks: Dict[tuple, List[tuple]] = {}
    for name, vals in by_seed.items():
        parts = name.split("__")
        rest = tuple(parts[:part] + parts[part + 1:])
        for s, v in vals.items():
            blocks.setdefault((rest, s), []).append((parts[part], v))
    runs = [v for b in blocks.values() for _, v in b]
    if not runs:
        return {}
    grand = sum(runs) / len(runs)

    def distances(dealt: Dict[str, List[float]]) -> Dict[str, float]:
        return {label: abs(sum(x) / len(x) - grand) for label, x in dealt.items()}

    observed = distances(_deal(list(blocks.values())))
    rng, hits = random.Random(seed), dict.fromkeys(observed, 0)
    for _ in range(shuffles):
        for label, d in distances(_deal(list(blocks.values()), rng)).items():
            hits[label] += d >= observed[label] - 1e-12
    return {label: hits[label] / shuffles for label in observed}


def _deal(blocks: List[List[tuple]], rng: Optional[random.Random] = None) -> Dict[str, List[float]]:
    """{label: its values} from blocks of (label, value) pairs; with `rng`, each block's values are first
    shuffled among that block's labels (the labels stay where they are). Example: [[(a, 1), (b, 2)], [(a, 3)]]
    -> {a: [1, 3], b: [2]} unshuffled, or {a: [2, 3], b: [1]} when the first block swaps."""
    dealt: Dict[str, List[float]] = {}
    for block in blocks:
        vals = [v for _, v in block]
        if rng is not None:
            rng.shuffle(vals)
        for (label, _), v in zip(block, vals):
            dealt.setdefault(label, []).append(v)
    return dealt


def with_spread(values: Dict[str, List[float]]) -> Dict[str, List[float]]:
    """{configuration: its per-seed values} for the configurations with the most seeds, when that is two or
    more ({} otherwise). Example: seeds a = 3, b = 3, c = 2 -> a and b."""
    most = max((len(v) for v in values.values()), default=0)
    return {name: v for name, v in values.items() if most >= 2 and len(v) == most}


def below_best(vals: Dict[str, List[float]]) -> tuple:
    """(best configuration by mean, [configurations whose every seed is below every seed of the best]) from
    {configuration: its per-seed values}; (None, []) when empty. The seed-spread line applies it to the
    configurations with the most seeds (with_spread).

    Example: a = [0.6, 0.7], b = [0.4, 0.5], c = [0.5, 0.65] -> ("a", ["b"]) (c overlaps a's range).
    """
    if not vals:
        return None, []
    best = max(vals, key=lambda n: sum(vals[n]) / len(vals[n]))
    return best, [n for n, v in vals.items() if n != best and max(v) < min(vals[best])]


def chance_of_below(by_seed: Dict[str, Dict[str, float]], shuffles: int = 2000, seed: int = 0) -> tuple:
    """How often chance alone puts as many configurations below the best as observed: (observed count,
    mean count over the shuffles, fraction of shuffles with at least the observed count).

    `by_seed` is {configuration: {seed name: value}}, each configuration with the same number of seeds. When
    they all ran the same seeds, a shuffle deals each seed's values out to the configurations at random, one
    each (a seed that is good for every configuration stays good for all); otherwise all values are dealt out
    together. Each shuffle then applies the rule of below_best. The best is picked after the fact, so even with no
    real difference several configurations often land below it (for the shipped baseline × clipping sweep,
    20 configurations of 3 seeds, about 5 on average, where 1/20 per pair would suggest 19/20).
    Example: a = {s0: 0.9, s1: 0.9, s2: 0.9} and b..e = four configurations of lower values: observed 4 (all
    below a), and 4 happens by chance only when one configuration is dealt all three 0.9s, a fraction
    5 * (1/5)**3 = 0.04 of shuffles. In general every other configuration lands below the best only when one
    configuration gets the top value of every seed, 1/m^(k-1) of the time with m configurations and k seeds:
    a floor no result can go under.
    """
    seeds = sorted(next(iter(by_seed.values())))
    if all(sorted(v) == seeds for v in by_seed.values()):
        blocks = [[(n, v[s]) for n, v in by_seed.items()] for s in seeds]
    else:
        blocks = [[(n, x) for n, v in by_seed.items() for x in v.values()]]
    observed = len(below_best(_deal(blocks))[1])
    rng = random.Random(seed)
    counts = [len(below_best(_deal(blocks, rng))[1]) for _ in range(shuffles)]
    return observed, sum(counts) / shuffles, sum(c >= observed for c in counts) / shuffles
