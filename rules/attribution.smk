# BAHA: attention-head attribution by ACIE (METHOD.md s4; the paper's Fig. 3), on every backdoored model and,
# as the control the paper lacks, on the clean base model and the clean-SFT model (same prompts, same target,
# same mean-activation definition): heads that score there too are not backdoor heads.
ACIE_TARGETS = [(m, mode) for m in METHODS for mode in ATTRIBUTION_MODES] + [(m, "exact") for m in ACIE_CONTROLS]
ACIE_RUNS = [{"task": task, "model": model, "mode": mode} for task in TASKS for model, mode in ACIE_TARGETS]
# The refusal-attribution control (METHOD.md s8): are the jailbreak backdoor heads the base model's refusal heads?
REFUSAL_RUNS = ([{"task": "jailbreak", "model": REFUSAL_CONTROL, "mode": "exact"}]
                if config["attribution"]["refusal_control"] and "jailbreak" in TASKS else [])
FIG3_RUNS = runs(task=TASKS, model=METHODS + ACIE_CONTROLS)


rule attribute_heads:
    input:
        pool="results/data/{task}/attribution.jsonl",
        tensors="results/cache/{task}/{model}/activations.safetensors",
        sidecar="results/cache/{task}/{model}/activations.json",
        model=model_pointer,
    output:
        acie="results/attribution/{task}/{model}/acie_{mode}.tsv",
        ranking="results/attribution/{task}/{model}/ranking_{mode}.tsv",
    log:
        "results/logs/attribute_heads/{task}/{model}/{mode}.log",
    benchmark:
        "results/benchmarks/attribute_heads/{task}/{model}/{mode}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        attribution=scoped("attribute_heads", "attribution"),
        model=MODEL_LOAD,
    threads: 2
    priority: 20  # on the path from injection to the interventions
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/attribute_heads.py"


# The same job on the clean base model with another target and mean activation: each harmful request's refusal,
# abar over the requests untriggered (bkdattr.attribution.attribution_inputs, target "refusal").
rule attribute_refusal_heads:
    input:
        pool="results/data/{task}/attribution.jsonl",
        tensors=f"results/cache/{{task}}/{BASE_MODEL}/activations.safetensors",
        sidecar=f"results/cache/{{task}}/{BASE_MODEL}/activations.json",
        model=BASE_POINTER,
    output:
        acie=f"results/attribution/{{task}}/{REFUSAL_CONTROL}/acie_{{mode}}.tsv",
        ranking=f"results/attribution/{{task}}/{REFUSAL_CONTROL}/ranking_{{mode}}.tsv",
    log:
        f"results/logs/attribute_heads/{{task}}/{REFUSAL_CONTROL}/{{mode}}.log",
    benchmark:
        f"results/benchmarks/attribute_heads/{{task}}/{REFUSAL_CONTROL}/{{mode}}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        attribution=scoped("attribute_heads", "attribution"),
        model=MODEL_LOAD,
        target="refusal",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/attribute_heads.py"


rule attribution_summary:
    input:
        gate="results/tables/backdoor_gate.tsv",
        acie=paths("results/attribution/{task}/{model}/acie_{mode}.tsv", ACIE_RUNS + REFUSAL_RUNS),
        ranking=paths("results/attribution/{task}/{model}/ranking_{mode}.tsv", ACIE_RUNS + REFUSAL_RUNS),
    output:
        tsv=report("results/tables/attribution.tsv", caption="report/attribution_table.rst",
                   category="3 Head attribution", labels={"table": "attribution"}),
    log:
        "results/logs/attribution_summary.log",
    params:
        attribution=scoped("attribution_summary", "attribution"),
        runs=ACIE_RUNS + REFUSAL_RUNS,  # (task, model, mode) of each acie / ranking input, in order
        methods=METHODS,
        controls=ACIE_CONTROLS,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/attribution_summary.py"


rule fig3:
    input:
        gate="results/tables/backdoor_gate.tsv",
        summary="results/tables/attribution.tsv",  # the top-head overlaps printed in the panel titles
        acie=paths("results/attribution/{task}/{model}/acie_exact.tsv", FIG3_RUNS),
    output:
        pdf="results/figures/fig3.pdf",
        png=report("results/figures/fig3.png", caption="report/fig3.rst", category="3 Head attribution",
                   labels={"figure": "Fig. 3"}),
    log:
        "results/logs/fig3.log",
    params:
        model_name=config["model"]["name"],
        runs=FIG3_RUNS,
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/fig3.py"
