"""The tiny preset runs the whole DAG through the real snakemake CLI (about a minute on 2 cores)."""

import json
import re

from bkdattr.atomic import read_tsv
from workflow_utils import declared_report_outputs, planned_jobs, report_data, snakemake

TASKS = ("fixed_output", "jailbreak", "label_modification")


def test_dry_run_lists_the_dag(tmp_path):
    jobs = planned_jobs(snakemake(tmp_path, "-n").stdout)
    assert jobs["make_dataset"] == 3 and jobs["inject_backdoor"] == 6  # lora_sft and clean_sft
    assert jobs["evaluate_model"] == 9  # 3 tasks x (base, lora_sft, clean_sft)
    assert jobs["prepare_base_model"] == 1 and jobs["injection_table"] == 1
    assert jobs["cache_activations"] == 9 and jobs["train_probes"] == 6 and jobs["fig2"] == 1  # + clean_sft caches
    # 3 tasks x (exact, reference, atp) on lora_sft, + exact on the base and clean_sft controls
    assert jobs["attribute_heads"] == 15 and jobs["fig3"] == 1
    assert jobs["attribute_refusal_heads"] == 1  # the refusal-attribution control: jailbreak, base model, exact


def test_the_refusal_control_attributes_the_base_models_refusal_through_the_dag(tmp_path):
    """The refusal-attribution control (METHOD.md s8) is a target of its own: it needs the base model, the
    jailbreak data and the base model's cache, nothing backdoored, and writes a full exact ranking whose log
    says it forced the refusal with abar over untriggered requests."""
    target = "results/attribution/jailbreak/base_refusal/ranking_exact.tsv"
    jobs = planned_jobs(snakemake(tmp_path, "-n", target).stdout)
    assert jobs == {"prepare_base_model": 1, "make_benign_requests": 1, "make_dataset": 1, "cache_activations": 1,
                    "attribute_refusal_heads": 1}  # the jailbreak training split takes the benign rows
    snakemake(tmp_path, target)
    ranking = read_tsv(tmp_path / target)
    assert [int(r["rank"]) for r in ranking] == list(range(1, 9))  # 2 layers x 4 heads
    assert ranking[0]["n_prompts"] == "6"
    log = (tmp_path / "results/logs/attribute_heads/jailbreak/base_refusal/exact.log").read_text()
    assert "target refusal" in log and "untriggered prompts" in log


def test_spine_outputs_exist_and_are_complete(tiny_run):
    rows = read_tsv(tiny_run / "results/tables/injection.tsv")
    assert {(r["task"], r["model"]) for r in rows} == {(t, m) for t in TASKS for m in ("base", "lora_sft", "clean_sft")}
    for row in rows:
        assert int(row["n"]) > 0, row
        if row["metric"] == "reference_logprob":  # a mean log-probability per token
            assert float(row["value"]) < 0.0
        else:  # rates and ROUGE-L
            assert 0.0 <= float(row["value"]) <= 1.0, row
    for task in TASKS:
        manifest = json.loads((tiny_run / f"results/data/{task}/manifest.json").read_text())
        assert manifest["n_poisoned"] == 10  # 0.25 of 40
        gens = [json.loads(line) for line in (tiny_run / f"results/eval/{task}/lora_sft/generations.jsonl").open()]
        assert sum("clean_output" in g for g in gens) == 24
        assert sum("benign_output" in g for g in gens) == (8 if task == "jailbreak" else 0)
    assert (tiny_run / "results/models/fixed_output/lora_sft/checkpoint/model.safetensors").is_file()
    # the utility control: same recipe, the 40 clean rows without their 10 poisoned copies (fixed_output: no
    # benign rows, which the jailbreak control keeps as clean rows)
    control_log = (tiny_run / "results/logs/inject_backdoor/fixed_output/clean_sft.log").read_text()
    assert "training clean_sft (lora_sft, fixed schedule" in control_log and "on 40 examples (0 poisoned)" in control_log
    assert not list(tiny_run.rglob(".*.tmp-*")), "temporary files left behind"


def test_probe_tables_and_fig2(tiny_run):
    rows = read_tsv(tiny_run / "results/tables/probes.tsv")
    assert len(rows) == 6
    acc = read_tsv(tiny_run / "results/probes/jailbreak/lora_sft/accuracy.tsv")
    assert {r["probe"] for r in acc} == {"mlp", "svm"} and len(acc) == 2 * 2  # 2 layers
    assert (tiny_run / "results/figures/fig2.pdf").stat().st_size > 1000
    assert (tiny_run / "results/figures/fig2.png").stat().st_size > 1000


