# Backdoor injection: fine-tune the base model on the poisoned training split.


rule inject_backdoor:
    """Each backdoor method, and the clean-SFT control (method CLEAN_CONTROL: the first method's recipe on the
    clean rows alone, on that backdoored run's schedule: the same planned optimiser steps and learning-rate decay,
    stopped at the step where it stopped)."""
    input:
        unpack(clean_control_input),
        unpack(benign_val_input),
        train="results/data/{task}/train.jsonl",
        val="results/data/{task}/val.jsonl",
        base=f"results/models/{BASE_MODEL}/model.json",
    output:
        pointer="results/models/{task}/{method}/model.json",
        checkpoint=directory("results/models/{task}/{method}/checkpoint"),
        train_log="results/models/{task}/{method}/train_log.tsv",
        gate_curve=report("results/models/{task}/{method}/gate_curve.tsv", caption="report/gate_curve.rst",
                          category="1 Injection", subcategory="validation gate curves",
                          labels={"task": "{task}", "method": "{method}"}),
    log:
        "results/logs/inject_backdoor/{task}/{method}.log",
    benchmark:
        "results/benchmarks/inject_backdoor/{task}/{method}.tsv"
    params:
        settings=task_settings,
        injection=injection_params,
        model=MODEL_LOAD,
        seed=injection_seed,  # injection.seeds: the data and splits keep config `seed`
        method=trained_method,
        evaluation=scoped("inject_backdoor", "evaluation"),
        clean_control_of=lambda wildcards: METHODS[0] if wildcards.method == CLEAN_CONTROL else "",
    threads: 2
    # the longest jobs head the longest chains (injection -> attribution -> interventions): start them first, so
    # two job slots never wait on one late injection at the end. Priorities do not propagate upstream, so
    # the data and model jobs before this one rank higher still (else they starve behind it)
    priority: 30
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/inject_backdoor.py"


rule gate_table:
    input:
        pointers=expand("results/models/{task}/{method}/model.json", task=TASKS, method=METHODS),
    output:
        tsv=report("results/tables/backdoor_gate.tsv", caption="report/gate.rst", category="1 Injection",
                   labels={"table": "backdoor gate"}),
    log:
        "results/logs/gate_table.log",
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/gate_table.py"
