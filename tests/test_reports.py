"""Claims report readings: decided by Wilson intervals, and checked against the controls measured beside them."""
from bkdattr import reports
from bkdattr.atomic import write_tsv
from bkdattr.stats import wilson_interval


def test_readings_are_decided_by_the_interval_not_the_point_estimate():
    assert reports._reading_at_least(0.99, 200, 0.9).startswith("consistent")
    assert reports._reading_at_least(0.95, 20, 0.9) == "undecided at this sample size"
    assert reports._reading_at_least(0.2, 100, 0.9).startswith("not reproduced")
    assert reports._reading_at_most(0.0, 64, 0.1).startswith("consistent")
    assert reports._reading_at_most(0.0, 8, 0.1) == "undecided at this sample size"
    assert reports._reading_at_most(0.6, 64, 0.1).startswith("not reproduced")


def test_specificity_names_each_control_that_matches_the_effect():
    # subtracting the vector drops ASR to 0/32: a control that leaves it at 1.0 is outside the interval
    assert reports._specificity(0.0, 32, {"a random direction": 1.0}, lower=True).startswith("specific")
    text = reports._specificity(0.0, 32, {"a random direction": 1.0, "a random-head vector": 0.06}, lower=True)
    assert text == "not specific: a random-head vector does as much"
    # adding the vector raises ASR to 1.0: a random direction that also reaches 1.0 explains it as well
    assert reports._specificity(1.0, 25, {"a random direction": 1.0}, lower=False).startswith("not specific")
    # a missing control (NaN from an empty cell) must not count as one the effect beat
    assert reports._specificity(0.0, 32, {"a random direction": float("nan")}, lower=True) == "no control measured"


def _ablation_tsv(path, asr_top_k8, asr_random_k8):
    rows = [{"heads": "top", "seed": "", "variant": "last_prompt_token", "k": 0, "k_fraction": 0.0, "asr": 1.0},
            {"heads": "top", "seed": "", "variant": "last_prompt_token", "k": 8, "k_fraction": 0.0296,
             "asr": asr_top_k8}]
    rows += [{"heads": "random", "seed": s, "variant": "last_prompt_token", "k": 8, "k_fraction": 0.0296,
              "asr": asr_random_k8} for s in (1, 2)]
    for r in rows:
        lo, hi = wilson_interval(round(r["asr"] * 64), 64)  # one row per question: Wilson
        r.update(asr_n=64, asr_n_questions=64, asr_ci_low=lo, asr_ci_high=hi, false_trigger_rate=0, clean_utility=1,
                 utility_n=64, ablated="")
    path.parent.mkdir(parents=True)
    write_tsv(path, rows)


