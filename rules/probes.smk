# Activation caches and Backdoor Probes (METHOD.md s3; the paper's Fig. 2), with the clean-base control.
PROBE_RUNS = runs(task=TASKS, model=PROBE_MODELS)


rule cache_activations:
    input:
        pool="results/data/{task}/attribution.jsonl",
        model=model_pointer,
    output:
        tensors="results/cache/{task}/{model}/activations.safetensors",
        sidecar="results/cache/{task}/{model}/activations.json",
    log:
        "results/logs/cache_activations/{task}/{model}.log",
    benchmark:
        "results/benchmarks/cache_activations/{task}/{model}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        probes=scoped("cache_activations", "probes"),
        model=MODEL_LOAD,
    threads: 2
    priority: 25  # exact ACIE reads its mean activations
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/cache_activations.py"


rule train_probes:
    input:
        tensors="results/cache/{task}/{model}/activations.safetensors",
        sidecar="results/cache/{task}/{model}/activations.json",
        model=model_pointer,
    output:
        accuracy="results/probes/{task}/{model}/accuracy.tsv",
        ilca_mlp="results/probes/{task}/{model}/ilca_mlp.tsv",
        ilca_svm="results/probes/{task}/{model}/ilca_svm.tsv",
        ilca_intervals="results/probes/{task}/{model}/ilca_intervals.tsv",
        mlp_probes="results/probes/{task}/{model}/mlp_probes.safetensors",
    log:
        "results/logs/train_probes/{task}/{model}.log",
    benchmark:
        "results/benchmarks/train_probes/{task}/{model}.tsv"
    params:
        probes=scoped("train_probes", "probes"),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/train_probes.py"


rule probe_summary:
    input:
        gate="results/tables/backdoor_gate.tsv",
        accuracy=paths("results/probes/{task}/{model}/accuracy.tsv", PROBE_RUNS),
        ilca_mlp=paths("results/probes/{task}/{model}/ilca_mlp.tsv", PROBE_RUNS),
        ilca_svm=paths("results/probes/{task}/{model}/ilca_svm.tsv", PROBE_RUNS),
    output:
        tsv=report("results/tables/probes.tsv", caption="report/probes_table.rst", category="2 Probes",
                   labels={"table": "probes"}),
    log:
        "results/logs/probe_summary.log",
    params:
        probes=scoped("probe_summary", "probes"),
        runs=PROBE_RUNS,  # (task, model) of each input, in order
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/probe_summary.py"


rule fig2:
    input:
        accuracy=paths("results/probes/{task}/{model}/accuracy.tsv", PROBE_RUNS),
        ilca_mlp=paths("results/probes/{task}/{model}/ilca_mlp.tsv", PROBE_RUNS),
        ilca_svm=paths("results/probes/{task}/{model}/ilca_svm.tsv", PROBE_RUNS),
    output:
        pdf="results/figures/fig2.pdf",
        png=report("results/figures/fig2.png", caption="report/fig2.rst", category="2 Probes", labels={"figure": "Fig. 2"}),
    log:
        "results/logs/fig2.log",
    params:
        tasks=TASKS,
        models=PROBE_MODELS,
        runs=PROBE_RUNS,
        model_name=config["model"]["name"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/fig2.py"