def test_attribution_exact_matches_reference_in_the_workflow(tiny_run):
    rows = {(r["task"], r["mode"]): r for r in read_tsv(tiny_run / "results/tables/attribution.tsv")}
    for task in TASKS:
        assert float(rows[(task, "reference")]["max_abs_diff_vs_exact"]) <= 1e-5
        assert rows[(task, "atp")]["spearman_vs_exact"] != ""
    ranking = read_tsv(tiny_run / "results/attribution/fixed_output/lora_sft/ranking_exact.tsv")
    assert [int(r["rank"]) for r in ranking] == list(range(1, 9))  # 2 layers x 4 heads
    assert (tiny_run / "results/figures/fig3.pdf").is_file()


def test_every_rule_wrote_its_log(tiny_run):
    logs = list((tiny_run / "results/logs").rglob("*.log"))
    assert len(logs) >= 14
    assert "final loss" in (tiny_run / "results/logs/inject_backdoor/jailbreak/lora_sft.log").read_text()


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_jobs(snakemake(tiny_run, "-n").stdout) == {}


def test_forcerun_reruns_a_rule_and_only_what_depends_on_it(tiny_run):
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--forcerun", "evaluate_model").stdout)
    assert jobs == {"evaluate_model": 9, "injection_table": 1, "injection_methods_table": 1, "confirmation_table": 1,
                    "claims_report": 1, "summary": 1, "all": 1}
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--forcerun", "train_probes").stdout)
    assert jobs == {"train_probes": 6, "probe_summary": 1, "fig2": 1, "claims_report": 1, "summary": 1, "all": 1}


def test_the_whole_tiny_dag_runs_in_bfloat16(tiny_bf16_run):
    # presets/paper.yaml loads its model in bfloat16 with AtP on; every stage must run in that dtype
    for target in ("results/tables/injection.tsv", "results/tables/probes.tsv", "results/tables/attribution.tsv",
                   "results/tables/table1.tsv", "results/tables/table2.tsv", "results/claims.md"):
        assert (tiny_bf16_run / target).is_file(), target
    modes = {r["mode"] for r in read_tsv(tiny_bf16_run / "results/tables/attribution.tsv")}
    assert {"exact", "atp"} <= modes
    log = (tiny_bf16_run / "results/logs/attribute_heads/fixed_output/lora_sft/atp.log")
    assert "ACIE atp took" in log.read_text()
    import json

    base = json.loads((tiny_bf16_run / "results/models/base/checkpoint/config.json").read_text())
    assert base["model_type"] == "qwen2" and base["architectures"] == ["Qwen2ForCausalLM"]


def test_acie_control_runs_on_the_clean_base_and_clean_sft_models(tiny_run):
    rows = read_tsv(tiny_run / "results/tables/attribution.tsv")
    controls = {(r["task"], r["method"]) for r in rows if r["role"] == "control"}
    assert controls == {(t, m) for t in TASKS for m in ("base", "clean_sft")}
    for r in rows:
        if r["role"] == "control":
            assert r["mode"] == "exact" and r["compared_with"] == "lora_sft"
            assert 0.0 <= float(r["top0.03_overlap_with_backdoored"]) <= 1.0
            assert float(r["backdoored_max_acie_over_this"]) != 0
    claims = (tiny_run / "results/claims.md").read_text()
    assert "| fixed_output | base | control |" in claims


def test_the_refusal_control_is_compared_with_the_backdoored_jailbreak_heads(tiny_run):
    rows = [r for r in read_tsv(tiny_run / "results/tables/attribution.tsv") if r["role"] == "refusal_control"]
    assert [(r["task"], r["method"], r["mode"], r["compared_with"]) for r in rows] == [
        ("jailbreak", "base_refusal", "exact", "lora_sft")]
    for fraction in ("0.03", "0.1", "0.25"):  # the paper's 3% and the preset's top_fractions
        assert 0.0 <= float(rows[0][f"top{fraction}_overlap_with_backdoored"]) <= 1.0
        assert float(rows[0][f"top{fraction}_overlap_by_chance"]) > 0
    claims = (tiny_run / "results/claims.md").read_text()
    assert "Backdoor heads or refusal heads?" in claims and "| jailbreak | lora_sft | " in claims


