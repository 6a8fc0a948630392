"""Figures numbered like the paper. Each takes table paths and writes a PDF and a PNG atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from .atomic import atomic_path, read_matrix_tsv, read_tsv
from .names import (BACKDOOR_VECTOR, BASE_MODEL, CLEAN_CONTROL, NO_INTERVENTION, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR,
                    overlap_column)
from .paper import HEAD_FRACTION, PAPER_MODEL_HEADS, TABLE1_ASR, TABLE1_K

TASK_TITLES = {"fixed_output": "Fixed output", "jailbreak": "Jailbreak", "label_modification": "Label modification"}


def _pyplot():
    # pyplot (and seaborn, which loads it: _seaborn) only here, after the Agg backend is chosen
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "pdf.fonttype": 42,
                         "svg.hashsalt": "bkdattr", "path.simplify": False})
    return plt


def _seaborn():
    """seaborn, loaded once pyplot is set up (`_pyplot`)."""
    _pyplot()
    import seaborn as sns  # loads pyplot: only after _pyplot chose the Agg backend

    return sns


def save_figure(fig, pdf_path: str | Path, png_path: str | Path, dpi: int = 150) -> None:
    # A fixed creation date keeps the PDF bytes reproducible.
    with atomic_path(pdf_path) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})


ILCA_COLOUR_RANGE = (0.0, 1.0)  # the whole accuracy range: below-chance (inverted) transfer must show


def _heatmap(ax, matrix, **kwargs):
    """seaborn heatmap with layer 0 at the bottom and sparse integer ticks."""
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = matrix.shape
    _seaborn().heatmap(matrix, ax=ax, xticklabels=max(1, cols // 6), yticklabels=max(1, rows // 6), **kwargs)
    ax.invert_yaxis()
    return ax


def plot_fig2(runs: Mapping[tuple[str, str], Mapping[str, str]], tasks: Sequence[str], models: Sequence[str],
              pdf_path, png_path, model_name: str = "") -> None:
    """Per task: probe test accuracy vs layer (MLP/SVM x backdoored/base, with 95% intervals) and ILCA heatmaps."""
    plt = _pyplot()
    sns = _seaborn()

    backdoored = [m for m in models if m != BASE_MODEL]
    heat_models = backdoored + ([BASE_MODEL] if BASE_MODEL in models else [])
    n_cols = 1 + 2 * len(heat_models)
    fig, axes = plt.subplots(len(tasks), n_cols, figsize=(3.0 * n_cols, 2.6 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        ax = axes[row][0]
        frame = pd.DataFrame([{"layer": int(r["layer"]), "accuracy": float(r["test_acc"]),
                               "low": float(r.get("test_acc_ci_low") or r["test_acc"]),
                               "high": float(r.get("test_acc_ci_high") or r["test_acc"]), "probe": r["probe"].upper(),
                               "model": f"{BASE_MODEL} (control)" if model == BASE_MODEL else model}
                              for model in models for r in read_tsv(runs[(task, model)]["accuracy"])])
        palette = dict(zip(sorted(frame["probe"].unique()), sns.color_palette(n_colors=frame["probe"].nunique())))
        sns.lineplot(data=frame, x="layer", y="accuracy", hue="probe", style="model", markers=True, dashes=True,
                     palette=palette, ax=ax, legend=row == 0, markersize=4)
        for (probe, _model), part in frame.groupby(["probe", "model"]):  # each band in its line's colour
            ax.fill_between(part["layer"], part["low"], part["high"], alpha=0.12, color=palette[probe])
        ax.set_ylim(0.3, 1.02)
        ax.axhline(0.5, color="grey", linewidth=0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("probe test accuracy")
        ax.set_title(f"{TASK_TITLES.get(task, task)}: clean vs triggered")
        if row == 0:
            ax.legend(fontsize=6, loc="lower right")
        col = 1
        for model in heat_models:
            for kind in ("ilca_mlp", "ilca_svm"):
                ax = axes[row][col]
                _heatmap(ax, read_matrix_tsv(runs[(task, model)][kind]), vmin=ILCA_COLOUR_RANGE[0],
                         vmax=ILCA_COLOUR_RANGE[1], cmap="viridis", cbar_kws={"fraction": 0.046, "pad": 0.04})
                ax.set_title(f"ILCA {kind[5:].upper()}, {model}")
                ax.set_xlabel("test layer")
                ax.set_ylabel("train layer")
                col += 1
    fig.suptitle(f"Backdoor probes ({model_name}): test accuracy per layer (band: 95% interval); inter-layer cross "
                 "accuracy (ILCA, colour = accuracy, 0..1)", y=1.0)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def top_heads_shared(row: Mapping[str, str], fraction: float = HEAD_FRACTION) -> str:
    """'top 3%: 1 of 8 shared with lora_sft' and '(chance 0.24)' on two lines (a panel's width), from an
    attribution.tsv row that compares its map with another's (another method's with the first method's, a clean
    control's with the backdoored model's); '' for a row that compares nothing."""
    overlap = row.get(overlap_column(fraction, "with_first_method")) or row.get(overlap_column(fraction, "with_backdoored"))
    if not overlap or not row.get("compared_with"):
        return ""
    chance_share = float(row[overlap_column(fraction, "by_chance")])  # k / n_heads (attribution.py)
    k = round(chance_share * int(row["n_heads"]))
    chance = chance_share * k
    return f"top {fraction:.0%}: {round(float(overlap) * k)} of {k} shared with {row['compared_with']}\n(chance {chance:.2f})"


def plot_fig3(panels: Mapping[tuple[str, str], str], pdf_path, png_path, model_name: str = "",
              n_marked: int = 5, implanted: Mapping[tuple[str, str], bool] | None = None,
              shared: Mapping[tuple[str, str], str] | None = None) -> None:
    """ACIE heatmaps (layer x head), one row per task, one column per model (the injection methods in the order
    of `panels`, then the clean controls), own symmetric colour scale per panel (its max |ACIE| in the title),
    top heads boxed. `implanted`: the backdoor gate's verdict per (task, method); a model that missed it is
    titled so, since its map is then not a backdoor's. `shared`: per (task, model), the top-head overlap line
    (`top_heads_shared`) added to its title."""
    plt = _pyplot()

    tasks = sorted({task for task, _ in panels})
    controls = (BASE_MODEL, CLEAN_CONTROL)
    methods = list(dict.fromkeys(m for _, m in panels if m not in controls))  # the config's order: the first is
    models = methods + [m for m in controls if any(k[1] == m for k in panels)]  # the one the overlaps compare with
    fig, axes = plt.subplots(len(tasks), len(models), figsize=(3.2 * len(models), 4.0 * len(tasks)), squeeze=False)
    for ax, key in ((axes[r][c], (task, model)) for r, task in enumerate(tasks) for c, model in enumerate(models)):
        if key not in panels:
            ax.set_axis_off()
            continue
        acie = np.asarray(read_matrix_tsv(panels[key]), dtype=float)
        limit = float(np.nanmax(np.abs(acie))) or 1.0
        _heatmap(ax, acie, cmap="RdBu_r", vmin=-limit, vmax=limit, center=0.0,
                 cbar_kws={"label": "ACIE (change in P~ of backdoor output)", "fraction": 0.046, "pad": 0.04})
        for flat in np.argsort(-np.nan_to_num(acie, nan=-np.inf), axis=None)[:n_marked]:
            layer, head = np.unravel_index(flat, acie.shape)
            ax.add_patch(Rectangle((head, layer), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        task, model = key
        role = ("clean control" if model in controls
                else "backdoored" if (implanted or {}).get(key, True) else "gate not passed")
        overlap = (shared or {}).get(key, "")
        ax.set_title(f"{TASK_TITLES.get(task, task)}: {model} ({role})\nmax |ACIE| {limit:.2g}"
                     + (f"\n{overlap}" if overlap else ""))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    fig.suptitle(f"Backdoor attention-head attribution ({model_name}); boxes: top {n_marked} heads; clean controls use "
                 "the backdoored model's prompts and target", y=1.0)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def plot_fig4(sweeps: Mapping[tuple[str, str], str], pdf_path, png_path, model_name: str = "") -> None:
    """ASR against the intervention layer: add (clean inputs) and minus (triggered inputs) panels."""
    plt = _pyplot()
    sns = _seaborn()

    frame = pd.DataFrame([{"run": f"{TASK_TITLES.get(task, task)} ({method})", "vector": r["vector"],
                           "direction": r["direction"], "layer": int(r["layer"]), "ASR": _pooled(r)}
                          for (task, method), path in sorted(sweeps.items()) for r in read_tsv(path)])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), squeeze=False)
    palette = dict(zip(sorted(frame["run"].unique()), sns.color_palette(n_colors=frame["run"].nunique())))
    titles = {"add": "add v on clean inputs (ASR should rise)", "minus": "subtract v on triggered inputs (ASR should fall)"}
    for ax, direction in zip(axes[0], ("add", "minus")):
        part = frame[frame["direction"] == direction]
        sns.lineplot(data=part[part["vector"] == BACKDOOR_VECTOR], x="layer", y="ASR", hue="run", palette=palette,
                     marker="o", markersize=4, ax=ax, legend=direction == "add")
        for control, style in ((RANDOM_DIRECTION, "-"), (RANDOM_HEADS_VECTOR, "--")):  # mean over draws
            sns.lineplot(data=part[part["vector"] == control], x="layer", y="ASR", hue="run", palette=palette,
                         alpha=0.3, linewidth=1, linestyle=style, errorbar=None, ax=ax, legend=False)
        for run, base in part[part["vector"] == NO_INTERVENTION].groupby("run")["ASR"].first().items():
            ax.axhline(base, color=palette[run], linestyle=":", linewidth=1)
        ax.set_title(titles[direction])
        ax.set_xlabel("intervention layer")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Backdoor vector ({model_name}); faint: mean over draws of a random direction of equal norm (solid) "
                 "and of a random-heads vector (dashed), validation half; dotted: no intervention", y=1.02, fontsize=8)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def plot_table1(table1_rows: Sequence[Mapping], pdf_path, png_path, model_name: str = "") -> None:
    """Table 1 as curves: ASR against the fraction of heads ablated, top-ACIE heads vs random heads (range over
    seeds), one panel per task; the paper's published points at their own fractions."""
    plt = _pyplot()
    sns = _seaborn()

    frame = pd.DataFrame(table1_rows)
    tasks = sorted(frame["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = frame[frame["task"] == task].sort_values("k_fraction")
        x = 100 * part["k_fraction"].astype(float)
        sns.lineplot(x=x, y=part["asr_top_pct"].astype(float), marker="o", ax=ax, label="top-ACIE heads")
        rand = part[part["asr_random_min_pct"].astype(str) != ""]
        if len(rand):
            rx = 100 * rand["k_fraction"].astype(float)
            sns.lineplot(x=rx, y=rand["asr_random_mean_pct"].astype(float), marker="s", ax=ax, label="random heads (mean)")
            ax.fill_between(rx, rand["asr_random_min_pct"].astype(float), rand["asr_random_max_pct"].astype(float),
                            alpha=0.15, color="tab:orange")
        for paper_model, heads in PAPER_MODEL_HEADS.items():
            values = TABLE1_ASR.get((paper_model, task))
            if values:
                pts = [(100 * k / heads, v) for k, v in zip(TABLE1_K, values) if v is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", marker="x", linewidth=0.8,
                        label=f"paper, {paper_model}")
        asr_panel(ax, task, "heads ablated, % of all heads (k / (L*H))")
    finish_figure(plt, fig, f"Table 1 as curves ({model_name}): ASR after zero-ablating heads at the last prompt token",
                  pdf_path, png_path)


def asr_panel(ax, task: str, xlabel: str) -> None:
    """An ASR-against-heads panel: the task's title, the axes' labels, 0-100% and the legend."""
    ax.set_title(TASK_TITLES.get(task, task))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ASR (%)")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=6)


def finish_figure(plt, fig, title: str, pdf_path, png_path) -> None:
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def _pooled(row) -> float:
    """ASR over validation and test halves together (the backdoor vector's sweep runs on all eligible items; a
    control's on the validation half only)."""
    if row.get("asr_test_n", "") in ("", None):
        return float(row["asr_val"])
    n_val, n_test = int(row["asr_val_n"]), int(row["asr_test_n"])
    return (float(row["asr_val"]) * n_val + float(row["asr_test"]) * n_test) / (n_val + n_test)
