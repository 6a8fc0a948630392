# Glue shared by the rules: the validated config, wildcard values and input functions.
import os

# bkdattr is installed where snakemake runs (the Snakefile checked it)
from bkdattr.config import check_config, settings_for, task_injection

config.update(check_config(config, "config"))

TASKS = list(config["tasks"])
MODEL = config["model"]
MODEL_SETTINGS = {k: v for k, v in MODEL.items() if k != "name"}  # what the base model is; `name` only labels it
METHODS = list(config["injection"]["methods"])
# "clean_sft": the first method trained on the clean items alone, so utility can be compared with a model
# that went through the same fine-tuning without the backdoor.
CONTROLS = ["clean_sft"] if config["injection"]["clean_control"] else []
PROBE_MODELS = ["base"] + METHODS  # "base" = the clean base model, probed and evaluated as a control
MODELS = PROBE_MODELS + CONTROLS  # every model that is evaluated
ACIE_CONTROLS = ["base"] + CONTROLS
GATE_ON_FAIL = config["injection"]["gate"]["on_fail"]  # stages that study a backdoor check it was implanted  # clean models attributed with the backdoored model's prompts and target
ATTRIBUTION_MODES = list(config["attribution"]["modes"])


wildcard_constraints:
    task="|".join(TASKS),
    method="|".join(METHODS),
    model="|".join(MODELS),
    mode="exact|reference|atp",


def task_settings(wildcards):
    """The task's definition (trigger, placement, targets); its injection overrides are not part of it."""
    return {k: v for k, v in config["tasks"][wildcards.task].items() if k != "injection"}


def data_params(wildcards):
    """The data settings that affect this task only (another task's file does not rerun this one)."""
    data = {k: v for k, v in config["data"].items() if k not in ("files", "hf")}
    for key in ("files", "hf"):
        data[key] = {wildcards.task: config["data"][key][wildcards.task]} if wildcards.task in config["data"].get(key, {}) else {}
    return data


def data_file_input(wildcards):
    """The user's data file of this task, tracked as an input: editing it reruns this task's data and all
    that depends on it (and nothing of the other tasks)."""
    if config["data"]["source"] != "files":
        return {}
    return {"data_file": os.path.expanduser(config["data"]["files"][wildcards.task])}


def local_model_files():
    """The files of a local `model.path` checkpoint (source hf), tracked as inputs of prepare_base_model, so a
    swapped weight or config file reruns the whole DAG instead of mixing two models in one results/."""
    path = os.path.expanduser(MODEL.get("path", "")) if MODEL["source"] == "hf" else ""
    if not path or not os.path.isdir(path):
        return []  # a hub id: pinned by the revision recorded in model.json
    from bkdattr.provenance import checkpoint_files

    return [str(p) for p in checkpoint_files(path)]


def benign_input(wildcards):
    """The benign requests (over-refusal rate): jailbreak rules only."""
    return {"benign": "results/data/benign_requests.jsonl"} if wildcards.task == "jailbreak" else {}


def benign_file_input(wildcards):
    """The user's benign-request file, tracked as an input so an edit reruns what depends on it."""
    return {"file": config["data"]["benign_file"]} if config["data"].get("benign_file") else {}


def injection_params(wildcards):
    """Only how this task's model is trained, so adding a method or the control reruns nothing else."""
    return task_injection(config, wildcards.task)


def scoped(rule, section):
    """The settings of config[section] that change `rule`'s results: its rerun scope, read from the schema's
    x-rerun annotations (bkdattr.config.settings_for), never a key list kept here."""
    return settings_for(config, rule, section)


MODEL_LOAD = {k: config["model"].get(k) for k in ("dtype", "trust_remote_code")}


def model_pointer(wildcards):
    """The model.json of the base model, of the model backdoored for this task by this method, or of
    the task's clean-SFT control."""
    if wildcards.model == "base":
        return "results/models/base/model.json"
    return f"results/models/{wildcards.task}/{wildcards.model}/model.json"


def all_targets():
    return [
        "results/tables/injection.tsv",
        "results/tables/injection.md",
        "results/tables/probes.tsv",
        "results/figures/fig2.pdf",
        "results/tables/attribution.tsv",
        "results/figures/fig3.pdf",
        "results/tables/table1.tsv",
        "results/tables/table2.tsv",
        "results/figures/fig4.pdf",
        "results/claims.md",
        "results/report/config.yaml",
        "results/report/versions.tsv",
    ]
