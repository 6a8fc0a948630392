# ASR, false-trigger rate and clean utility of the base model and of each backdoored model.


METHOD_RUNS = runs(task=TASKS, method=METHODS)


rule evaluate_model:
    input:
        unpack(benign_input),
        test="results/data/{task}/test.jsonl",
        model=model_pointer,
    output:
        metrics=report("results/eval/{task}/{model}/metrics.tsv", caption="report/eval_metrics.rst",
                       category="1 Injection", subcategory="test metrics per model",
                       labels={"task": "{task}", "model": "{model}"}),
        generations="results/eval/{task}/{model}/generations.jsonl",
        # label task: gold class x label named, clean and triggered prompts (other tasks: the header alone)
        confusion="results/eval/{task}/{model}/confusion.tsv",
    log:
        "results/logs/evaluate_model/{task}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate_model/{task}/{model}.tsv"
    params:
        settings=task_settings,
        evaluation=scoped("evaluate_model", "evaluation"),
        model=MODEL_LOAD,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/evaluate_model.py"


# The confirmation split (data.n_confirm): drawn after the design choices were made while looking at the test
# split; the same evaluation of each backdoored model on it (no benign requests: those are the test's).
rule evaluate_confirm:
    input:
        confirm="results/data/{task}/confirm.jsonl",
        model=model_pointer,
    output:
        metrics="results/eval/{task}/{model}/confirm_metrics.tsv",
        generations="results/eval/{task}/{model}/confirm_generations.jsonl",
        confusion="results/eval/{task}/{model}/confirm_confusion.tsv",
    log:
        "results/logs/evaluate_confirm/{task}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate_confirm/{task}/{model}.tsv"
    params:
        settings=task_settings,
        evaluation=scoped("evaluate_model", "evaluation"),
        model=MODEL_LOAD,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/evaluate_model.py"


rule confirmation_table:
    """The headline numbers (ASR, false-trigger rate, clean utility) on test beside the confirmation split."""
    input:
        gate="results/tables/backdoor_gate.tsv",
        test=paths("results/eval/{task}/{method}/metrics.tsv", METHOD_RUNS),
        confirm=paths("results/eval/{task}/{method}/confirm_metrics.tsv", METHOD_RUNS),
    output:
        tsv=report("results/tables/confirmation.tsv", caption="report/confirmation.rst", category="1 Injection",
                   labels={"table": "confirmation"}),
    log:
        "results/logs/confirmation_table.log",
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/confirmation_table.py"


rule injection_table:
    input:
        gate="results/tables/backdoor_gate.tsv",
        metrics=expand("results/eval/{task}/{model}/metrics.tsv", task=TASKS, model=MODELS),
    output:
        tsv=report("results/tables/injection.tsv", caption="report/injection.rst", category="1 Injection",
                   labels={"table": "injection"}),
        md="results/tables/injection.md",
    log:
        "results/logs/injection_table.log",
    params:
        model_name=config["model"]["name"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/injection_table.py"



rule injection_methods_table:
    """Every injection method of injection.methods beside the others (the question the paper could not ask)."""
    input:
        gate="results/tables/backdoor_gate.tsv",
        metrics=paths("results/eval/{task}/{method}/metrics.tsv", METHOD_RUNS),
        benchmarks=paths("results/benchmarks/inject_backdoor/{task}/{method}.tsv", METHOD_RUNS),
        base=paths(f"results/eval/{{task}}/{BASE_MODEL}/metrics.tsv", runs(task=TASKS)),  # each task's reference row
    output:
        tsv=report("results/tables/injection_methods.tsv", caption="report/injection_methods.rst",
                   category="1 Injection", labels={"table": "injection methods"}),
        md="results/tables/injection_methods.md",
    log:
        "results/logs/injection_methods_table.log",
    params:
        model_name=config["model"]["name"],
        runs=METHOD_RUNS,  # (task, method) of each input, in order
        tasks=TASKS,  # of each base input, in order
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/injection_methods_table.py"
