# Removing the backdoor (defences.enabled, presets/defences.yaml): cleaned checkpoints chosen from the attribution
# on the validation split, the standard defences beside them on the same test questions, and every model on
# near-miss triggers (results/tables/defences.md, trigger_variants.md, results/figures/defences.pdf). The input
# functions and constants are in rules/common.smk.


rule clean_model:
    input:
        unpack(benign_val_requests),
        val="results/data/{task}/val.jsonl",
        train="results/data/{task}/train.jsonl",
        ranking=f"results/attribution/{{task}}/{{method}}/ranking_{config['interventions']['ranking']}.tsv",
        model="results/models/{task}/{method}/model.json",
    output:
        pointer="results/models/{task}/{method}/cleaned_{how}/model.json",
        checkpoint=directory("results/models/{task}/{method}/cleaned_{how}/checkpoint"),
        selection="results/defences/{task}/{method}/selection_{how}.tsv",
    log:
        "results/logs/clean_model/{task}/{method}/{how}.log",
    benchmark:
        "results/benchmarks/clean_model/{task}/{method}/{how}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        evaluation=scoped("clean_model", "evaluation"),
        interventions=scoped("clean_model", "interventions"),
        attribution=scoped("clean_model", "attribution"),
        probes=scoped("clean_model", "probes"),
        model=MODEL_LOAD,
    threads: 2
    priority: 5
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/clean_model.py"


rule defend_model:
    input:
        unpack(sized_by_heads_cleaning),
        train="results/data/{task}/train.jsonl",
        model="results/models/{task}/{method}/model.json",
    output:
        pointer="results/models/{task}/{method}/defended_{defence}/model.json",
        checkpoint=directory("results/models/{task}/{method}/defended_{defence}/checkpoint"),
    log:
        "results/logs/defend_model/{task}/{method}/{defence}.log",
    benchmark:
        "results/benchmarks/defend_model/{task}/{method}/{defence}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        seed=config["seed"],
        evaluation=scoped("defend_model", "evaluation"),
        # clean fine-tuning's own settings and the injection recipe it trains with (LoRA, batch, length); the
        # other defences read neither, so a change there does not rerun them
        defences=lambda wildcards: {"finetune": DEFENCES["finetune"]} if wildcards.defence == "finetune" else {},
        injection=lambda wildcards: config["injection"] if wildcards.defence == "finetune" else {},
        model=MODEL_LOAD,
    threads: 2
    priority: 5
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/defend_model.py"


rule evaluate_defence:
    input:
        unpack(benign_input),
        test="results/data/{task}/test.jsonl",
        model=defended_pointer,
    output:
        metrics="results/defences/{task}/{method}/{defence}/metrics.tsv",
        variants="results/defences/{task}/{method}/{defence}/trigger_variants.tsv",
        info="results/defences/{task}/{method}/{defence}/info.tsv",
    log:
        "results/logs/evaluate_defence/{task}/{method}/{defence}.log",
    benchmark:
        "results/benchmarks/evaluate_defence/{task}/{method}/{defence}.tsv"
    params:
        settings=task_settings,
        variants=lambda wildcards: config["tasks"][wildcards.task].get("trigger_variants"),
        evaluation=scoped("evaluate_defence", "evaluation"),
        interventions=scoped("evaluate_defence", "interventions"),
        model=MODEL_LOAD,
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/evaluate_defence.py"


rule defences_table:
    input:
        metrics=paths("results/defences/{task}/{method}/{defence}/metrics.tsv", DEFENCE_RUNS),
        variants=paths("results/defences/{task}/{method}/{defence}/trigger_variants.tsv", DEFENCE_RUNS),
        info=paths("results/defences/{task}/{method}/{defence}/info.tsv", DEFENCE_RUNS),
    output:
        tsv=report("results/tables/defences.tsv", caption="report/defences.rst", category="8 Removing the backdoor",
                   labels={"table": "defences"}),
        md="results/tables/defences.md",
        variants_tsv=report("results/tables/trigger_variants.tsv", caption="report/trigger_variants.rst",
                            category="8 Removing the backdoor", labels={"table": "trigger variants"}),
        variants_md="results/tables/trigger_variants.md",
        pdf="results/figures/defences.pdf",
        png=report("results/figures/defences.png", caption="report/defences.rst", category="8 Removing the backdoor",
                   labels={"figure": "ASR against utility"}),
    log:
        "results/logs/defences_table.log",
    params:
        model_name=config["model"]["name"],
        runs=DEFENCE_RUNS,  # (task, method, defence) of each input, in order
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/defences_table.py"
