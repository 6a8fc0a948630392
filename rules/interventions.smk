# Controlling the backdoor: head ablation (Table 1), backdoor vector (Fig. 4, Table 2), claims report.


rule ablate_heads:
    input:
        unpack(benign_input),
        test="results/data/{task}/test.jsonl",
        ranking="results/attribution/{task}/{method}/ranking_exact.tsv",
        model="results/models/{task}/{method}/model.json",
    output:
        tsv="results/interventions/{task}/{method}/ablation.tsv",
    log:
        "results/logs/ablate_heads/{task}/{method}.log",
    benchmark:
        "results/benchmarks/ablate_heads/{task}/{method}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        refusal_matcher=config["evaluation"]["refusal_matcher"],
        interventions=ablation_params,
        model=MODEL_LOAD,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/ablate_heads.py"


rule steer_backdoor_vector:
    input:
        unpack(benign_input),
        train="results/data/{task}/train.jsonl",
        test="results/data/{task}/test.jsonl",
        ranking="results/attribution/{task}/{method}/ranking_exact.tsv",
        model="results/models/{task}/{method}/model.json",
    output:
        sweep="results/interventions/{task}/{method}/steering_sweep.tsv",
        best="results/interventions/{task}/{method}/steering_best.tsv",
    log:
        "results/logs/steer_backdoor_vector/{task}/{method}.log",
    benchmark:
        "results/benchmarks/steer_backdoor_vector/{task}/{method}.tsv"
    params:
        gate_on_fail=GATE_ON_FAIL,
        settings=task_settings,
        refusal_matcher=config["evaluation"]["refusal_matcher"],
        interventions=steering_params,
        model=MODEL_LOAD,
        cache_batch_size=config["probes"]["cache_batch_size"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/steer_backdoor_vector.py"


rule table1:
    input:
        gate="results/tables/backdoor_gate.tsv",
        ablation=expand("results/interventions/{task}/{method}/ablation.tsv", task=TASKS, method=METHODS),
    output:
        tsv="results/tables/table1.tsv",
        md="results/tables/table1.md",
        pdf=report("results/figures/table1.pdf", caption="report/table1.rst", category="Head ablation"),
        png="results/figures/table1.png",
    log:
        "results/logs/table1.log",
    params:
        model_name=config["model"]["name"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/table1.py"


rule table2_and_fig4:
    input:
        gate="results/tables/backdoor_gate.tsv",
        sweep=expand("results/interventions/{task}/{method}/steering_sweep.tsv", task=TASKS, method=METHODS),
        best=expand("results/interventions/{task}/{method}/steering_best.tsv", task=TASKS, method=METHODS),
    output:
        table2_tsv="results/tables/table2.tsv",
        table2_md="results/tables/table2.md",
        fig4_pdf=report("results/figures/fig4.pdf", caption="report/fig4.rst", category="Backdoor vector"),
        fig4_png="results/figures/fig4.png",
    log:
        "results/logs/table2_and_fig4.log",
    params:
        model_name=config["model"]["name"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/table2_and_fig4.py"


rule claims_report:
    input:
        gate="results/tables/backdoor_gate.tsv",
        injection="results/tables/injection.tsv",
        probes="results/tables/probes.tsv",
        attribution="results/tables/attribution.tsv",
        table1="results/tables/table1.tsv",
        table2="results/tables/table2.tsv",
    output:
        md=report("results/claims.md", caption="report/claims.rst", category="Summary"),
    log:
        "results/logs/claims_report.log",
    params:
        model_name=config["model"]["name"],
        threshold=config["probes"]["threshold"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/claims_report.py"
