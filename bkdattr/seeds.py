"""Injection seeds: does a finding belong to the model or to one training run? (METHOD.md s8)

The seeds vary only the training randomness (LoRA initialisation, batch order, dropout); data and splits stay
fixed, so seed-to-seed differences are the model's. Per task and method, across seeds:
  - held-out ASR, false-trigger rate and utility: mean and range;
  - the ACIE maps: top-1% / 3% / 10% head overlap between every pair of seeds, beside chance (k / n_heads, the
    expected overlap of two random head sets of size k), and their Spearman correlation;
  - Table 1's curve (ASR after ablating the top-k heads at the last prompt token) as a band (min to max).

Torch-free (numpy, scipy, matplotlib): it runs in the plotting env.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Mapping, Sequence

import numpy as np

from .stats import spearman

# Held-out metrics summarised across seeds (those a task does not define are left out).
SEED_METRICS = ("asr", "asr_strict", "false_trigger_rate", "clean_utility", "clean_rouge_l", "over_refusal_rate",
                "collateral_flip_rate")

Run = tuple[str, str, int]  # (task, method, seed)


def top_k_heads(acie: np.ndarray, fraction: float) -> set[int]:
    """Flat indices of the top `fraction` of heads by ACIE (at least one head; ties broken by index, as
    attribution.rank_heads does)."""
    k = max(1, round(fraction * acie.size))
    order = np.lexsort((np.arange(acie.size), -acie.flatten()))
    return set(order[:k].tolist())


def pair_rows(maps: Mapping[Run, np.ndarray], top_fractions: Sequence[float]) -> list[dict]:
    """One row per (task, method) and pair of seeds: top-k overlap (share of k) beside chance, Spearman."""
    rows = []
    groups = sorted({(task, method) for task, method, _ in maps})
    for task, method in groups:
        seeds = sorted(s for t, m, s in maps if (t, m) == (task, method))
        for a, b in itertools.combinations(seeds, 2):
            first, second = maps[(task, method, a)], maps[(task, method, b)]
            if first.shape != second.shape:
                raise ValueError(f"{task}/{method}: the ACIE maps of seeds {a} and {b} differ in shape "
                                 f"({first.shape} vs {second.shape})")
            row = {"task": task, "method": method, "seed_a": a, "seed_b": b}
            for fraction in top_fractions:
                k = max(1, round(fraction * first.size))
                row[f"top{fraction:g}_overlap"] = len(top_k_heads(first, fraction) & top_k_heads(second, fraction)) / k
                row[f"top{fraction:g}_overlap_by_chance"] = k / first.size
            row["spearman"] = spearman(first, second)
            rows.append(row)
    return rows


def _head_name(acie: np.ndarray) -> str:
    """The top head of an [L, H] map as LxHy."""
    (top,) = top_k_heads(acie, 1 / acie.size)
    layer, head = divmod(int(top), acie.shape[1])
    return f"L{layer}H{head}"


def _spread(values: Sequence[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summary_rows(metrics: Mapping[Run, Sequence[dict]], maps: Mapping[Run, np.ndarray],
                 top_fractions: Sequence[float]) -> list[dict]:
    """results/tables/seeds.tsv: per (task, method), across its seeds, the held-out metrics (mean, min, max),
    each seed's top head, and the pairwise top-k overlaps (mean, min) and Spearman correlations (mean, min)."""
    pairs = pair_rows(maps, top_fractions)
    rows = []
    for task, method in sorted({(t, m) for t, m, _ in metrics}):
        seeds = sorted(s for t, m, s in metrics if (t, m) == (task, method))
        row = {"task": task, "method": method, "n_seeds": len(seeds), "seeds": " ".join(map(str, seeds))}
        for metric in SEED_METRICS:
            values = []
            for seed in seeds:
                found = [r for r in metrics[(task, method, seed)] if r["metric"] == metric and str(r["n"]) not in ("", "0")]
                if found:
                    values.append(float(found[0]["value"]))
            if len(values) == len(seeds):
                row.update({f"{metric}_{k}": v for k, v in _spread(values).items()})
        if all((task, method, s) in maps for s in seeds):
            row["top_head_per_seed"] = " ".join(_head_name(maps[(task, method, s)]) for s in seeds)
        mine = [p for p in pairs if (p["task"], p["method"]) == (task, method)]
        if mine:
            for fraction in top_fractions:
                overlaps = [p[f"top{fraction:g}_overlap"] for p in mine]
                row[f"top{fraction:g}_overlap_mean"] = statistics.fmean(overlaps)
                row[f"top{fraction:g}_overlap_min"] = min(overlaps)
                row[f"top{fraction:g}_overlap_by_chance"] = mine[0][f"top{fraction:g}_overlap_by_chance"]
            row["spearman_mean"] = statistics.fmean(p["spearman"] for p in mine)
            row["spearman_min"] = min(p["spearman"] for p in mine)
        rows.append(row)
    return rows


def curve_rows(ablations: Mapping[Run, Sequence[dict]]) -> list[dict]:
    """Table 1's curve per seed (top-k heads ablated at the last prompt token): one row per run and k."""
    rows = []
    for (task, method, seed), data in sorted(ablations.items()):
        for r in data:
            if r["heads"] == "top" and r["variant"] == "last_prompt_token":
                rows.append({"task": task, "method": method, "seed": seed, "k": int(r["k"]),
                             "k_fraction": float(r["k_fraction"]), "asr": float(r["asr"])})
    return rows


