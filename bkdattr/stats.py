"""Intervals (METHOD.md s8) and rank agreement, torch-free so the plotting env can import it.

The unit of evidence is the question, not the row: rewordings of one question are not independent. Rates
over rows that share questions get a cluster (question-level) bootstrap interval; where every row is its
own question the bootstrap and Wilson agree, and Wilson is used.
"""

from __future__ import annotations

import math
import statistics
from typing import Hashable, Sequence

import numpy as np

N_RESAMPLES = 2000
LEVEL = 0.95


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at 0 and 1, unlike Wald)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(hits: Sequence[bool]) -> dict:
    """A proportion with its Wilson 95% interval (rows taken as independent)."""
    n = len(hits)
    k = int(sum(hits))
    lo, hi = wilson_interval(k, n)
    return {"value": k / n if n else float("nan"), "successes": k, "n": n, "ci_low": lo, "ci_high": hi}


def mean_interval(values: Sequence[float], z: float = 1.96) -> dict:
    """Mean with a normal-approximation 95% interval (CLT over items), in the shape of `rate`
    (`successes` is empty: this is a mean, not a count)."""
    n = len(values)
    if n == 0:
        return {"value": float("nan"), "successes": "", "n": 0, "ci_low": float("nan"), "ci_high": float("nan")}
    mean = statistics.fmean(values)
    half = z * statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return {"value": mean, "successes": "", "n": n, "ci_low": mean - half, "ci_high": mean + half}


def _cluster_sums(values: Sequence[float], clusters: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (first-seen order): the sum of its values and its row count."""
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster labels")
    index: dict = {}
    codes = np.fromiter((index.setdefault(c, len(index)) for c in clusters), dtype=np.int64, count=len(clusters))
    sums = np.bincount(codes, weights=np.asarray(values, dtype=float), minlength=len(index))
    counts = np.bincount(codes, minlength=len(index)).astype(float)
    return sums, counts


def _bootstrap_ratio(sums: np.ndarray, counts: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    """Percentile interval of sum(values) / sum(rows) over clusters resampled with replacement."""
    n_clusters = len(sums)
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_resamples, n_clusters))
    estimates = sums[draws].sum(1) / counts[draws].sum(1)
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return float(lo), float(hi)


def cluster_bootstrap_rate(hits: Sequence[bool], clusters: Sequence[Hashable] | None,
                           n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """`rate` with a question-level bootstrap interval: resample questions (`clusters`, one label per row) with
    replacement, the rate over their rows, 95% percentile interval, seeded. Adds `n_clusters`.

    Every row its own question (or `clusters` None): the Wilson interval. Every row alike (all hits or none):
    the percentile bootstrap collapses to a point, so the Wilson interval over the questions is given instead
    (what a sample of that many independent items could decide)."""
    out = rate(hits)
    if clusters is None or len(set(clusters)) == len(hits):
        return {**out, "n_clusters": len(hits)}
    sums, counts = _cluster_sums([float(h) for h in hits], clusters)
    n_clusters = len(sums)
    if out["successes"] in (0, out["n"]):
        lo, hi = wilson_interval(n_clusters if out["successes"] else 0, n_clusters)
    else:
        lo, hi = _bootstrap_ratio(sums, counts, n_resamples, seed)
    return {**out, "ci_low": lo, "ci_high": hi, "n_clusters": n_clusters}


def cluster_bootstrap_mean(values: Sequence[float], clusters: Sequence[Hashable] | None,
                           n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """`mean_interval` with a question-level bootstrap interval (as `cluster_bootstrap_rate`); every row its
    own question: the normal interval over rows. Adds `n_clusters`."""
    out = mean_interval(values)
    if clusters is None or len(set(clusters)) == len(values):
        return {**out, "n_clusters": len(values)}
    sums, counts = _cluster_sums(values, clusters)
    if len(sums) < 2:
        return {**out, "ci_low": float("nan"), "ci_high": float("nan"), "n_clusters": len(sums)}
    lo, hi = _bootstrap_ratio(sums, counts, n_resamples, seed)
    return {**out, "ci_low": lo, "ci_high": hi, "n_clusters": len(sums)}


def spearman(a, b) -> float:
    """Spearman rank correlation of two equally sized arrays (flattened; average ranks for ties)."""
    from scipy.stats import spearmanr  # scipy.stats is slow to import: paid only by the rank comparisons

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)