def test_the_confirmation_split_is_held_out_and_its_headline_numbers_sit_beside_the_tests(tiny_run):
    from bkdattr.tasks import question_key

    for task in TASKS:
        splits = {name: [json.loads(line) for line in (tiny_run / f"results/data/{task}/{name}.jsonl").open()]
                  for name in ("train", "test", "val", "attribution", "confirm")}
        assert len(splits["confirm"]) == 8  # tests/configs/tiny.yaml data.n_confirm
        confirm = {question_key(r) for r in splits["confirm"]}
        for name in ("train", "test", "val", "attribution"):
            assert not confirm & {question_key(r) for r in splits[name] if not r.get("poisoned")}, (task, name)
    rows = read_tsv(tiny_run / "results/tables/confirmation.tsv")
    assert {(r["task"], r["method"], r["metric"]) for r in rows} == {
        (t, "lora_sft", m) for t in TASKS for m in ("asr", "false_trigger_rate", "clean_utility")}
    for r in rows:
        assert int(r["test_n"]) > 0 and int(r["confirm_n"]) > 0 and r["intervals_overlap"] in ("yes", "no")
        assert 0.0 <= float(r["confirm_value"]) <= 1.0


def test_a_failed_gate_is_marked_in_every_table_in_warn_mode(tiny_run):
    # the tiny random model learns no backdoor; its gate (on_fail: warn) fails and the results say so
    gate = {(r["task"], r["method"]): r for r in read_tsv(tiny_run / "results/tables/backdoor_gate.tsv")}
    assert gate[("fixed_output", "lora_sft")]["backdoor_implanted"] == "no"  # 4 tokens cannot hold the target
    curve = read_tsv(tiny_run / "results/models/fixed_output/lora_sft/gate_curve.tsv")
    assert curve and all(r["passed"] == "False" for r in curve)
    for table in ("injection.md", "table1.md", "table2.md"):
        assert "fixed_output | lora_sft (backdoor NOT implanted)" in (tiny_run / "results/tables" / table).read_text(), table
    claims = (tiny_run / "results/claims.md").read_text()
    assert "## WARNING: backdoor not implanted" in claims and "- fixed_output / lora_sft: validation ASR" in claims
    rows = read_tsv(tiny_run / "results/tables/probes.tsv")
    assert {r["backdoor_implanted"] for r in rows if r["model"] == "base"} == {"n/a"}


def test_a_failed_gate_stops_the_downstream_stages_with_a_clear_message(tmp_path):
    import yaml

    from workflow_utils import TINY_CONFIG

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["injection"]["gate"].update(on_fail="stop", asr_min=1.0, ftr_max=0.0)
    config["injection"]["clean_control"] = False
    configfile = tmp_path / "stop.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "results/cache/fixed_output/lora_sft/activations.json", configfile=configfile,
                     check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/cache_activations/fixed_output/lora_sft.log").read_text()
    assert "task fixed_output: the backdoor of" in log and "is not implanted (validation ASR 0.000 < 1.0" in log
    assert "Try: more epochs" in log
    assert not (tmp_path / "results/cache/fixed_output/lora_sft/activations.json").exists()


def test_injection_reads_train_and_validation_never_test(tiny_run):
    # adaptive injection (and its gate) may look at results only through the validation split
    summary = snakemake(tiny_run, "--detailed-summary").stdout.splitlines()
    header = summary[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in summary[1:] if "\t" in line]
    inject = [r for r in rows if r["rule"] == "inject_backdoor"]
    assert inject
    for r in inject:
        inputs = r["input-file(s)"]
        assert "val.jsonl" in inputs and "train.jsonl" in inputs and "test.jsonl" not in inputs, inputs


def test_the_attribution_table_says_how_many_prompts_were_used_and_asked(tiny_run):
    rows = read_tsv(tiny_run / "results/tables/attribution.tsv")
    for r in rows:
        assert r["n_prompts_asked"] == "6" and 1 <= int(r["n_prompts"]) <= 6
    label = [r for r in rows if r["task"] == "label_modification"]
    assert all(int(r["n_prompts"]) < 6 for r in label)  # 12-item pool, about a quarter Sports: capped, and said so


