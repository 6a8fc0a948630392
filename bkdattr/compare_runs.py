"""Two result directories of the same task and model, side by side: does a data or training change move the heads?

Used for the jailbreak task with and without the benign mix (data.benign_mix): are the heads that carry the
backdoor the same in a model that refuses everything but the trigger and in a helpful one, and are they the
base model's refusal heads (the refusal-attribution control, attribution.refusal_control)? Per pair of runs:
  - the top-1% / 3% / 10% overlap of the two exact ACIE maps beside chance (k / n_heads) and their Spearman rank
    correlation;
  - each run's top heads against its own refusal control (the base model's ACIE with the refusal as target);
  - held-out metrics and Table 1's rows (top-k heads ablated at the last prompt token, random-head mean) of each.

    python -m bkdattr.compare_runs RUN_A RUN_B --labels "benign mix" "no benign mix" --task jailbreak --out DIR

RUN_A and RUN_B are working directories of `snakemake ... results/tables/attribution.tsv results/tables/table1.tsv`.
Torch-free (numpy, scipy).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import read_matrix_tsv, read_tsv, write_text, write_tsv_union
from .config import schema_default
from .names import REFUSAL_CONTROL
from .seeds import top_k_heads
from .stats import spearman
from .summary import markdown_table

HELD_OUT = ("asr", "compliance", "false_trigger_rate", "clean_utility", "over_refusal_rate")
ABLATION = ("asr", "compliance", "over_refusal_rate")


def _overlap(first: np.ndarray, second: np.ndarray, fraction: float) -> tuple[int, int]:
    """(shared heads, k) of the two maps' top `fraction`."""
    k = max(1, round(fraction * first.size))
    return len(top_k_heads(first, fraction) & top_k_heads(second, fraction)), k


def map_rows(maps: dict[str, np.ndarray], refusal: dict[str, np.ndarray | None], fractions: Sequence[float]) -> list[dict]:
    """Overlap rows: the two runs' maps with each other, then each run's map with its refusal control."""
    (label_a, a), (label_b, b) = maps.items()
    if a.shape != b.shape:
        raise ValueError(f"the ACIE maps of '{label_a}' {a.shape} and '{label_b}' {b.shape} differ in shape")
    pairs = [(label_a, a, label_b, b)]
    pairs += [(label, maps[label], f"{REFUSAL_CONTROL} ({label})", ctrl) for label, ctrl in refusal.items()
              if ctrl is not None]
    rows = []
    for name_a, first, name_b, second in pairs:
        row = {"map_a": name_a, "map_b": name_b}
        for fraction in fractions:
            shared, k = _overlap(first, second, fraction)
            row[f"top{fraction:g}_shared"] = f"{shared}/{k}"
            row[f"top{fraction:g}_expected_by_chance"] = round(k * k / first.size, 2)
        row["spearman"] = round(spearman(first, second), 3)
        rows.append(row)
    return rows


def _top_heads(acie: np.ndarray, n: int) -> str:
    order = np.lexsort((np.arange(acie.size), -acie.flatten()))[:n]
    return " ".join(f"L{i // acie.shape[1]}H{i % acie.shape[1]}" for i in order)


def held_out_rows(metrics: dict[str, list[dict]], maps: dict[str, np.ndarray]) -> list[dict]:
    """Each run's held-out metrics (metrics.tsv: one row per metric, with its interval) and its top heads."""
    rows = []
    for label, table in metrics.items():
        values = {r["metric"]: r for r in table}
        row = {"run": label}
        for metric in HELD_OUT:
            if metric in values:
                r = values[metric]
                row[metric] = f"{float(r['value']):.3f} [{float(r['ci_low']):.2f}, {float(r['ci_high']):.2f}]"
        rows.append({**row, "top_heads": _top_heads(maps[label], 4), "max_acie": round(float(maps[label].max()), 4)})
    return rows


def ablation_rows(ablations: dict[str, list[dict]]) -> list[dict]:
    """Table 1 side by side: per k, each run's top-k value and random-k mean (last prompt token) per measure."""
    ks = sorted({int(r["k"]) for table in ablations.values() for r in table}, key=int)
    rows = []
    for k in ks:
        row = {"k": k}
        for label, table in ablations.items():
            at_k = [r for r in table if int(r["k"]) == k and r["variant"] == "last_prompt_token"]
            for measure in ABLATION:
                top = [float(r[measure]) for r in at_k if r["heads"] == "top" and r.get(measure, "") != ""]
                rand = [float(r[measure]) for r in at_k if r["heads"] == "random" and r.get(measure, "") != ""]
                row[f"{label}: {measure} top"] = round(top[0], 3) if top else ""
                row[f"{label}: {measure} random"] = round(statistics.fmean(rand), 3) if rand else ""
        rows.append(row)
    return rows


def _markdown(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    return "\n".join(markdown_table(columns, [[row.get(c, "") for c in columns] for row in rows])) + "\n"


def _read_run(directory: Path, task: str, model: str) -> tuple[np.ndarray, np.ndarray | None, list, list]:
    attribution = directory / "results" / "attribution" / task
    acie = attribution / model / "acie_exact.tsv"
    if not acie.is_file():
        raise FileNotFoundError(f"{acie}: no exact ACIE map; run `snakemake results/tables/attribution.tsv` in {directory}")
    refusal = attribution / REFUSAL_CONTROL / "acie_exact.tsv"
    metrics = directory / "results" / "eval" / task / model / "metrics.tsv"
    ablation = directory / "results" / "interventions" / task / model / "ablation.tsv"
    for path in (metrics, ablation):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; run `snakemake results/tables/table1.tsv` in {directory}")
    return (read_matrix_tsv(acie), read_matrix_tsv(refusal) if refusal.is_file() else None,
            read_tsv(metrics), read_tsv(ablation))


def compare(directories: Sequence[Path], labels: Sequence[str], task: str, model: str,
            fractions: Sequence[float]) -> dict[str, list[dict]]:
    """The three tables (overlap, held-out, ablation) of two runs."""
    if len(directories) != 2 or len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError("compare needs two run directories and two different labels")
    runs = {label: _read_run(Path(d), task, model) for label, d in zip(labels, directories)}
    maps = {label: run[0] for label, run in runs.items()}
    return {"overlap": map_rows(maps, {label: run[1] for label, run in runs.items()}, fractions),
            "held_out": held_out_rows({label: run[2] for label, run in runs.items()}, maps),
            "ablation": ablation_rows({label: run[3] for label, run in runs.items()})}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs=2, type=Path, help="two snakemake working directories")
    parser.add_argument("--labels", nargs=2, required=True)
    parser.add_argument("--task", default="jailbreak")
    parser.add_argument("--model", default="lora_sft")
    parser.add_argument("--out", type=Path, required=True, help="directory for compare_{overlap,held_out,ablation}.tsv and compare.md")
    args = parser.parse_args(argv)
    tables = compare(args.runs, args.labels, args.task, args.model, schema_default("attribution", "top_fractions"))
    text = []
    for name, rows in tables.items():
        write_tsv_union(args.out / f"compare_{name}.tsv", rows)
        text += [f"## {name}", "", _markdown(rows)]
    write_text(args.out / "compare.md", "\n".join(text))
    print(f"wrote {args.out}/compare_{{overlap,held_out,ablation}}.tsv and compare.md")


if __name__ == "__main__":
    main()
