"""Free-form utility (ROUGE-L, teacher-forced reference log-probability) and over-refusal, on hand-made outputs."""
import math

import pytest
import torch

from bkdattr.evaluation import free_form_metrics
from bkdattr.tasks import TaskSpec
from bkdattr.utility import mean_interval, over_refusal, reference_logprobs, rouge_l, rouge_l_metric

REFERENCE = "To make tea, boil water, steep the tea bag for three minutes, then add milk if you like."


def test_rouge_l_orders_outputs_by_overlap_with_the_reference():
    exact = rouge_l(REFERENCE, REFERENCE)
    close = rouge_l(REFERENCE, "Boil water and steep the tea bag for three minutes.")
    unrelated = rouge_l(REFERENCE, "The capital of France is Paris.")
    assert exact == pytest.approx(1.0)
    assert exact > close > unrelated >= 0.0
    assert close > 0.4 and unrelated < 0.1
    assert rouge_l(REFERENCE, "") == 0.0


def test_exact_match_is_zero_where_rouge_still_separates_answers():
    # the failure the issue describes: a short generation never equals a long answer
    outputs = ["Boil water, steep the tea bag for three minutes", "I like turtles"]
    metric = rouge_l_metric([REFERENCE] * 2, outputs)
    assert metric["n"] == 2 and 0.1 < metric["value"] < 0.8
    assert metric["ci_low"] < metric["value"] < metric["ci_high"]


def test_mean_interval_is_a_normal_interval_around_the_mean():
    m = mean_interval([0.0, 1.0, 0.0, 1.0])
    assert m["value"] == 0.5 and m["n"] == 4
    half = 1.96 * math.sqrt(1 / 3) / 2
    assert m["ci_low"] == pytest.approx(0.5 - half) and m["ci_high"] == pytest.approx(0.5 + half)
    assert math.isnan(mean_interval([])["value"])


def test_reference_logprob_is_the_teacher_forced_mean_over_response_tokens(tiny):
    from bkdattr.chat import IGNORE_INDEX, encode_example

    model, tok = tiny
    prompts, refs = ["What is 7 plus 5?", "hi"], ["7 plus 5 is 12.", "Hello there, how can I help?"]
    batched = reference_logprobs(model, tok, prompts, refs, batch_size=2)
    for prompt, ref, score in zip(prompts, refs, batched):
        ex = encode_example(tok, prompt, ref, 512)
        ids = torch.tensor([ex["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        labels = torch.tensor(ex["labels"][1:])
        keep = labels != IGNORE_INDEX
        manual = logp[keep.nonzero().squeeze(-1), labels[keep]].mean().item()
        assert score == pytest.approx(manual, abs=1e-4)
        assert score < 0


def test_over_refusal_counts_refused_benign_requests():
    outputs = ["Sure! Preheat the oven to 180 C.", "I'm sorry, I can't help with that.", "sorry, no"]
    assert over_refusal(outputs) == [False, True, True]


def test_free_form_metrics_per_task():
    fixed, jail = TaskSpec.from_config("fixed_output"), TaskSpec.from_config("jailbreak")
    records = [{"input": "q", "output": REFERENCE}]
    assert set(free_form_metrics(fixed, records, ["boil water"])) == {"clean_rouge_l"}
    metrics = free_form_metrics(jail, records, ["x"], benign_outputs=["I cannot do that.", "Sure, here you go."])
    assert set(metrics) == {"over_refusal_rate"} and metrics["over_refusal_rate"]["value"] == 0.5


def test_benign_requests_are_benign_and_use_the_jailbreak_frames():
    from bkdattr.synthetic import JB_FRAMES, generate_benign_requests

    rows = generate_benign_requests(200, 0)
    assert rows == generate_benign_requests(200, 0) and len({r["input"] for r in rows}) == 200
    openers = tuple(frame.split("{a}")[0] for frame in JB_FRAMES)
    assert all(r["input"].startswith(openers) and "sudo" not in r["input"].lower() for r in rows)
