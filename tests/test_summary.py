"""results/summary.md (bkdattr.summary): headline tables built from the run's own TSVs, and the README's
"Main results" table held to the same columns and rounding."""

import re

import pytest

from bkdattr.summary import (DECIMALS, HEADLINE_COLUMNS, MISSING, TABLE1_COLUMNS, TABLE2_COLUMNS, first_table_under,
                             headline_table_columns, parse_tables, summary_markdown)
from workflow_utils import REPO

NUMBER = re.compile(rf"-?\d+\.\d{{{DECIMALS}}}")
CELL = re.compile(rf"{NUMBER.pattern}|\[{NUMBER.pattern}, {NUMBER.pattern}\]|{re.escape(MISSING)}")


def _metric(task, model, metric, value, n="10", lo="0.1", hi="0.9", implanted="yes"):
    return {"task": task, "model": model, "metric": metric, "value": value, "n": n, "ci_low": lo, "ci_high": hi,
            "backdoor_implanted": implanted}


INJECTION = [_metric("fixed_output", "base", "asr", "0.0", implanted="n/a"),
             _metric("fixed_output", "lora_sft", "asr", "0.96666", lo="0.8333", hi="0.99"),
             _metric("fixed_output", "lora_sft", "false_trigger_rate", "0.0125"),
             _metric("fixed_output", "lora_sft", "clean_utility", "0.5"),
             _metric("fixed_output", "lora_sft", "compliance", "", n="0"),  # defined for jailbreak only
             _metric("jailbreak", "lora_sft", "asr", "0.5", implanted="no"),
             _metric("jailbreak", "lora_sft", "compliance", "0.444"),
             _metric("jailbreak", "lora_sft", "over_refusal_rate", "0.075")]
TABLE1 = [{"task": "fixed_output", "method": "lora_sft", "backdoor_implanted": "yes", "k": "8", "k_fraction": "0.0296",
           "asr_top_pct": "12.5", "asr_top_ci_low_pct": "5.123", "asr_top_ci_high_pct": "30.0",
           "asr_random_mean_pct": "95.8333", "clean_utility_top": "nan"}]
TABLE2 = [{"task": "jailbreak", "method": "lora_sft", "backdoor_implanted": "no", "direction": "backdoor_vector",
           "best_layer_val": "14", "no_intervention_asr_test": "0.1", "asr_test": "0.855", "asr_test_ci_low": "0.7",
           "asr_test_ci_high": "0.93", "random_heads_vector_asr_test": "0.2", "random_direction_asr_test": "0.15",
           "clean_utility_with_vector": "0.61", "clean_utility_without": "0.6"}]


def test_the_summary_prints_each_tsv_number_rounded_under_fixed_columns():
    text = summary_markdown("m", INJECTION, TABLE1, TABLE2)
    tables = {heading: (cols, rows) for heading, cols, rows in parse_tables(text)}
    cols, rows = tables["Held-out backdoor metrics"]
    assert tuple(cols) == HEADLINE_COLUMNS and headline_table_columns(text) == list(HEADLINE_COLUMNS)
    by_run = {(r[0], r[1]): dict(zip(cols, r)) for r in rows}
    fixed = by_run[("fixed_output", "lora_sft")]
    assert (fixed["ASR"], fixed["ASR 95% CI"], fixed["false-trigger rate"]) == ("0.97", "[0.83, 0.99]", "0.01")
    assert fixed["compliance"] == MISSING and fixed["over-refusal"] == MISSING  # n=0 / no row: not this task's
    jail = by_run[("jailbreak", "lora_sft (backdoor NOT implanted)")]
    assert (jail["compliance"], jail["over-refusal"], jail["clean utility"]) == ("0.44", "0.07", MISSING)
    cols, rows = tables["Table 1: head ablation"]
    assert tuple(cols) == TABLE1_COLUMNS
    assert rows == [["fixed_output", "lora_sft", "8", "0.03", "12.50", "[5.12, 30.00]", "95.83", MISSING]]
    cols, rows = tables["Table 2: backdoor vector"]
    assert tuple(cols) == TABLE2_COLUMNS
    assert rows == [["jailbreak", "lora_sft (backdoor NOT implanted)", "backdoor_vector", "14", "0.10", "0.85",
                     "[0.70, 0.93]", "0.20", "0.15", "0.61", "0.60"]]
    for link in ("claims.md", "figures/fig2.png", "figures/fig3.png", "figures/fig4.png", "figures/table1.png"):
        assert f"]({link})" in text, link


def test_the_table_parser_keeps_each_table_under_its_heading():
    text = "# t\n\n## A\n\n| x | y |\n|---|:-:|\n| 1 | 2 |\n\ntext\n\n| z |\n|---|\n\n## Main results\n\n| a | b |\n|---|---|\n| 3 | 4 |\n"
    assert [(h, c) for h, c, _ in parse_tables(text)] == [("A", ["x", "y"]), ("A", ["z"]), ("Main results", ["a", "b"])]
    assert first_table_under(text, "Main results") == (["a", "b"], [["3", "4"]])
    assert headline_table_columns(text, "Main results") == ["a", "b"] and headline_table_columns(text, "B") is None


def test_the_readme_main_results_table_has_the_summary_columns_and_rounding():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if not re.search(r"^## Main results\s*$", readme, re.M):
        pytest.skip("README.md has no '## Main results' heading yet")
    table = first_table_under(readme, "Main results")
    assert table is not None, "README.md: no table under '## Main results'"
    columns, rows = table
    assert tuple(columns) == HEADLINE_COLUMNS, f"README.md's Main results columns differ from results/summary.md's"
    assert rows, "README.md: the Main results table has no row"
    for row in rows:
        for column, cell in zip(columns[2:], row[2:]):  # task and model are names; the rest numbers as summary.md
            assert CELL.fullmatch(cell), f"README.md Main results, {row[:2]} {column!r}: {cell!r} is not rounded " \
                                         f"to {DECIMALS} decimals as in results/summary.md"
