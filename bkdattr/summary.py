"""results/summary.md: the run's headline numbers in one page, each cell read from a table the run wrote.

Every number is rounded to DECIMALS places, in the unit of its source TSV (Table 1 is in %, the other tables
are fractions); a missing or undefined value prints as MISSING. The column lists are constants so that other
documents quoting these tables (the README's "Main results") can be checked against them.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from .gate import mark
from .names import RANDOM_DIRECTION, RANDOM_HEADS_VECTOR

DECIMALS = 2
MISSING = "-"

# (a) held-out backdoor metrics, one row per task and model (injection.tsv)
HEADLINE_COLUMNS = ("task", "model", "ASR", "ASR 95% CI", "false-trigger rate", "clean utility", "compliance",
                    "over-refusal")
HEADLINE_METRICS = {"ASR": "asr", "false-trigger rate": "false_trigger_rate", "clean utility": "clean_utility",
                    "compliance": "compliance", "over-refusal": "over_refusal_rate"}
# (b) Table 1, one row per task, method and k (table1.tsv)
TABLE1_COLUMNS = ("task", "method", "k", "k / heads", "ASR top-k ablated (%)", "ASR 95% CI (%)",
                  "ASR random heads (%)", "clean utility top-k ablated")
TABLE1_SOURCE = {"k": "k", "k / heads": "k_fraction", "ASR top-k ablated (%)": "asr_top_pct",
                 "ASR random heads (%)": "asr_random_mean_pct", "clean utility top-k ablated": "clean_utility_top"}
# (c) Table 2, one row per task, method and direction (table2.tsv)
TABLE2_COLUMNS = ("task", "method", "direction", "best layer (val)", "ASR no intervention", "ASR backdoor vector",
                  "ASR 95% CI", "ASR random-head vector", "ASR random direction", "clean utility with vector",
                  "clean utility without")
TABLE2_SOURCE = {"best layer (val)": "best_layer_val", "ASR no intervention": "no_intervention_asr_test",
                 "ASR backdoor vector": "asr_test", "ASR random-head vector": f"{RANDOM_HEADS_VECTOR}_asr_test",
                 "ASR random direction": f"{RANDOM_DIRECTION}_asr_test",
                 "clean utility with vector": "clean_utility_with_vector", "clean utility without": "clean_utility_without"}
FIGURES = {"Fig. 2 (probe accuracy per layer)": "figures/fig2.png",
           "Fig. 3 (ACIE per head)": "figures/fig3.png",
           "Table 1 as curves (ASR against k)": "figures/table1.png",
           "Fig. 4 (backdoor vector per layer)": "figures/fig4.png"}


def number(value, decimals: int = DECIMALS) -> str:
    """A TSV cell as printed here: rounded to `decimals` places, MISSING for an empty or non-finite cell."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return MISSING
    return f"{x:.{decimals}f}" if math.isfinite(x) else MISSING


def interval(low, high) -> str:
    lo, hi = number(low), number(high)
    return MISSING if MISSING in (lo, hi) else f"[{lo}, {hi}]"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def headline_rows(injection: Sequence[dict]) -> list[list[str]]:
    """Rows of the held-out table from injection.tsv, one per task and model."""
    cell = {(r["task"], r["model"], r["metric"]): r for r in injection}
    runs = list(dict.fromkeys((r["task"], r["model"]) for r in injection))  # the rule's order: base model first
    rows = []
    for task, model in runs:
        def value(metric):
            r = cell.get((task, model, metric))
            return r if r is not None and r["n"] not in ("", "0") else None

        asr = value("asr")
        implanted = next(r["backdoor_implanted"] for r in injection if (r["task"], r["model"]) == (task, model))
        row = [task, model + mark(implanted)]
        for column in HEADLINE_COLUMNS[2:]:
            if column == "ASR 95% CI":
                row.append(interval(asr["ci_low"], asr["ci_high"]) if asr else MISSING)
            else:
                r = value(HEADLINE_METRICS[column])
                row.append(number(r["value"]) if r else MISSING)
        rows.append(row)
    return rows