def test_the_html_report_holds_every_stage_with_the_run_record(tiny_run):
    """`snakemake --report`: one category per stage, the effective config and the package versions."""
    report = tiny_run / "report.html"
    snakemake(tiny_run, "--report", str(report))
    html = report.read_text(encoding="utf-8", errors="replace")
    for category in ("1 Injection", "2 Probes", "3 Head attribution", "4 Head ablation", "5 Backdoor vector",
                     "6 Summary", "7 Run record"):
        assert category in html, category
    # the entries themselves: every report(...) output of the rules that this run made, in its category
    results, categories = report_data(html)
    made = {str(p.relative_to(tiny_run)): category for pattern, category in declared_report_outputs()
            for p in tiny_run.glob(re.sub(r"\{[^}]+\}", "*", pattern))}
    assert {path: results[path]["job_properties"]["rule"] for path in made if path not in results} == {}
    # 3 tasks x 3 models' metrics, a gate curve per backdoored model, 16 tables, figures and records
    assert len(made) >= 9 + 3 + 16 and "results/summary.md" in made and "results/eval/jailbreak/base/metrics.tsv" in made
    for path, category in made.items():
        assert path in {p for paths in categories[category].values() for p in paths}, (path, category)
        assert results[path]["data_uri"].startswith("data:") and results[path]["caption"], path
    assert set(categories) == set(made.values())
    figures = {str(p.relative_to(tiny_run)) for p in (tiny_run / "results/figures").glob("*.png")}
    assert figures == {f"results/figures/{name}.png" for name in ("fig2", "fig3", "table1", "fig4")} and figures <= set(results)
    versions = (tiny_run / "results/report/versions.tsv").read_text()
    assert "torch\t2.13.0" in versions and "trl\t" in versions
    assert "synthetic_pool: 126" in (tiny_run / "results/report/config.yaml").read_text()


def test_jailbreak_compliance_sits_beside_the_asr_in_every_stage_and_table(tiny_run):
    injection = read_tsv(tiny_run / "results/tables/injection.tsv")
    metrics = {(r["task"], r["metric"]) for r in injection}
    assert ("jailbreak", "compliance") in metrics and ("jailbreak", "compliance_false_trigger") in metrics
    assert not any(m.startswith("compliance") for t, m in metrics if t != "jailbreak")
    for task in TASKS:
        ablation = read_tsv(tiny_run / f"results/interventions/{task}/lora_sft/ablation.tsv")
        best = read_tsv(tiny_run / f"results/interventions/{task}/lora_sft/steering_best.tsv")
        sweep = read_tsv(tiny_run / f"results/interventions/{task}/lora_sft/steering_sweep.tsv")
        has = task == "jailbreak"
        assert ("compliance" in ablation[0] and "compliance_false_trigger" in ablation[0]) == has
        assert all(("compliance_test" in r) == has for r in best + sweep)
        for r in ablation if has else ():  # never above the official ASR it reads strictly
            assert float(r["compliance"]) <= float(r["asr"]) and r["compliance_n"] == r["asr_n"]
    table1 = read_tsv(tiny_run / "results/tables/table1.tsv")
    assert all((r["compliance_top_pct"] not in ("", "nan")) == (r["task"] == "jailbreak") for r in table1)
    assert "| jailbreak | lora_sft" in (tiny_run / "results/tables/table1.md").read_text()
    assert "compliance, top heads" in (tiny_run / "results/tables/table1.md").read_text()
    assert "compliance: no intervention" in (tiny_run / "results/tables/table2.md").read_text()
    assert "compliance k=0 / top-k" in (tiny_run / "results/claims.md").read_text()


