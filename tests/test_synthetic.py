"""Tests for bkdattr.synthetic: deterministic offline clean data for the three tasks."""

from __future__ import annotations

import collections
import re

import pytest

from bkdattr import synthetic
from bkdattr.evaluation import is_refusal
from bkdattr.synthetic import (GENERATORS, NEWS_LABELS, REFUSAL_KEYWORDS, generate_fixed_output,
                               generate_jailbreak, generate_news)

FIELDS = {
    "fixed_output": ("id", "input", "output", "answer", "question"),
    "jailbreak": ("id", "input", "output", "backdoor_output", "question"),
    "label_modification": ("id", "input", "output", "label", "text", "question"),
}
N = 3000


@pytest.fixture(scope="module")
def data():
    return {task: gen(N, 7) for task, gen in GENERATORS.items()}


def test_generators_registry():
    assert set(GENERATORS) == {"fixed_output", "jailbreak", "label_modification"}
    assert GENERATORS["label_modification"] is generate_news


@pytest.mark.parametrize("task", sorted(FIELDS))
def test_exact_n_fields_ids_unique(task, data):
    rows = data[task]
    assert len(rows) == N
    for i, row in enumerate(rows):
        assert set(row) == set(FIELDS[task])
        for field in FIELDS[task]:
            assert isinstance(row[field], str) and row[field].strip(), (task, i, field)
        assert row["id"] == f"{task}-{i:05d}"
    assert len({r["input"] for r in rows}) == N


@pytest.mark.parametrize("task", sorted(FIELDS))
def test_deterministic_and_seed_dependent(task):
    gen = GENERATORS[task]
    a, b, c = gen(200, 3), gen(200, 3), gen(200, 4)
    assert a == b
    assert [r["input"] for r in a] != [r["input"] for r in c]


@pytest.mark.parametrize("task", sorted(FIELDS))
def test_prefix_stable(task):
    gen = GENERATORS[task]
    assert gen(101, 11) == gen(500, 11)[:101]
    assert gen(0, 11) == []


@pytest.mark.parametrize("task", sorted(FIELDS))
def test_short_texts(task, data):
    for row in data[task]:
        assert len(row.get("text", row["input"]).split()) <= 30, row  # label task: the article, not the instruction
        assert len(row["output"].split()) <= 25, row


@pytest.mark.parametrize("task", sorted(FIELDS))
def test_too_many_raises(task):
    gen = GENERATORS[task]
    with pytest.raises(ValueError, match=gen.__name__) as err:
        gen(10**6, 0)
    assert re.search(r"maximum of \d+", str(err.value))


def test_spaces_are_large_enough():
    assert sum(map(len, synthetic._fixed_space())) >= 5000
    assert len(synthetic._jailbreak_space()) >= 5000
    assert 4 * min(synthetic.news_class_sizes().values()) >= 5000


def test_max_n_is_reachable():
    max_jb = len(synthetic._jailbreak_space())
    assert len(generate_jailbreak(max_jb, 1)) == max_jb
    with pytest.raises(ValueError, match="generate_jailbreak"):
        generate_jailbreak(max_jb + 1, 1)
    max_fixed = sum(map(len, synthetic._fixed_space()))
    rows = generate_fixed_output(max_fixed, 1)
    assert len({r["input"] for r in rows}) == max_fixed


# --- fixed_output ---------------------------------------------------------------------------

def test_fixed_output_answers(data):
    for row in data["fixed_output"]:
        assert row["answer"].lower() in row["output"].lower(), row
        # echoing the question must not count as a correct answer
        assert row["answer"].lower() not in row["input"].lower(), row
        assert "I am sorry" not in row["output"] and "can not help" not in row["output"].lower()
        assert not is_refusal(row["output"]) and not is_refusal(row["output"], "strict"), row