def band_rows(curves: Sequence[dict]) -> list[dict]:
    """Table 1's curve as a band: per (task, method, k), the ASR's mean, min and max across seeds."""
    grouped: dict[tuple, list[dict]] = {}
    for r in curves:
        grouped.setdefault((r["task"], r["method"], r["k"]), []).append(r)
    return [{"task": t, "method": m, "k": k, "k_fraction": rs[0]["k_fraction"], "n_seeds": len(rs),
             **{f"asr_{name}": v for name, v in _spread([r["asr"] for r in rs]).items()}}
            for (t, m, k), rs in sorted(grouped.items())]


def _cell(row: Mapping, metric: str) -> str:
    if f"{metric}_mean" not in row:
        return "-"
    return f"{row[f'{metric}_mean']:.3f} [{row[f'{metric}_min']:.3f}, {row[f'{metric}_max']:.3f}]"


def seeds_markdown(summary: Sequence[dict], bands: Sequence[dict], model_name: str,
                   top_fractions: Sequence[float]) -> str:
    """The seed table as markdown: metrics as mean [min, max], the top heads, overlaps beside chance, and the
    ablation band at each k."""
    lines = [f"# Injection seeds ({model_name}; held-out test split)", "",
             "Metrics: mean [min, max] over seeds. Overlap: share of the top-k heads two seeds' ACIE maps share, "
             "mean (min) over pairs, beside chance (k / heads, the expected overlap of two random head sets).", "",
             "| task | method | seeds | ASR | FTR | utility | over-refusal | top head per seed | "
             + " | ".join(f"top {100 * f:g}% overlap (chance)" for f in top_fractions) + " | Spearman mean (min) |",
             "|---" * (9 + len(top_fractions)) + "|"]
    for r in summary:
        overlaps = [f"{r[f'top{f:g}_overlap_mean']:.2f} ({r[f'top{f:g}_overlap_min']:.2f}; "
                    f"{r[f'top{f:g}_overlap_by_chance']:.3f})" if f"top{f:g}_overlap_mean" in r else "-"
                    for f in top_fractions]
        spearman = f"{r['spearman_mean']:.2f} ({r['spearman_min']:.2f})" if "spearman_mean" in r else "-"
        lines.append(f"| {r['task']} | {r['method']} | {r['seeds']} | {_cell(r, 'asr')} | {_cell(r, 'false_trigger_rate')} | "
                     f"{_cell(r, 'clean_utility')} | {_cell(r, 'over_refusal_rate')} | {r.get('top_head_per_seed', '-')} | "
                     + " | ".join(overlaps) + f" | {spearman} |")
    lines += ["", "Head ablation (top-k heads at the last prompt token), ASR across seeds: mean [min, max]", "",
              "| task | method | k | heads (%) | ASR |", "|---|---|---|---|---|"]
    for b in bands:
        lines.append(f"| {b['task']} | {b['method']} | {b['k']} | {100 * b['k_fraction']:.1f} | "
                     f"{b['asr_mean']:.3f} [{b['asr_min']:.3f}, {b['asr_max']:.3f}] |")
    return "\n".join(lines) + "\n"


def plot_seed_bands(curves: Sequence[dict], bands: Sequence[dict], pdf_path, png_path, model_name: str = "") -> None:
    """Table 1's curve across seeds, one panel per task: each seed's curve faint, the mean line and the min-max
    band."""
    # matplotlib only for the figure: compare_runs (a CLI) imports this module for its tables
    from .figures import _pyplot, asr_panel, finish_figure

    plt = _pyplot()
    tasks = sorted({b["task"] for b in bands})
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.6 * max(1, len(tasks)), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for colour, method in zip(("tab:blue", "tab:green", "tab:red", "tab:purple"),
                                  sorted({b["method"] for b in bands if b["task"] == task})):
            mine = sorted((b for b in bands if (b["task"], b["method"]) == (task, method)), key=lambda b: b["k_fraction"])
            x = [100 * b["k_fraction"] for b in mine]
            ax.fill_between(x, [100 * b["asr_min"] for b in mine], [100 * b["asr_max"] for b in mine], alpha=0.2,
                            color=colour)
            ax.plot(x, [100 * b["asr_mean"] for b in mine], marker="o", color=colour,
                    label=f"{method}: mean of {mine[0]['n_seeds']} seeds (band: min-max)")
            for seed in sorted({c["seed"] for c in curves if (c["task"], c["method"]) == (task, method)}):
                line = sorted((c for c in curves if (c["task"], c["method"], c["seed"]) == (task, method, seed)),
                              key=lambda c: c["k_fraction"])
                ax.plot([100 * c["k_fraction"] for c in line], [100 * c["asr"] for c in line], linewidth=0.6,
                        alpha=0.5, color=colour)
        asr_panel(ax, task, "top-ACIE heads ablated, % of all heads")
    finish_figure(plt, fig, f"Head ablation across injection seeds ({model_name})", pdf_path, png_path)
