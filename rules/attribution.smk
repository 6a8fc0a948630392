# BAHA: attention-head attribution by ACIE (METHOD.md s4; the paper's Fig. 3).


rule attribute_heads:
    input:
        pool="results/data/{task}/attribution.jsonl",
        tensors="results/cache/{task}/{method}/activations.safetensors",
        sidecar="results/cache/{task}/{method}/activations.json",
        model="results/models/{task}/{method}/model.json",
    output:
        acie="results/attribution/{task}/{method}/acie_{mode}.tsv",
        ranking="results/attribution/{task}/{method}/ranking_{mode}.tsv",
    log:
        "results/logs/attribute_heads/{task}/{method}/{mode}.log",
    benchmark:
        "results/benchmarks/attribute_heads/{task}/{method}/{mode}.tsv"
    params:
        settings=task_settings,
        attribution=attribution_params,
        model=MODEL_LOAD,
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
        acie=expand("results/attribution/{task}/{method}/acie_{mode}.tsv", task=TASKS, method=METHODS,
                    mode=ATTRIBUTION_MODES),
    output:
        tsv="results/tables/attribution.tsv",
    log:
        "results/logs/attribution_summary.log",
    params:
        top_fractions=config["attribution"]["top_fractions"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/attribution_summary.py"


rule fig3:
    input:
        acie=expand("results/attribution/{task}/{method}/acie_exact.tsv", task=TASKS, method=METHODS),
    output:
        pdf=report("results/figures/fig3.pdf", caption="report/fig3.rst", category="Head attribution"),
        png="results/figures/fig3.png",
    log:
        "results/logs/fig3.log",
    params:
        model_name=config["model"]["name"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/fig3.py"
