"""Config loading and validation: schema first (names the key), then checks the schema cannot express."""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path

import yaml

from .tasks import TaskSpec


class ConfigError(ValueError):
    """A config problem; the message names the key and what would fix it."""


def schema_path() -> Path:
    return Path(str(resources.files("bkdattr") / "schemas" / "config.schema.yaml"))


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(schema_path().read_text())


def schema_default(*keys: str):
    """The schema's default of a nested key, e.g. schema_default("data", "synthetic_pool"): the one place a
    default lives, for code that also takes config dicts the schema has not filled."""
    node = _schema()
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])


RERUN_KEY = "x-rerun"  # schema annotation: the rules whose results a key changes (inherited by nested keys)


def rerun_scope(*keys: str) -> list[str]:
    """The rules whose results the key at `keys` changes, e.g. rerun_scope("attribution", "top_fractions"): its own
    `x-rerun` list in the schema, else the nearest enclosing one's ([] = changes no result)."""
    node, scope = _schema(), []
    for key in keys:
        node = node["properties"][key]
        scope = node.get(RERUN_KEY, scope)
    return list(scope)


def settings_for(config: dict, rule: str, section: str) -> dict:
    """The keys of config[section] that change the results of `rule`, by the schema's `x-rerun` scopes.

    A rule's params are built from this, so a rule reruns exactly when a key in its scope changes, and a key
    added to the schema joins the params of every rule of its section's scope without another file edited."""
    dropped = object()  # not None: null is a real setting (e.g. max_target_tokens: null)

    def keep(value, node: dict, scope: list[str]):
        properties = node.get("properties")
        if not isinstance(value, dict) or not properties:
            return value if rule in scope else dropped
        kept = {}
        for key, item in value.items():
            child = properties.get(key, {})
            picked = keep(item, child, child.get(RERUN_KEY, scope))
            if picked is not dropped:
                kept[key] = picked
        return kept or dropped

    node = _schema()["properties"][section]
    kept = keep(config[section], node, node.get(RERUN_KEY, []))
    return {} if kept is dropped else kept


def _set_defaults(instance, schema):
    """Fill `default` values of the schema into the instance (objects only, recursively)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _set_defaults(instance[key], sub)


def _first_nonfinite(value, path: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN or infinite number in a config, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "<top level>", value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_nonfinite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def check_config(config: dict, source: str = "config") -> dict:
    """Validate a config dict; return a copy with schema defaults filled in. Raises ConfigError."""
    import jsonschema

    nonfinite = _first_nonfinite(config)
    if nonfinite is not None:  # JSON Schema's minimum/maximum let NaN through (every comparison with NaN is false)
        raise ConfigError(f"{source}: invalid value at key '{nonfinite[0]}': {nonfinite[1]} is not a finite number")
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"{source}: invalid value at key '{key}': {err.message}")
    config = copy.deepcopy(config)
    _set_defaults(config, schema)
    if config.get("run_tasks"):
        unknown = [t for t in config["run_tasks"] if t not in config["tasks"]]
        if unknown:
            raise ConfigError(f"{source}: run_tasks names {', '.join(map(repr, unknown))}, not a key of `tasks` "
                              f"({', '.join(config['tasks'])})")
        config["tasks"] = {t: config["tasks"][t] for t in config["run_tasks"]}  # in run_tasks' order
    for task_id, settings in config["tasks"].items():
        try:
            TaskSpec.from_config(task_id, settings)
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from err
    if config["interventions"]["ranking"] not in config["attribution"]["modes"]:
        raise ConfigError(f"{source}: interventions.ranking is {config['interventions']['ranking']!r}, which "
                          f"attribution.modes ({', '.join(config['attribution']['modes'])}) does not compute; add it there")
    model = config["model"]
    tiny = model.get("tiny") or {}
    if tiny.get("num_attention_heads") and tiny.get("num_key_value_heads") and \
            tiny["num_attention_heads"] % tiny["num_key_value_heads"]:
        raise ConfigError(f"{source}: model.tiny.num_attention_heads ({tiny['num_attention_heads']}) must be a multiple "
                          f"of model.tiny.num_key_value_heads ({tiny['num_key_value_heads']}) for grouped-query attention")
    if tiny.get("hidden_size") and tiny.get("num_attention_heads") and tiny["hidden_size"] % tiny["num_attention_heads"]:
        raise ConfigError(f"{source}: model.tiny.hidden_size ({tiny['hidden_size']}) must be a multiple of "
                          f"model.tiny.num_attention_heads ({tiny['num_attention_heads']})")
    if model["source"] == "hf" and not model.get("path"):
        raise ConfigError(f"{source}: model.path is required when model.source is 'hf' (a hub id or a local directory)")
    data = config["data"]
    if data["source"] == "files":
        missing = [t for t in config["tasks"] if t not in (data.get("files") or {})]
        if missing:
            raise ConfigError(f"{source}: data.files has no file for task(s) {', '.join(missing)} (data.source is 'files')")
    # Snakemake reads braces in a tracked input path as wildcards ({task} becomes the task's name) while the rule
    # script opens the path as written: the file tracked would not be the file read.
    paths = {f"data.files.{task}": path for task, path in (data.get("files") or {}).items()}
    paths["data.benign_file"] = data.get("benign_file")
    if model["source"] == "hf":
        paths["model.path"] = model.get("path")  # a local checkpoint's files are tracked inputs too
    for key, path in paths.items():
        if isinstance(path, str) and ("{" in path or "}" in path):
            raise ConfigError(f"{source}: {key} is {path!r}: a path with '{{' or '}}' is not supported (the workflow "
                              "would track another file than the one read); name the file literally, one path per "
                              "task (e.g. data.files.jailbreak: data/jailbreak.jsonl), or rename it")
    if data["source"] == "synthetic":
        from .synthetic import capacity

        need = data["n_clean_train"] + data["n_test"] + data["n_val"] + data["n_attribution"] + data.get("n_confirm", 0)
        for task in config["tasks"]:
            if need > capacity(task):
                raise ConfigError(f"{source}: data.n_clean_train + n_test + n_val + n_attribution + n_confirm = {need}, but the "
                                  f"synthetic generator of {task} has {capacity(task)} unique items; lower the sizes")
    if data.get("eval_split") == "train" and data["n_test"] > data["n_clean_train"]:
        raise ConfigError(f"{source}: data.n_test ({data['n_test']}) exceeds data.n_clean_train with eval_split 'train'")
    return config


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return check_config(config, str(path))


def task_injection(config: dict, task: str) -> dict:
    """Injection hyper-parameters for one task: the global ones in inject_backdoor's scope (not the method list
    or the control switch, which choose which models exist) with the task's overrides."""
    return {**settings_for(config, "inject_backdoor", "injection"), **config["tasks"][task].get("injection", {})}


# settings a method's own injection block may set for that method alone (injection.dpo.lr, injection.full_sft.epochs)
METHOD_OVERRIDES = ("lr", "epochs")


def method_injection(settings: dict, method: str) -> dict:
    """A task's injection settings (task_injection) as `method` trains with them: a value the method's own block
    sets (injection.<method>.lr / .epochs, not null) replaces the shared one, the task's override included.
    DPO learns the backdoor at another lr than SFT (README: calibration), so one run can hold both."""
    own = settings.get(method) or {}
    return {**settings, **{key: own[key] for key in METHOD_OVERRIDES if own.get(key) is not None}}


def task_specs(config: dict) -> dict[str, TaskSpec]:
    return {t: TaskSpec.from_config(t, s) for t, s in config["tasks"].items()}