def test_claims_report_flags_controls_and_utility_loss(tmp_path):
    _ablation_tsv(tmp_path / "label_modification" / "lora_sft" / "ablation.tsv", 0.0, 1.0)
    _ablation_tsv(tmp_path / "fixed_output" / "lora_sft" / "ablation.tsv", 0.0, 0.0)
    _ablation_tsv(tmp_path / "jailbreak" / "lora_sft" / "ablation.tsv", 1.0, 1.0)
    table1 = reports.table1_rows({(t, "lora_sft"): str(tmp_path / t / "lora_sft" / "ablation.tsv")
                                  for t in ("label_modification", "fixed_output", "jailbreak")})
    common = {"method": "lora_sft", "asr_test_n": "25", "no_intervention_asr_test": "0", "k_heads": "8"}
    table2 = [
        {"task": "label_modification", "direction": "add", "best_layer_val": "18", "asr_test": "1",
         "random_heads_vector_asr_test": "0", "random_direction_asr_test": "1",
         "clean_utility_with_vector": "0.28", "clean_utility_without": "1", **common},
        {"task": "fixed_output", "direction": "minus", "best_layer_val": "24", "asr_test": "0",
         "random_heads_vector_asr_test": "0.9", "random_direction_asr_test": "1",
         "clean_utility_with_vector": "0.73", "clean_utility_without": "0.73", **common},
        {"task": "label_modification", "direction": "minus", "best_layer_val": "3", "asr_test": "0.16",
         "random_heads_vector_asr_test": "0.96", "random_direction_asr_test": "0.36",
         "clean_utility_with_vector": "0.3", "clean_utility_without": "1", **common},
    ]
    injection = [{"task": "fixed_output", "model": "lora_sft", "metric": m, "value": "0.9", "n": "200"}
                 for m in ("asr", "false_trigger_rate", "clean_utility")]
    text = reports.claims_markdown(injection, [], [], table1, table2, "tiny", 0.95)
    label_ablation = next(l for l in text.splitlines() if l.startswith("| label_modification | lora_sft | 8"))
    assert "reduced: intervals do not overlap; specific" in label_ablation
    fixed_ablation = next(l for l in text.splitlines() if l.startswith("| fixed_output | lora_sft | 8"))
    assert "not specific: the random-head mean does as much" in fixed_ablation
    jailbreak_ablation = next(l for l in text.splitlines() if l.startswith("| jailbreak | lora_sft | 8"))
    assert "not reduced" in jailbreak_ablation and "specific" not in jailbreak_ablation  # no effect to attribute
    add = next(l for l in text.splitlines() if l.startswith("| label_modification | lora_sft | 18"))
    assert "not specific: a random direction of the same norm does as much" in add
    assert "utility falls" not in add  # adding the vector replaces clean answers by design
    minus = next(l for l in text.splitlines() if l.startswith("| fixed_output | lora_sft | 24"))
    assert "specific: every control stays outside the interval" in minus and "utility falls" not in minus
    label_minus = next(l for l in text.splitlines() if l.startswith("| label_modification | lora_sft | 3"))
    assert "clean utility falls 1.00 -> 0.30" in label_minus


def test_table1_compares_with_the_paper_at_the_same_fraction_of_heads(tmp_path):
    # our k=8 of 270 heads (2.96%) sits beside the paper's k=32 of Llama-2's 1024 (3.1%), not its k=8 (0.8%)
    _ablation_tsv(tmp_path / "fixed_output" / "lora_sft" / "ablation.tsv", 0.5, 1.0)
    rows = reports.table1_rows({("fixed_output", "lora_sft"): str(tmp_path / "fixed_output" / "lora_sft" / "ablation.tsv")})
    k8 = next(r for r in rows if r["k"] == 8)
    assert k8["paper_Llama-2-7B-chat_k"] == 32 and k8["paper_Llama-2-7B-chat_pct"] == 69.53
    assert abs(k8["paper_Llama-2-7B-chat_k_fraction"] - 32 / 1024) < 1e-12
    assert k8["paper_Qwen2.5-7B-Instruct_k"] == 32  # 32 / 784 = 4.1% (ratio 1.38) beats 16 / 784 = 2.0% (1.45)
    md = reports.table1_markdown(rows, "m")
    assert "k=8 (3.0%)" in md  # every column names k and k/(L*H)
    assert "69.5 (k=32, 3.1%)" in md
    assert "Llama-2-7B-chat (1024 heads) | fixed_output" in md  # the paper's rows at their own fractions


def test_paper_value_is_left_blank_without_a_published_k_near_our_fraction():
    assert reports.paper_at_fraction("Llama-2-7B-chat", "fixed_output", 32 / 270) is None  # 11.9%: none near
    assert reports.paper_at_fraction("Llama-2-7B-chat", "jailbreak", 0.0) == (0, 0.0, 75.78)
    assert reports.paper_at_fraction("Llama-2-7B-chat", "jailbreak", 1 / 270) is None  # only k=0 and 32 published


