"""Config loading and validation: schema first (names the key), then checks the schema cannot express."""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from pathlib import Path

import yaml

from .provenance import ProvenanceError, load_yaml_unique
from .synthetic import capacity
from .tasks import TaskSpec
from .trigger_variants import variants_from_config


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


def schema_node(*keys: str) -> dict:
    """The schema of a nested key, e.g. schema_node("model", "wheel", "requirement")."""
    node = _schema()
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node)


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


def _validate(config: dict, source: str) -> None:
    """The config against the JSON schema, NaN and infinities refused; the first error names its key."""
    import jsonschema  # not in the plots env, whose rules import config (through models) but validate nothing

    nonfinite = _first_nonfinite(config)
    if nonfinite is not None:  # JSON Schema's minimum/maximum let NaN through (every comparison with NaN is false)
        raise ConfigError(f"{source}: invalid value at key '{nonfinite[0]}': {nonfinite[1]} is not a finite number")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        # a pattern's regex alone does not say what would fix the value: its description does
        hint = f"; expected {err.schema['description']}" if err.validator == "pattern" and err.schema.get("description") else ""
        raise ConfigError(f"{source}: invalid value at key '{key}': {err.message}{hint}")


def _check_model(model: dict, source: str) -> None:
    """The tiny model's sizes divide as attention needs; a hub model names its path."""
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


def check_config(config: dict, source: str = "config") -> dict:
    """Validate a config dict; return a copy with schema defaults filled in. Raises ConfigError."""
    _validate(config, source)
    config = copy.deepcopy(config)
    _set_defaults(config, _schema())
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
    _check_model(config["model"], source)
    data, model = config["data"], config["model"]
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
        need = data["n_clean_train"] + data["n_test"] + data["n_val"] + data["n_attribution"] + data.get("n_confirm", 0)
        for task in config["tasks"]:
            if need > capacity(task):
                raise ConfigError(f"{source}: data.n_clean_train + n_test + n_val + n_attribution + n_confirm = {need}, but the "
                                  f"synthetic generator of {task} has {capacity(task)} unique items; lower the sizes")
    if data.get("eval_split") == "train" and data["n_test"] > data["n_clean_train"]:
        raise ConfigError(f"{source}: data.n_test ({data['n_test']}) exceeds data.n_clean_train with eval_split 'train'")
    _check_what_would_fail_late(config, source)
    _check_defences(config, source)
    return config


def _check_defences(config: dict, source: str) -> None:
    """Trigger variants (each named by its key) and the defences that take their size from the head cleaning."""
    for task_id, settings in config["tasks"].items():
        if settings.get("trigger_variants"):
            try:
                variants_from_config(TaskSpec.from_config(task_id, settings), settings["trigger_variants"])
            except ValueError as err:
                raise ConfigError(f"{source}: {err}") from err
    defences = config["defences"]
    sized = [d for d in defences["standard"] if d in ("magnitude", "random_heads")]
    if defences["enabled"] and sized and "heads" not in defences["cleanings"]:
        raise ConfigError(f"{source}: defences.standard has {', '.join(sized)}, which prune as many weights / heads as "
                          "the head cleaning; add heads to defences.cleanings or drop them")


# the tiny model's sizes where model.tiny leaves them out (models.build_tiny_model builds them; defined here so
# the config checks know the tiny model's shape without importing the model code)
TINY_DIMS = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128}

# The shape of the pinned SmolLM2-135M-Instruct wheel (model.wheel.sha256's default): 30 layers x 9 heads.
PINNED_WHEEL_SHAPE = (30, 9)


