# Controlling the backdoor: head ablation (Table 1), backdoor vector (Fig. 4, Table 2), claims report.
INTERVENTION_RUNS = runs(task=TASKS, method=METHODS)


rule ablate_heads:
    input:
        unpack(benign_input),
        test="results/data/{task}/test.jsonl",
        ranking=f"results/attribution/{{task}}/{{method}}/ranking_{config['interventions']['ranking']}.tsv",
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
        evaluation=scoped("ablate_heads", "evaluation"),
        interventions=scoped("ablate_heads", "interventions"),
        model=MODEL_LOAD,
    threads: 2
    priority: 10  # long jobs at the end of the chain
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
        ranking=f"results/attribution/{{task}}/{{method}}/ranking_{config['interventions']['ranking']}.tsv",
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
        evaluation=scoped("steer_backdoor_vector", "evaluation"),
        interventions=scoped("steer_backdoor_vector", "interventions"),
        probes=scoped("steer_backdoor_vector", "probes"),
        attribution=scoped("steer_backdoor_vector", "attribution"),  # items: the rows the vector averages
        model=MODEL_LOAD,
    threads: 2
    priority: 10  # long jobs at the end of the chain
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
        ablation=paths("results/interventions/{task}/{method}/ablation.tsv", INTERVENTION_RUNS),
    output:
        tsv=report("results/tables/table1.tsv", caption="report/table1_table.rst", category="4 Head ablation",
                   labels={"table": "Table 1"}),
        md="results/tables/table1.md",
        pdf="results/figures/table1.pdf",
        png=report("results/figures/table1.png", caption="report/table1.rst", category="4 Head ablation",
                   labels={"figure": "Table 1 as curves"}),
    log:
        "results/logs/table1.log",
    params:
        model_name=config["model"]["name"],
        runs=INTERVENTION_RUNS,  # (task, method) of each input, in order
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/table1.py"


rule table2_and_fig4:
    input:
        gate="results/tables/backdoor_gate.tsv",
        sweep=paths("results/interventions/{task}/{method}/steering_sweep.tsv", INTERVENTION_RUNS),
        best=paths("results/interventions/{task}/{method}/steering_best.tsv", INTERVENTION_RUNS),
    output:
        table2_tsv=report("results/tables/table2.tsv", caption="report/table2.rst", category="5 Backdoor vector",
                          labels={"table": "Table 2"}),
        table2_md="results/tables/table2.md",
        fig4_pdf="results/figures/fig4.pdf",
        fig4_png=report("results/figures/fig4.png", caption="report/fig4.rst", category="5 Backdoor vector",
                        labels={"figure": "Fig. 4"}),
    log:
        "results/logs/table2_and_fig4.log",
    params:
        model_name=config["model"]["name"],
        runs=INTERVENTION_RUNS,
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
        md=report("results/claims.md", caption="report/claims.rst", category="6 Summary", labels={"summary": "claims"}),
    log:
        "results/logs/claims_report.log",
    params:
        model_name=config["model"]["name"],
        probes=scoped("claims_report", "probes"),
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/claims_report.py"


rule summary:
    """results/summary.md: the held-out metrics, Tables 1 and 2, the claims and the figures, from the run's tables."""
    input:
        injection="results/tables/injection.tsv",
        table1="results/tables/table1.tsv",
        table2="results/tables/table2.tsv",
        claims="results/claims.md",
        figures=["results/figures/fig2.png", "results/figures/fig3.png", "results/figures/table1.png",
                 "results/figures/fig4.png"],  # linked from the summary
    output:
        md=report("results/summary.md", caption="report/summary.rst", category="6 Summary",
                  labels={"summary": "headline results"}),
    log:
        "results/logs/summary.log",
    params:
        model_name=config["model"]["name"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/summary.py"