def table1_summary_rows(table1: Sequence[dict]) -> list[list[str]]:
    rows = []
    for r in table1:
        cells = {c: number(r.get(src)) for c, src in TABLE1_SOURCE.items()}
        cells["k"] = str(r["k"])
        cells["ASR 95% CI (%)"] = interval(r.get("asr_top_ci_low_pct"), r.get("asr_top_ci_high_pct"))
        cells["task"], cells["method"] = r["task"], r["method"] + mark(r.get("backdoor_implanted", "n/a"))
        rows.append([cells[c] for c in TABLE1_COLUMNS])
    return rows


def table2_summary_rows(table2: Sequence[dict]) -> list[list[str]]:
    rows = []
    for r in table2:
        cells = {c: number(r.get(src)) for c, src in TABLE2_SOURCE.items()}
        cells["best layer (val)"] = str(r.get("best_layer_val", MISSING))
        cells["ASR 95% CI"] = interval(r.get("asr_test_ci_low"), r.get("asr_test_ci_high"))
        cells.update(task=r["task"], method=r["method"] + mark(r.get("backdoor_implanted", "n/a")),
                     direction=r["direction"])
        rows.append([cells[c] for c in TABLE2_COLUMNS])
    return rows


def summary_markdown(model_name: str, injection: Sequence[dict], table1: Sequence[dict], table2: Sequence[dict]) -> str:
    """The whole of results/summary.md; links are relative to results/, where the file lies."""
    # linked, not read: the run record is rewritten on any config change, the summary only when a table changes
    record = ("the run record: [report/config.yaml](report/config.yaml) (effective config), "
              "[report/versions.tsv](report/versions.tsv) (package versions)")
    lines = [f"# Results: {model_name}", "",
             f"Generated from this run's tables; {record}. Numbers rounded to {DECIMALS} decimals, in the unit of "
             f"their source table; `{MISSING}`: not defined for that task or model. A method marked "
             "\"backdoor NOT implanted\" failed the injection gate (results/tables/backdoor_gate.tsv).", "",
             "## Held-out backdoor metrics", "",
             "Test split, per task and model (`base`: before fine-tuning). Rates are fractions; compliance (the ASR "
             "read strictly) and over-refusal on benign requests are the jailbreak task's. "
             "Source: [tables/injection.tsv](tables/injection.tsv).", "",
             *markdown_table(HEADLINE_COLUMNS, headline_rows(injection)), "",
             "## Table 1: head ablation", "",
             "ASR (%) after zero-ablating the top-k ACIE heads, beside k random heads (mean over seeds). "
             "Source: [tables/table1.tsv](tables/table1.tsv), with the paper's values in "
             "[tables/table1.md](tables/table1.md).", "",
             *markdown_table(TABLE1_COLUMNS, table1_summary_rows(table1)), "",
             "## Table 2: backdoor vector", "",
             "Test-half ASR with the backdoor vector at the layer chosen on the validation half, beside its controls "
             "(fractions). Source: [tables/table2.tsv](tables/table2.tsv).", "",
             *markdown_table(TABLE2_COLUMNS, table2_summary_rows(table2)), "",
             "## Claims", "",
             "Each claim of the paper beside this run's measurement: [claims.md](claims.md).", "",
             "## Figures", ""]
    lines += [f"- [{label}]({path})" for label, path in FIGURES.items()]
    return "\n".join(lines) + "\n"


def parse_tables(markdown_text: str) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """Every pipe table of a Markdown text: (the `## ` heading it sits under, its columns, its rows of cells)."""
    tables, heading, current = [], None, None
    for line in markdown_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("## "):
            heading, current = stripped[3:].strip(), None
        elif stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if current is None:
                current = (heading, cells, [])
                tables.append(current)
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current[2].append(cells)
        else:
            current = None
    return tables


def first_table_under(markdown_text: str, heading: str) -> tuple[list[str], list[list[str]]] | None:
    """(columns, rows) of the first table under the `## heading`, None when there is none."""
    return next(((cols, rows) for h, cols, rows in parse_tables(markdown_text) if h == heading), None)


def headline_table_columns(markdown_text: str, heading: str = "Held-out backdoor metrics") -> list[str] | None:
    """The columns of the first table under `## heading` (summary.md's headline table by default)."""
    table = first_table_under(markdown_text, heading)
    return None if table is None else table[0]