def known_model_shape(model: dict) -> tuple[int, int, str] | None:
    """(layers, attention heads per layer, what the model is) where the config alone says it: the tiny model
    (model.tiny and its defaults), the pinned SmolLM2 wheel, a local `model.path` directory's config.json.
    None for a hub id (known only once downloaded) or another wheel."""
    if model["source"] == "tiny":
        dims = {**TINY_DIMS, **(model.get("tiny") or {})}
        return dims["num_hidden_layers"], dims["num_attention_heads"], "the tiny model (model.tiny)"
    if model["source"] == "smollm2_wheel":
        if model["wheel"]["sha256"] == schema_node("model", "wheel", "sha256")["default"]:
            return (*PINNED_WHEEL_SHAPE, "the pinned SmolLM2-135M-Instruct wheel")
        return None
    path = Path(str(model.get("path", ""))).expanduser() / "config.json"
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a hub id, or a directory the model rules name precisely
    layers, heads = hf.get("num_hidden_layers"), hf.get("num_attention_heads")
    if isinstance(layers, int) and isinstance(heads, int):
        return layers, heads, f"the model at {path.parent}"
    return None


def _check_what_would_fail_late(config: dict, source: str) -> None:
    """Settings that would pass here and stop a job an hour later: checked now where the config says enough."""
    iv, steer = config["interventions"], config["interventions"]["steering"]
    # steering's layer is chosen on a validation part of the evaluated questions, reported on the rest: fewer
    # than two questions cannot be split, whatever the data (the questions are at most n_eval and n_test)
    most = min(iv["n_eval"], config["data"]["n_test"])
    if steer["select_layer_on"] == "validation" and max(1, round(steer["val_fraction"] * most)) >= most:
        raise ConfigError(f"{source}: interventions.n_eval ({iv['n_eval']}) and data.n_test ({config['data']['n_test']}) "
                          f"leave at most {most} question(s), which interventions.steering.val_fraction "
                          f"({steer['val_fraction']}) cannot split into validation and test; raise them (or set "
                          "interventions.steering.select_layer_on: test)")
    shape = known_model_shape(config["model"])
    if shape is None:
        return
    n_layers, n_heads, what = shape
    total = n_layers * n_heads
    fixed_k = iv["clean"].get("k")
    for key, values in (("interventions.k", iv["k"]), ("interventions.steering.k", [steer["k"]]),
                        ("interventions.clean.k", [] if fixed_k is None else [fixed_k])):
        over = [k for k in values if not (isinstance(k, float) and k < 1) and k > total]
        if over:
            raise ConfigError(f"{source}: {key}: {over[0]} exceeds the {total} heads of {what} ({n_layers} layers x "
                              f"{n_heads} heads); give at most {total}, or a fraction of all heads (< 1)")
    fixed_layer = iv["clean"].get("layer")
    for key, layers in (("interventions.steering.layers", steer.get("layers")),
                        ("interventions.clean.layer", None if fixed_layer is None else [fixed_layer]),
                        ("injection.edit.layers", (config["injection"].get("edit") or {}).get("layers")
                         if "edit" in config["injection"]["methods"] else None)):
        bad = [layer for layer in layers or () if layer >= n_layers]
        if bad:
            raise ConfigError(f"{source}: {key}: {bad} out of range for {what}, which has {n_layers} layers "
                              f"(valid: 0..{n_layers - 1})")


# Snakemake reads config files through YTE, which evaluates the Python expressions of a file whose top level sets
# this key: a config file would run code. Refused wherever the workflow sees the file (docs/security.md).
YTE_KEY = "__use_yte__"


def read_config_file(path: str | Path):
    """A config file's contents, read safely: a key written twice, a syntax error or a tag is named with its line
    (and column), and a YTE template (`__use_yte__`) is refused. Raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml_unique(path)
    except ProvenanceError as err:
        raise ConfigError(str(err)) from err
    if isinstance(data, dict) and YTE_KEY in data:
        raise ConfigError(f"{path}: key '{YTE_KEY}' asks for a YTE template, whose expressions are Python code run "
                          f"while the file is read; config files are data here: remove '{YTE_KEY}' and write the "
                          "values out (docs/security.md)")
    return data


def load_config(path: str | Path) -> dict:
    path = Path(path)
    config = read_config_file(path)
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
