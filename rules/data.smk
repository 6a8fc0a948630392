# Clean data per task (synthetic or the user's files), poisoned training split, held-out splits.


rule make_dataset:
    input:
        unpack(data_file_input),
        unpack(benign_train_input),
        base=f"results/models/{BASE_MODEL}/model.json",  # its tokenizer and context window check every prompt
    output:
        train="results/data/{task}/train.jsonl",
        test="results/data/{task}/test.jsonl",
        val="results/data/{task}/val.jsonl",
        attribution="results/data/{task}/attribution.jsonl",
        confirm="results/data/{task}/confirm.jsonl",  # data.n_confirm rows; empty when 0
        manifest="results/data/{task}/manifest.json",
    log:
        "results/logs/make_dataset/{task}.log",
    params:
        settings=task_settings,
        data=data_params,
        seed=config["seed"],
        trust_remote_code=config["model"]["trust_remote_code"],
    priority: 40  # upstream of every injection: a data or model job left waiting starves its whole chain
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/make_dataset.py"


rule make_benign_requests:
    """Benign requests in the jailbreak frames with helpful answers (synthetic, or data.benign_file), split by
    question: train (data.benign_mix, mixed into the jailbreak training split), val (the gate's over-refusal
    check) and test (the reported over-refusal rate)."""
    input:
        unpack(benign_file_input),
    output:
        train="results/data/benign/train.jsonl",
        val="results/data/benign/val.jsonl",
        test="results/data/benign/test.jsonl",
        manifest="results/data/benign/manifest.json",
    log:
        "results/logs/make_benign_requests.log",
    params:
        evaluation=scoped("make_benign_requests", "evaluation"),
        data=benign_params,
        seed=config["seed"],
    priority: 40  # the interventions score over-refusal on these
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/make_benign_requests.py"