def test_fig3_orders_methods_as_configured_and_marks_a_model_that_missed_the_gate(tmp_path, monkeypatch):
    """The first method (the one the head overlaps compare with) comes first, the clean control last, and a map
    of a model whose backdoor gate did not pass is not titled as a backdoor's."""
    import numpy as np

    from bkdattr import figures
    from bkdattr.atomic import write_matrix_tsv

    panels = {}
    for i, model in enumerate(["lora_sft", "dpo", "base"]):
        panels[("fixed_output", model)] = tmp_path / f"{model}.tsv"
        write_matrix_tsv(panels[("fixed_output", model)], np.full((3, 2), 0.1 * (i + 1)), corner="layer/head")
    saved = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, pdf, png: saved.setdefault("fig", fig))
    figures.plot_fig3(panels, tmp_path / "f.pdf", tmp_path / "f.png",
                      implanted={("fixed_output", "lora_sft"): True, ("fixed_output", "dpo"): False},
                      shared={("fixed_output", "dpo"): "top 3%: 1 of 8 shared with lora_sft\n(chance 0.24)"})
    titles = [ax.get_title() for ax in saved["fig"].axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == ["Fixed output: lora_sft (backdoored)",
                                                  "Fixed output: dpo (gate not passed)",
                                                  "Fixed output: base (clean control)"]
    assert titles[1].endswith("\ntop 3%: 1 of 8 shared with lora_sft\n(chance 0.24)")
    assert "shared" not in titles[0] + titles[2]


def test_the_top_head_overlap_line_reads_the_attribution_summary_row():
    """Another method's row against the first method, a control's against the backdoored model: the counts
    are the overlap fractions times k = round(3% of the heads); a row that compares nothing gives no line."""
    from bkdattr.figures import top_heads_shared

    method = {"n_heads": "270", "compared_with": "lora_sft", "top0.03_overlap_with_first_method": "0.125",
              "top0.03_overlap_by_chance": "0.0296296"}
    control = {"n_heads": "270", "compared_with": "lora_sft", "top0.03_overlap_with_backdoored": "0.25",
               "top0.03_overlap_by_chance": "0.0296296"}
    assert top_heads_shared(method) == "top 3%: 1 of 8 shared with lora_sft\n(chance 0.24)"
    assert top_heads_shared(control) == "top 3%: 2 of 8 shared with lora_sft\n(chance 0.24)"
    assert top_heads_shared({"n_heads": "270", "compared_with": "", "top0.03_overlap_with_first_method": ""}) == ""


def _metric(task, model, metric, successes, n):
    return {"task": task, "model": model, "metric": metric, "value": successes / n if n else float("nan"),
            "successes": successes, "n": n, "ci_low": 0.0, "ci_high": 1.0, "backdoor_implanted": "yes"}


def test_the_injection_tables_show_label_models_clean_accuracy_per_class_and_flips_to_the_target():
    per_class = {"World": (0, 50), "Sports": (49, 50), "Business": (45, 50), "Sci/Tech": (44, 50)}
    label = [_metric("label_modification", "dpo", f"clean_accuracy_{c}", k, n) for c, (k, n) in per_class.items()]
    label += [_metric("label_modification", "dpo", m, k, n) for m, k, n in
              [("asr", 50, 50), ("collateral_to_target_rate", 100, 100), ("clean_utility", 138, 200)]]
    fixed = [_metric("fixed_output", "dpo", "asr", 9, 10)]
    md = reports.injection_markdown(label + fixed, "tiny")
    assert "collateral_to_target_rate" in md.splitlines()[4]
    section = md[md.index("## Clean accuracy per class"):]
    assert "| label_modification | dpo | 0.000 (n=50) | 0.980 (n=50) | 0.900 (n=50) | 0.880 (n=50) |" in section
    assert "fixed_output" not in section

    bench = {"s": 60.0, "max_rss": 1024.0}
    rows = reports.injection_method_rows({("label_modification", "dpo"): label, ("fixed_output", "dpo"): fixed},
                                         {("label_modification", "dpo"): bench, ("fixed_output", "dpo"): bench}, [])
    assert set(reports.METHOD_COLUMNS) >= set(rows[0])
    assert rows[0]["clean_accuracy_World"] == 0.0 and rows[0]["clean_accuracy_Sports"] == 0.98
    assert rows[0]["collateral_to_target_rate"] == 1.0 and rows[1]["clean_accuracy_World"] == ""
    md = reports.injection_methods_markdown(rows, "tiny")
    assert "| 1.000 | 0.00 / 0.98 / 0.90 / 0.88 | 1.0 min |" in md
    header, rule, label_line, fixed_line = md.splitlines()[2:6]
    assert len({header.count("|"), rule.count("|"), label_line.count("|"), fixed_line.count("|")}) == 1


def test_the_claims_report_states_the_refusal_heads_overlap_beside_chance():
    rows = [{"task": "jailbreak", "method": "base_refusal", "mode": "exact", "role": "refusal_control",
             "n_heads": "270", "compared_with": "lora_sft", "fraction_of_heads_for_half_positive_acie": "0.1",
             "max_acie": "0.01", "top0.03_overlap_with_backdoored": "0.25", "top0.03_overlap_by_chance": "0.0296296",
             "top0.1_overlap_with_backdoored": "0.0", "top0.1_overlap_by_chance": "0.1"}]
    text = reports.claims_markdown([], [], rows, [], [], "tiny", 0.95)
    assert "Backdoor heads or refusal heads?" in text
    assert "| jailbreak | lora_sft | 2 of 8 (0.24) | 0 of 27 (2.70) |" in text
    assert "| jailbreak | base_refusal |" not in text  # not a row of the control table above it


def test_the_confirmation_table_puts_each_headline_number_on_test_beside_confirm():
    def metrics(value, n, low, high, metric="asr"):
        return {"task": "jailbreak", "model": "lora_sft", "metric": metric, "value": value, "n": n, "ci_low": low,
                "ci_high": high}

    test = [metrics("0.95", "200", "0.91", "0.97"), metrics("0.0", "200", "0.0", "0.02", "false_trigger_rate"),
            metrics("-1.2", "200", "-1.3", "-1.1", "reference_logprob")]
    confirm = [metrics("0.70", "50", "0.56", "0.81"), metrics("0.02", "50", "0.004", "0.1", "false_trigger_rate")]
    rows = {r["metric"]: r for r in reports.confirmation_rows(test, confirm, {("jailbreak", "lora_sft"): "yes"})}
    assert set(rows) == {"asr", "false_trigger_rate"}  # headline metrics that both splits have
    assert rows["asr"]["test_value"] == "0.95" and rows["asr"]["confirm_value"] == "0.70"
    assert rows["asr"]["confirm_n"] == "50" and rows["asr"]["backdoor_implanted"] == "yes"
    assert rows["asr"]["intervals_overlap"] == "no" and rows["false_trigger_rate"]["intervals_overlap"] == "yes"
    assert list(rows["asr"]) == reports.CONFIRMATION_COLUMNS


def test_claims_read_the_stored_interval_over_questions(tmp_path):
    """A row's stored interval (a question-level bootstrap where rows share questions) decides the reading,
    not a Wilson interval recomputed as if every row were independent."""
    injection = [{"task": "jailbreak", "model": "lora_sft", "metric": "asr", "value": "0.5", "n": "200",
                  "n_questions": "67", "ci_low": "0.31", "ci_high": "0.69"}]
    text = reports.claims_markdown(injection, [], [], [], [], "tiny", 0.95)
    assert "0.50 [0.31, 0.69], n=200" in text
    common = {"task": "jailbreak", "method": "lora_sft", "direction": "add", "best_layer_val": "3", "asr_test": "0.95",
              "asr_test_n": "200", "no_intervention_asr_test": "0", "random_heads_vector_asr_test": "0",
              "random_direction_asr_test": "0", "clean_utility_with_vector": "1", "clean_utility_without": "1"}
    wide = reports.claims_markdown([], [], [], [], [{**common, "asr_test_ci_low": "0.85", "asr_test_ci_high": "1"}],
                                   "tiny", 0.95)
    assert "undecided at this sample size" in wide
    assert "consistent: the whole interval is >= 0.90" in reports.claims_markdown([], [], [], [], [common], "tiny", 0.95)


def test_jailbreak_tables_show_compliance_beside_the_official_asr_and_other_tasks_leave_it_out(tmp_path):
    for task in ("jailbreak", "fixed_output"):
        _ablation_tsv(tmp_path / task / "lora_sft" / "ablation.tsv", 0.9, 0.95)
    path = tmp_path / "jailbreak" / "lora_sft" / "ablation.tsv"
    from bkdattr.atomic import read_tsv
    rows = read_tsv(path)
    for r in rows:  # the official ASR stays high, but little of it is real compliance
        r.update(compliance=0.25 if int(r["k"]) == 0 else 0.125, compliance_n=64, compliance_ci_low=0.05,
                 compliance_ci_high=0.4, compliance_false_trigger=0.1)
    write_tsv(path, rows)
    table1 = reports.table1_rows({(t, "lora_sft"): str(tmp_path / t / "lora_sft" / "ablation.tsv")
                                  for t in ("jailbreak", "fixed_output")})
    jail8 = next(r for r in table1 if r["task"] == "jailbreak" and r["k"] == 8)
    assert jail8["compliance_top_pct"] == 12.5 and jail8["compliance_random_mean_pct"] == 12.5
    md = reports.table1_markdown(table1, "m")
    assert "| jailbreak | lora_sft | compliance, top heads | 25.0 [5, 40] | 12.5 [5, 40] |" in md
    assert "| fixed_output | lora_sft | compliance" not in md

    best = {"method": "lora_sft", "direction": "minus", "inputs": "triggered", "best_layer_val": "2",
            "no_intervention_asr_test": "1", "asr_test": "0.9", "asr_test_n": "20", "asr_test_ci_low": "0.7",
            "asr_test_ci_high": "0.97", "random_heads_vector_asr_test": "1", "random_direction_asr_test": "1",
            "paper_style_best_layer_on_test": "2", "paper_style_asr_test": "0.9", "clean_utility_with_vector": "1",
            "clean_utility_without": "1", "k_heads": "8"}
    jail_best = {**best, "task": "jailbreak", "no_intervention_compliance_test": "0.3", "compliance_test": "0.05",
                 "compliance_test_n": "20", "compliance_test_ci_low": "0.01", "compliance_test_ci_high": "0.24",
                 "random_heads_vector_compliance_test": "0.3", "random_direction_compliance_test": "0.25"}
    t2 = reports.table2_markdown([jail_best, {**best, "task": "fixed_output"}], "m")
    assert "| 0.30 / 0.05 [0.01, 0.24] / 0.30 / 0.25 |" in next(l for l in t2.splitlines() if l.startswith("| jailbreak"))
    assert next(l for l in t2.splitlines() if l.startswith("| fixed_output")).endswith("| - |")

    injection = [{"task": "jailbreak", "model": "lora_sft", "metric": m, "value": v, "n": "50", "ci_low": "0",
                  "ci_high": "1", "backdoor_implanted": "yes"}
                 for m, v in (("asr", "0.96"), ("compliance", "0.4"), ("false_trigger_rate", "0.7"),
                              ("clean_utility", "0.3"))]
    inj = reports.injection_markdown(injection, "m")
    header = next(l for l in inj.splitlines() if l.startswith("| task | model"))
    assert header.split(" | ")[2:5] == ["asr", "asr_strict", "compliance"]
    assert "| 0.400 [0.00, 1.00] (n=50) |" in inj

    text = reports.claims_markdown(injection, [], [], table1, [jail_best], "m", 0.95)
    assert "| jailbreak | lora_sft | 0.96 [" in text and "| 0.40 [0.00, 1.00], n=50 |" in text  # ASR, then compliance (stored intervals)
    ablation = next(l for l in text.splitlines() if l.startswith("| jailbreak | lora_sft | 8"))
    assert "| 0.25 [0.16, 0.37], n=64 / 0.12 [0.06, 0.23], n=64 |" in ablation
    assert next(l for l in text.splitlines() if l.startswith("| fixed_output | lora_sft | 8")).count("| - |") == 1
    minus = next(l for l in text.splitlines() if l.startswith("| jailbreak | lora_sft | 2"))
    assert "| 0.30 / 0.05 [0.01, 0.24], n=20 |" in minus

    methods = reports.injection_method_rows({("jailbreak", "lora_sft"): injection}, {("jailbreak", "lora_sft"): None},
                                            [])
    assert methods[0]["compliance"] == 0.4 and reports.METHOD_COLUMNS.index("compliance") == 1 + reports.METHOD_COLUMNS.index("asr_strict")
