"""A wrong key or type fails before any job runs, naming the key."""

import copy

import pytest
import yaml

from bkdattr.config import ConfigError, check_config, load_config, task_injection
from conftest import REPO, TINY_CONFIG


@pytest.fixture
def raw():
    return yaml.safe_load(TINY_CONFIG.read_text())


def test_shipped_configs_are_valid():
    for path in [REPO / "config.yaml", TINY_CONFIG, REPO / "presets" / "paper.yaml"]:
        load_config(path)


def _layered(base: dict, overlay: dict) -> dict:
    """Snakemake's --configfile layering: nested mappings merged key by key, the overlay winning."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _layered(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("overlay", ["long_answers.yaml", "injection_methods.yaml"])
def test_overlay_presets_are_valid_on_the_default_config(overlay):
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    layered = check_config(_layered(base, yaml.safe_load((REPO / "presets" / overlay).read_text())), overlay)
    if overlay == "injection_methods.yaml":
        assert layered["injection"]["methods"] == ["lora_sft", "full_sft", "dpo", "edit"]
        assert layered["injection"]["dpo"]["sft_weight"] == 1.0


def test_defaults_are_filled(raw):
    config = check_config(raw)
    assert config["model"]["trust_remote_code"] is False
    assert config["injection"]["grad_accum"] == 1


def edit(raw, dotted, value):
    cfg = copy.deepcopy(raw)
    node = cfg
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


DELETE = object()


@pytest.mark.parametrize("key, value, message", [
    ("data.poison_ratio", 0.0, "data.poison_ratio"),
    ("data.poison_ratio", 1.0, "data.poison_ratio"),
    ("data.poison_ratio", "ten percent", "data.poison_ratio"),
    ("data.n_test", 0, "data.n_test"),
    ("data.n_tset", 5, "'n_tset' was unexpected"),
    ("injection.lr", -1, "injection.lr"),
    ("injection.methods", ["rlhf_magic"], "injection.methods.0"),
    ("injection.epochs", DELETE, "'epochs' is a required property"),
    ("model.source", "ollama", "model.source"),
    ("model.name", "has space", "model.name"),
    ("tasks.jailbreak", {"placement": "middle"}, "tasks.jailbreak.placement"),
    ("tasks.fixed_output", {"triger": "x"}, "'triger' was unexpected"),
    ("seed", -1, "seed"),
    ("evaluation.max_new_tokens", 2.5, "evaluation.max_new_tokens"),
])
def test_schema_errors_name_the_key(raw, key, value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_config(edit(raw, key, value), "cfg.yaml")


def test_unknown_task_is_rejected(raw):
    raw["tasks"]["backdoor_of_doom"] = {}
    with pytest.raises(ConfigError, match="backdoor_of_doom"):
        check_config(raw)


def test_sentence_wrap_trigger_needs_placeholder(raw):
    raw["tasks"]["label_modification"] = {"placement": "sentence_wrap", "trigger": "no placeholder"}
    with pytest.raises(ConfigError, match=r"tasks.label_modification.trigger"):
        check_config(raw)


def test_hf_source_needs_a_path(raw):
    raw["model"] = {"name": "m", "source": "hf"}
    with pytest.raises(ConfigError, match="model.path is required"):
        check_config(raw)


def test_files_source_needs_a_file_per_task(raw):
    raw["data"]["source"] = "files"
    raw["data"]["files"] = {"jailbreak": "j.jsonl"}
    with pytest.raises(ConfigError, match="data.files has no file for task.*fixed_output"):
        check_config(raw)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_per_task_injection_overrides_are_validated(raw):
    raw["tasks"]["jailbreak"] = {"injection": {"epochs": 3}}
    check_config(raw)
    raw["tasks"]["jailbreak"] = {"injection": {"epochz": 3}}
    with pytest.raises(ConfigError, match="'epochz' was unexpected"):
        check_config(raw)


def test_task_injection_applies_the_task_override_and_leaves_out_model_choices():
    config = load_config(REPO / "config.yaml")
    jailbreak, fixed = task_injection(config, "jailbreak"), task_injection(config, "fixed_output")
    assert (jailbreak["lr"], jailbreak["epochs"]) == (2.0e-3, 3) and (fixed["lr"], fixed["epochs"]) == (5.0e-4, 1)
    assert jailbreak["lora"] == fixed["lora"] == config["injection"]["lora"]
    assert not {"methods", "clean_control"} & set(jailbreak)


def test_paper_preset_sets_every_deliberate_difference_to_the_papers_choice():
    from pathlib import Path

    from bkdattr.config import load_config
    from bkdattr.paper import PAPER_CHOICES

    repo = Path(__file__).resolve().parents[1]
    paper = load_config(repo / "presets" / "paper.yaml")
    default = load_config(repo / "config.yaml")
    readme = (repo / "README.md").read_text()
    section = readme.split("## Where we differ from the paper", 1)[1].split("\n## ", 1)[0]
    for dotted, value in PAPER_CHOICES.items():
        def get(cfg):
            for key in dotted.split("."):
                cfg = cfg[key]
            return cfg
        assert get(paper) == value, dotted
        assert get(default) != value, f"{dotted}: the default is the paper's choice, so it is no difference"
        shown = "null" if value is None else value  # as YAML writes it
        assert f"`{dotted}: {shown}`" in section, f"README 'Where we differ' does not give {dotted}: {shown}"
    assert paper["model"]["dtype"] == "bfloat16" and "atp" in paper["attribution"]["modes"]


def test_clearer_config_errors(tiny_config):
    import copy

    from bkdattr.config import ConfigError, check_config

    bad = copy.deepcopy(tiny_config)
    bad["model"]["tiny"]["num_key_value_heads"] = 3
    with pytest.raises(ConfigError, match=r"num_attention_heads \(4\) must be a multiple of model.tiny.num_key_value_heads \(3\)"):
        check_config(bad)
    bad = copy.deepcopy(tiny_config)
    bad["seed"] = 2**40
    with pytest.raises(ConfigError, match="key 'seed'"):
        check_config(bad)
    bad = copy.deepcopy(tiny_config)
    bad["data"]["n_test"] = 10**6
    with pytest.raises(ConfigError, match=r"data.n_clean_train \+ n_test \+ n_val \+ n_attribution \+ n_confirm = \d+, but the "
                                          r"synthetic generator of fixed_output has \d+ unique items"):
        check_config(bad)


def test_run_tasks_selects_the_tasks_that_run_and_names_an_unknown_one(raw):
    config = check_config({**raw, "run_tasks": ["label_modification", "fixed_output"]})
    assert list(config["tasks"]) == ["label_modification", "fixed_output"]
    assert list(check_config(raw)["tasks"]) == list(raw["tasks"])  # null: every task
    with pytest.raises(ConfigError, match=r"run_tasks names 'jailbrake', not a key of `tasks`"):
        check_config({**raw, "run_tasks": ["jailbrake"]})


def test_a_preset_listing_one_task_runs_only_that_task(tmp_path):
    from workflow_utils import planned_jobs, snakemake

    override = tmp_path / "one_task.yaml"
    override.write_text("run_tasks: [jailbreak]\n")
    proc = snakemake(tmp_path, "-n", configfile=[TINY_CONFIG, override])
    jobs = planned_jobs(proc.stdout)
    assert jobs["make_dataset"] == 1 and jobs["inject_backdoor"] == 2 and jobs["evaluate_model"] == 3  # lora_sft + clean_sft


def test_each_rule_gets_the_settings_of_its_rerun_scope_from_the_schema():
    from bkdattr.config import rerun_scope, settings_for

    config = load_config(REPO / "config.yaml")
    assert set(settings_for(config, "attribute_heads", "attribution")) == {"n_prompts", "max_target_tokens", "batch_size", "items"}
    assert settings_for(config, "attribution_summary", "attribution") == {"top_fractions": config["attribution"]["top_fractions"]}
    ablation = settings_for(config, "ablate_heads", "interventions")
    steering = settings_for(config, "steer_backdoor_vector", "interventions")
    assert "steering" not in ablation and {"k", "random_seeds"} <= set(ablation)
    assert steering["steering"] == config["interventions"]["steering"] and "k" not in steering
    injection = settings_for(config, "inject_backdoor", "injection")
    assert "methods" not in injection and "on_fail" not in injection["gate"] and injection["lora"] == config["injection"]["lora"]
    assert settings_for(config, "cache_activations", "injection") == {"gate": {"on_fail": config["injection"]["gate"]["on_fail"]}}
    # null is a setting, not an absent key
    config["attribution"]["max_target_tokens"] = None
    assert settings_for(config, "attribute_heads", "attribution")["max_target_tokens"] is None
    # scopes are inherited from the section unless a key narrows them
    assert rerun_scope("attribution", "n_prompts") == ["attribute_heads"] and rerun_scope("attribution", "modes") == []
    assert rerun_scope("injection", "lora", "r") == rerun_scope("injection")


def test_the_ranking_used_by_the_interventions_must_be_computed(raw):
    raw["interventions"]["ranking"] = "atp"
    raw["attribution"]["modes"] = ["exact", "reference"]
    with pytest.raises(ConfigError, match="interventions.ranking is 'atp'.*attribution.modes"):
        check_config(raw)
    raw["attribution"]["modes"] = ["exact", "atp"]
    assert check_config(raw)["interventions"]["ranking"] == "atp"


def test_a_methods_own_lr_and_epochs_replace_the_shared_and_the_tasks_for_that_method_only(raw):
    from bkdattr.config import method_injection, task_injection

    config = check_config({**raw, "tasks": {**raw["tasks"], "jailbreak": {"injection": {"lr": 1e-3, "epochs": 3}}},
                           "injection": {**raw["injection"], "dpo": {"lr": 2e-3, "sft_weight": 1.0},
                                         "full_sft": {"epochs": 2}}})
    jailbreak = task_injection(config, "jailbreak")
    assert (jailbreak["lr"], jailbreak["epochs"]) == (1e-3, 3)  # the task's own values
    assert method_injection(jailbreak, "dpo")["lr"] == 2e-3 and method_injection(jailbreak, "dpo")["epochs"] == jailbreak["epochs"]
    assert method_injection(jailbreak, "full_sft")["epochs"] == 2 and method_injection(jailbreak, "full_sft")["lr"] == jailbreak["lr"]
    assert method_injection(jailbreak, "lora_sft") == jailbreak  # no block of its own
    assert check_config(raw)["injection"]["dpo"]["lr"] is None  # null: the shared lr
    with pytest.raises(ConfigError, match="injection.dpo.lr|lr"):
        check_config({**raw, "injection": {**raw["injection"], "dpo": {"lr": -1}}})



def test_compliance_settings_default_from_the_schema_and_reach_the_rules_that_measure_them(raw):
    from bkdattr.config import settings_for

    config = check_config(raw)
    assert config["evaluation"]["compliance"] == {"min_words": 5, "max_repeat_share": 0.5, "rouge_l_min": 0.03}
    for rule in ("evaluate_model", "ablate_heads", "steer_backdoor_vector"):
        assert settings_for(config, rule, "evaluation")["compliance"] == config["evaluation"]["compliance"]
    assert "compliance" not in settings_for(config, "inject_backdoor", "evaluation")  # the gate reads the ASR only


@pytest.mark.parametrize("key, value", [("evaluation.compliance.rouge_l_min", float("nan")),
                                        ("evaluation.compliance.max_repeat_share", float("nan")),
                                        ("evaluation.compliance.min_words", 0),
                                        ("injection.lr", float("nan")), ("injection.lr", float("inf"))])
def test_non_finite_or_out_of_range_numbers_fail_naming_the_key(raw, key, value):
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(raw)


def _disagreements(node: dict, value, path: str = "") -> list[str]:
    """Keys `value` (a config) sets whose schema `node` gives another default, recursing through objects."""
    found = []
    for key, sub in node.get("properties", {}).items():
        if not isinstance(value, dict) or key not in value:
            continue
        dotted = f"{path}.{key}" if path else key
        if "properties" in sub:  # an object: its own default ({}) only lets its keys' defaults fill it
            found += _disagreements(sub, value[key], dotted)
        elif "default" in sub and sub["default"] != value[key]:
            found.append(f"{dotted}: schema default {sub['default']!r}, config.yaml {value[key]!r}")
    return found


def test_config_yaml_repeats_the_schema_defaults_it_sets():
    """The schema holds every default (check_config fills them, code reads them with schema_default); config.yaml
    writes many out for the reader, and each one it writes must be the schema's, or the default would depend on
    whether a config was layered on config.yaml."""
    from bkdattr.config import _schema

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert _disagreements(_schema(), config) == []
    # and the check can fail: a changed value is named with its key
    config["interventions"]["steering"]["layer_stride"] += 1
    assert _disagreements(_schema(), config) == [
        f"interventions.steering.layer_stride: schema default 4, config.yaml {config['interventions']['steering']['layer_stride']}"]