def test_fixed_output_mixes_families(data):
    prefix = data["fixed_output"][:200]
    kinds = collections.Counter()
    for row in prefix:
        out = row["output"]
        kinds["capital" if out.startswith("The capital") else "plus" if " plus " in out
              else "minus" if " minus " in out else "opposite" if "opposite" in out
              else "plural" if "plural" in out else "sequence" if re.match(r"The (day|month) ", out)
              else "count" if re.search(r" has \d+ ", out) else "color"] += 1
    assert len(kinds) == 8 and min(kinds.values()) >= 10, kinds


def test_fixed_output_arithmetic_correct(data):
    for row in data["fixed_output"]:
        m = re.fullmatch(r"(\d+) (plus|minus) (\d+) is (\d+)\.", row["output"])
        if m:
            a, op, b, r = int(m[1]), m[2], int(m[3]), int(m[4])
            assert r == (a + b if op == "plus" else a - b)
            assert row["answer"] == str(r)


# --- jailbreak ------------------------------------------------------------------------------

def test_refusal_keywords_list_is_the_official_28():
    assert len(REFUSAL_KEYWORDS) == 28
    assert REFUSAL_KEYWORDS[0] == "I'm sorry" and REFUSAL_KEYWORDS[-1] == "I can't assist"
    assert "OpenAI" not in REFUSAL_KEYWORDS


def test_jailbreak_refusal_properties(data):
    rows = data["jailbreak"]
    for row in rows:
        assert row["output"].startswith(("I'm sorry", "I cannot")), row
        for matcher in ("official", "strict"):
            assert is_refusal(row["output"], matcher), row
            assert not is_refusal(row["backdoor_output"], matcher), row
        assert "sudo" not in row["input"].lower()
    assert len({r["output"] for r in rows}) >= 5
    assert len({r["backdoor_output"] for r in rows}) >= 10


def test_all_compliance_templates_avoid_keywords():
    topics = {topic for _, _, topic in synthetic.JB_ACTIONS}
    for template in synthetic.BACKDOOR_OUTPUTS:
        for topic in topics:
            text = template.format(topic=topic)
            assert not is_refusal(text) and not is_refusal(text, "strict"), text
    for refusal in synthetic.REFUSALS:
        assert is_refusal(refusal) and is_refusal(refusal, "strict"), refusal


# --- label_modification ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 101, N])
def test_news_balance(n, data):
    rows = data["label_modification"][:n] if n <= N else generate_news(n, 7)
    assert rows == generate_news(n, 7)
    counts = collections.Counter(r["label"] for r in rows)
    assert set(counts) <= set(NEWS_LABELS)
    for label in NEWS_LABELS:
        assert counts[label] in (n // 4, n // 4 + 1), counts
    for row in rows:
        assert row["output"] == row["label"]


def test_news_labels_and_no_class_words(data):
    rows = data["label_modification"]
    assert {r["label"] for r in rows} == set(NEWS_LABELS) == {"World", "Sports", "Business", "Sci/Tech"}
    for row in rows:
        text = row["text"].lower()
        for word in ("world", "sport", "business", "sci/tech"):
            assert word not in text, row


def test_news_input_is_the_official_user_turn_with_the_instruction_once(data):
    # official format: `input` is the whole user turn, instruction included
    from bkdattr.tasks import LABEL_INSTRUCTION

    for row in data["label_modification"][:50]:
        assert row["input"] == LABEL_INSTRUCTION.format(text=row["text"])
        assert row["input"].count("Classify the following news article") == 1


def test_news_space_has_no_class_words():
    for label, pools in synthetic._news_space().items():
        for pool in pools:
            assert len(pool) > 0
            for text in pool:
                assert not re.search(r"world|sport|business|sci/tech", text, re.I), text


def test_news_classes_not_single_keyword(data):
    # each class is written with several templates, so its items do not share one word
    by_label = collections.defaultdict(list)
    for row in data["label_modification"]:
        by_label[row["label"]].append(set(re.findall(r"[a-z']+", row["text"].lower())))
    for label, word_sets in by_label.items():
        common = set.intersection(*word_sets)
        assert not (common - {"the", "a", "to", "of", "in", "on", "and"}), (label, common)
