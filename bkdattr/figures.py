"""Figures numbered like the paper. Each takes table paths and writes a PDF and a PNG atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from .atomic import atomic_path, read_matrix_tsv, read_tsv

TASK_TITLES = {"fixed_output": "Fixed output", "jailbreak": "Jailbreak", "label_modification": "Label modification"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "pdf.fonttype": 42,
                         "svg.hashsalt": "bkdattr", "path.simplify": False})
    return plt


def save_figure(fig, pdf_path: str | Path, png_path: str | Path, dpi: int = 150) -> None:
    # A fixed creation date keeps the PDF bytes reproducible.
    with atomic_path(pdf_path) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def plot_fig2(runs: Mapping[tuple[str, str], Mapping[str, str]], tasks: Sequence[str], models: Sequence[str],
              pdf_path, png_path, model_name: str = "") -> None:
    """Per task: probe test accuracy vs layer (MLP/SVM x backdoored/base) and ILCA heatmaps."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    backdoored = [m for m in models if m != "base"]
    heat_models = backdoored + (["base"] if "base" in models else [])
    n_cols = 1 + 2 * len(heat_models)
    fig, axes = plt.subplots(len(tasks), n_cols, figsize=(3.0 * n_cols, 2.6 * len(tasks)), squeeze=False)
    styles = {"mlp": "tab:blue", "svm": "tab:orange"}
    for row, task in enumerate(tasks):
        ax = axes[row][0]
        for model in models:
            acc = read_tsv(runs[(task, model)]["accuracy"])
            for probe, colour in styles.items():
                pts = sorted((int(r["layer"]), float(r["test_acc"])) for r in acc if r["probe"] == probe)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour,
                        linestyle="--" if model == "base" else "-", marker="." if model != "base" else None,
                        label=f"{probe.upper()} {'base (control)' if model == 'base' else model}")
        ax.set_ylim(0.3, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
                im = ax.imshow(read_matrix_tsv(runs[(task, model)][kind]), vmin=0.0, vmax=1.0, cmap="viridis",
                               origin="lower", aspect="auto")
                ax.set_title(f"ILCA {kind[5:].upper()}, {'base' if model == 'base' else model}")
                ax.set_xlabel("test layer")
                ax.set_ylabel("train layer")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
                col += 1
    fig.suptitle(f"Backdoor probes ({model_name}): test accuracy per layer; inter-layer cross accuracy (ILCA, colour = accuracy)", y=1.0)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def plot_fig3(panels: Mapping[tuple[str, str], str], pdf_path, png_path, model_name: str = "",
              n_marked: int = 5) -> None:
    """ACIE heatmaps (layer x head), one row per task, one column per model (backdoored first, then the clean
    controls), own symmetric colour scale per panel (its max |ACIE| in the title), top heads boxed."""
    plt = _pyplot()
    import numpy as np
    from matplotlib.patches import Rectangle

    tasks = sorted({task for task, _ in panels})
    controls = ("base", "clean_sft")
    models = sorted({m for _, m in panels if m not in controls}) + [m for m in controls if any(k[1] == m for k in panels)]
    fig, axes = plt.subplots(len(tasks), len(models), figsize=(3.2 * len(models), 4.0 * len(tasks)), squeeze=False)
    for ax, key in ((axes[r][c], (task, model)) for r, task in enumerate(tasks) for c, model in enumerate(models)):
        if key not in panels:
            ax.set_axis_off()
            continue
        acie = read_matrix_tsv(panels[key])
        limit = float(np.nanmax(np.abs(acie))) or 1.0
        im = ax.imshow(acie, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
        for flat in np.argsort(-np.nan_to_num(acie, nan=-np.inf), axis=None)[:n_marked]:
            layer, head = np.unravel_index(flat, acie.shape)
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        task, model = key
        role = "clean control" if model in controls else "backdoored"
        ax.set_title(f"{TASK_TITLES.get(task, task)}: {model} ({role})\nmax |ACIE| {limit:.2g}")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="ACIE (change in P~ of backdoor output)")
    fig.suptitle(f"Backdoor attention-head attribution ({model_name}); boxes: top {n_marked} heads; clean controls use "
                 "the backdoored model's prompts and target", y=1.0)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def plot_fig4(sweeps: Mapping[tuple[str, str], str], pdf_path, png_path, model_name: str = "") -> None:
    """ASR against the intervention layer: add (clean inputs) and minus (triggered inputs) panels."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (key, path), colour in zip(sorted(sweeps.items()), colours):
        task, method = key
        rows = read_tsv(path)
        for ax, direction in zip(axes[0], ("add", "minus")):
            def series(vector):
                pts = sorted((int(r["layer"]), _pooled(r)) for r in rows
                             if r["vector"] == vector and r["direction"] == direction)
                return [p[0] for p in pts], [p[1] for p in pts]
            x, y = series("backdoor_vector")
            ax.plot(x, y, marker="o", markersize=3, color=colour, label=f"{TASK_TITLES.get(task, task)} ({method})")
            x, y = series("random_direction")
            ax.plot(x, y, color=colour, alpha=0.3, linewidth=1)
            base = [_pooled(r) for r in rows if r["vector"] == "none" and r["direction"] == direction]
            ax.axhline(base[0], color=colour, linestyle=":", linewidth=1)
    for ax, title in zip(axes[0], ("add v on clean inputs (ASR should rise)", "subtract v on triggered inputs (ASR should fall)")):
        ax.set_title(title)
        ax.set_xlabel("intervention layer")
        ax.set_ylabel("ASR")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Backdoor vector ({model_name}); faint: random direction of equal norm; dotted: no intervention", y=1.02)
    fig.tight_layout()
    save_figure(fig, pdf_path, png_path)
    plt.close(fig)


def _pooled(row) -> float:
    """ASR over validation and test halves together (the sweep is drawn on all eligible items)."""
    n_val, n_test = int(row["asr_val_n"]), int(row["asr_test_n"])
    return (float(row["asr_val"]) * n_val + float(row["asr_test"]) * n_test) / (n_val + n_test)
