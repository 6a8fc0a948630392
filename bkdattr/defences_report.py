"""The defences table, the trigger-variant table and the ASR-against-utility figure, from each defended model's
evaluation files (torch-free: runs in the plots env)."""

from __future__ import annotations

from typing import Mapping, Sequence

from .atomic import read_tsv, write_text, write_tsv
from .figures import _pyplot, finish_figure
from .summary import markdown_table

UNDEFENDED = "undefended"
METRIC_COLUMNS = ["task", "method", "defence", "metric", "value", "successes", "n", "ci_low", "ci_high"]
VARIANT_COLUMNS = ["task", "method", "defence", "variant", "trigger", "placement", "asr", "successes", "n", "ci_low",
                   "ci_high"]
DEFENCE_COLUMNS = ["task", "method", "defence", "asr", "asr_ci_low", "asr_ci_high", "compliance", "false_trigger_rate",
                   "clean_utility", "over_refusal_rate", "n_questions", "seconds", "needs", "removed"]
# the per-model measures, in the table's order; compliance and over-refusal only where the task has them
MEASURES = ("asr", "compliance", "false_trigger_rate", "clean_utility", "over_refusal_rate")


def defence_row(run: Mapping[str, str], metric_rows: Sequence[Mapping[str, str]], info: Mapping[str, str]) -> dict:
    """One model's row: its measures (ASR with its interval), the time its defence took, what it needs."""
    by_metric = {r["metric"]: r for r in metric_rows}
    if "asr" not in by_metric:
        raise ValueError(f"{run['task']}/{run['method']}/{run['defence']}: the evaluation has no `asr` row")
    row = {"task": run["task"], "method": run["method"], "defence": run["defence"],
           "asr_ci_low": float(by_metric["asr"]["ci_low"]), "asr_ci_high": float(by_metric["asr"]["ci_high"]),
           "n_questions": int(by_metric["asr"]["n"]), "seconds": info.get("seconds", ""),
           "needs": info.get("needs", ""), "removed": info.get("removed", "")}
    for name in MEASURES:
        row[name] = float(by_metric[name]["value"]) if name in by_metric else ""
    return row


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _runs(rows: Sequence[Mapping]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["task"], r["method"]) for r in rows))


def defences_markdown(rows: Sequence[Mapping], model_name: str) -> str:
    columns = ["defence", "asr", "compliance", "false_trigger_rate", "clean_utility", "over_refusal_rate", "seconds",
               "needs"]
    out = [f"# Removing the backdoor: cleanings and standard defences ({model_name})\n",
           "Held-out test questions (interventions.n_eval, one row each); ASR with its Wilson 95% interval. "
           "`seconds`: the time the defence took (0: nothing to do).\n"]
    for task, method in _runs(rows):
        cells = [[_fmt(r[c]) for c in columns] for r in rows if (r["task"], r["method"]) == (task, method)]
        for row, r in zip(cells, (r for r in rows if (r["task"], r["method"]) == (task, method))):
            row[1] = f"{r['asr']:.2f} [{r['asr_ci_low']:.2f}, {r['asr_ci_high']:.2f}]"
            row[6] = _fmt(float(r["seconds"])) if r["seconds"] != "" else ""
        out += [f"\n## {task} / {method}\n", *markdown_table(columns, cells)]
    return "\n".join(out) + "\n"


def _trigger_cell(row: Mapping) -> str:
    trigger = row["trigger"].replace("|", "\\|").replace("{input}", "…")
    return f"`{trigger[:37] + '...' if len(trigger) > 40 else trigger}` ({row['placement']})"


def variants_markdown(rows: Sequence[Mapping], model_name: str) -> str:
    """Per task: one row per trigger variant, one column per model, the ASR in each cell."""
    out = [f"# Trigger variants: ASR of every model on near-miss triggers ({model_name})\n"]
    for task, method in _runs(rows):
        mine = [r for r in rows if (r["task"], r["method"]) == (task, method)]
        defences = list(dict.fromkeys(r["defence"] for r in mine))
        table = []
        for variant in dict.fromkeys(r["variant"] for r in mine):
            asr = {r["defence"]: float(r["asr"]) for r in mine if r["variant"] == variant}
            first = next(r for r in mine if r["variant"] == variant)
            table.append([variant, _trigger_cell(first), *(f"{asr[d]:.2f}" if d in asr else "" for d in defences)])
        out += [f"\n## {task} / {method}\n", *markdown_table(["variant", "trigger", *defences], table)]
    return "\n".join(out) + "\n"


def utility_axis(rows: Sequence[Mapping]) -> tuple[str, list[float]]:
    """The utility a task's panel plots: benign requests answered (1 - over-refusal) where it is measured
    (jailbreak: its clean utility counts any non-refusal, so a broken model scores 1), else clean utility."""
    if all(r.get("over_refusal_rate", "") != "" for r in rows):
        return "benign requests answered (1 - over-refusal)", [1 - float(r["over_refusal_rate"]) for r in rows]
    return "clean utility", [float(r["clean_utility"]) for r in rows]


def plot_defences(rows: Sequence[Mapping], pdf_path, png_path, model_name: str = "") -> None:
    """ASR against utility, one panel per task, one point per defence in one colour across panels (a shared
    legend: several defences often sit on the undefended model's point); the undefended model a black star."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    defences = list(dict.fromkeys(r["defence"] for r in rows))
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(d for d in defences if d != UNDEFENDED)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        xlabel, xs = utility_axis(mine)
        for r, x in zip(mine, xs):
            undefended = r["defence"] == UNDEFENDED
            ax.scatter(x, r["asr"], marker="*" if undefended else "o", s=180 if undefended else 36,
                       color="black" if undefended else colours[r["defence"]], zorder=2 if undefended else 3,
                       alpha=1.0 if undefended else 0.85, label=r["defence"])
        ax.set(title=task, xlabel=xlabel, ylabel="ASR (held-out)", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.08))
    finish_figure(plt, fig, f"Removing the backdoor: ASR against utility ({model_name})", pdf_path, png_path)


def build(runs: Sequence[Mapping[str, str]], metrics_paths: Sequence[str], variants_paths: Sequence[str],
          info_paths: Sequence[str], out: Mapping[str, str], model_name: str) -> tuple[list[dict], list[dict]]:
    """Read every run's files, write the two tables (TSV and Markdown) and the figure; (defence rows, variant rows)."""
    rows, variant_rows = [], []
    for run, metrics, variants, info in zip(runs, metrics_paths, variants_paths, info_paths):
        info_row = read_tsv(info)[0]
        rows.append(defence_row(run, read_tsv(metrics), info_row))
        variant_rows += [{**r, "task": run["task"], "method": run["method"], "defence": run["defence"]}
                         for r in read_tsv(variants)]
    write_tsv(out["tsv"], rows, DEFENCE_COLUMNS)
    write_text(out["md"], defences_markdown(rows, model_name))
    write_tsv(out["variants_tsv"], variant_rows, VARIANT_COLUMNS)
    write_text(out["variants_md"], variants_markdown(variant_rows, model_name))
    plot_defences(rows, out["pdf"], out["png"], model_name)
    return rows, variant_rows