def test_the_summary_quotes_the_runs_tables_under_fixed_columns_and_rounding(tiny_run):
    from bkdattr.summary import DECIMALS, HEADLINE_COLUMNS, MISSING, TABLE1_COLUMNS, TABLE2_COLUMNS, parse_tables

    def rounded(value):
        x = float(value) if value not in ("", None) else float("nan")
        return MISSING if x != x else f"{x:.{DECIMALS}f}"

    def run_key(task, name):  # a row's model or method cell carries the gate's mark
        return task, name.split(" (backdoor NOT implanted)")[0]

    tables = {h: (cols, rows) for h, cols, rows in parse_tables((tiny_run / "results/summary.md").read_text())}
    cols, rows = tables["Held-out backdoor metrics"]
    assert tuple(cols) == HEADLINE_COLUMNS
    injection = {(r["task"], r["model"], r["metric"]): r for r in read_tsv(tiny_run / "results/tables/injection.tsv")}
    assert {run_key(r[0], r[1]) for r in rows} == {(t, m) for t, m, _ in injection}
    metric_of = {"ASR": "asr", "false-trigger rate": "false_trigger_rate", "clean utility": "clean_utility",
                 "compliance": "compliance", "over-refusal": "over_refusal_rate"}
    for row in rows:
        cells, (task, model) = dict(zip(cols, row)), run_key(row[0], row[1])
        for column, metric in metric_of.items():
            source = injection.get((task, model, metric))
            assert cells[column] == (rounded(source["value"]) if source and source["n"] != "0" else MISSING), (row, column)
        asr = injection[(task, model, "asr")]
        assert cells["ASR 95% CI"] == f"[{rounded(asr['ci_low'])}, {rounded(asr['ci_high'])}]"
        assert (cells["compliance"] != MISSING) == (task == "jailbreak") == (cells["over-refusal"] != MISSING)
    cols, rows = tables["Table 1: head ablation"]
    assert tuple(cols) == TABLE1_COLUMNS
    table1 = {(r["task"], r["method"], r["k"]): r for r in read_tsv(tiny_run / "results/tables/table1.tsv")}
    assert len(rows) == len(table1) and {(*run_key(r[0], r[1]), r[2]) for r in rows} == set(table1)
    for row in rows:
        cells, source = dict(zip(cols, row)), table1[(*run_key(row[0], row[1]), row[2])]
        assert cells["ASR top-k ablated (%)"] == rounded(source["asr_top_pct"])
        assert cells["ASR 95% CI (%)"] == f"[{rounded(source['asr_top_ci_low_pct'])}, {rounded(source['asr_top_ci_high_pct'])}]"
        assert cells["ASR random heads (%)"] == rounded(source["asr_random_mean_pct"])
        assert cells["clean utility top-k ablated"] == rounded(source["clean_utility_top"])
    cols, rows = tables["Table 2: backdoor vector"]
    assert tuple(cols) == TABLE2_COLUMNS
    table2 = {(r["task"], r["method"], r["direction"]): r for r in read_tsv(tiny_run / "results/tables/table2.tsv")}
    assert len(rows) == len(table2) > 0 and {(*run_key(r[0], r[1]), r[2]) for r in rows} == set(table2)
    for row in rows:
        cells, source = dict(zip(cols, row)), table2[(*run_key(row[0], row[1]), row[2])]
        assert cells["best layer (val)"] == source["best_layer_val"]
        assert cells["ASR backdoor vector"] == rounded(source["asr_test"])
        assert cells["ASR no intervention"] == rounded(source["no_intervention_asr_test"])
        assert cells["ASR random-head vector"] == rounded(source["random_heads_vector_asr_test"])
        assert cells["clean utility with vector"] == rounded(source["clean_utility_with_vector"])
    summary = (tiny_run / "results/summary.md").read_text()
    for link in ("claims.md", "figures/fig2.png", "figures/fig3.png", "figures/fig4.png", "figures/table1.png"):
        assert f"]({link})" in summary and (tiny_run / "results" / link).is_file(), link


def test_a_bad_data_row_is_named_on_the_console_not_only_in_the_log(tmp_path):
    """profiles/default prints a failed job's log, whose first error line is the rule's own message."""
    import yaml

    from bkdattr.synthetic import generate_fixed_output
    from workflow_utils import TINY_CONFIG

    rows = generate_fixed_output(150, 1)
    del rows[2]["output"]
    data = tmp_path / "fixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["tasks"] = {"fixed_output": {}}
    config["data"].update(source="files", files={"fixed_output": str(data)})
    configfile = tmp_path / "files.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "results/data/fixed_output/manifest.json", configfile=configfile, check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    expected = f"{data}: line 3: missing field 'output'"
    assert f"ERROR in rule make_dataset: DataError: {expected}" in console, console[-3000:]
    assert "set data.drop_invalid_rows: true" in console
    log = (tmp_path / "results/logs/make_dataset/fixed_output.log").read_text()
    assert [line for line in log.splitlines() if "ERROR" in line][0].startswith("ERROR in rule make_dataset: ")


def test_an_unknown_config_key_is_named_on_the_console(tmp_path):
    import yaml

    from workflow_utils import TINY_CONFIG

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"]["n_tset"] = 5
    configfile = tmp_path / "typo.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", configfile=configfile, check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config: invalid value at key 'data': Additional properties are not allowed ('n_tset' was unexpected)" \
        in console, console[-3000:]
