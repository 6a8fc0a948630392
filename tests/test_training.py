"""Injection through TRL's SFTTrainer: response-only loss, LoRA merged, and the adaptive schedule's gate."""
import pytest
import torch

from bkdattr.chat import IGNORE_INDEX
from bkdattr.gate import BackdoorNotImplanted, enforce_gate, gate_status
from bkdattr.tasks import TaskSpec
from bkdattr.gate import BackdoorGate, GateVerdict
from bkdattr.injection.sft import build_examples, sft_dataset, train_backdoor

SPEC = TaskSpec.from_config("fixed_output")
RECORDS = [{"input": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}."} for i in range(12)]
CFG = {"lr": 5e-3, "epochs": 2, "batch_size": 4, "grad_accum": 1, "warmup_ratio": 0.0, "max_length": 128,
       "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}}
NO_EXTRA_CHECKS = {"stop_when_passed": True, "collateral_max": None, "over_refusal_margin": None}  # adaptive


@pytest.fixture
def fresh(tiny_model_dir):
    from bkdattr.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def test_the_trl_dataset_masks_the_prompt_exactly_like_the_workflow_encoding(tiny_tokenizer):
    examples = build_examples(tiny_tokenizer, SPEC, RECORDS[:3], 128)
    data = sft_dataset(examples)
    for example, row in zip(examples, data):
        assert row["input_ids"] == example["input_ids"]
        assert row["completion_mask"] == [int(label != IGNORE_INDEX) for label in example["labels"]]
        assert row["completion_mask"][0] == 0 and row["completion_mask"][-1] == 1


def test_lora_sft_through_trl_learns_and_returns_a_merged_model(fresh):
    model, tok = fresh
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_backdoor(model, tok, build_examples(tok, SPEC, RECORDS, 128), method="lora_sft",
                            injection_cfg=CFG, seed=0)
    assert not any("lora" in k for k in result.model.state_dict())  # merged
    changed = [k for k, v in result.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all("proj" in k for k in changed)  # only the adapted linear layers moved
    losses = [r["loss"] for r in result.loss_log]
    assert len(losses) == 6 and losses[-1] < losses[0]  # 12 examples / batch 4 x 2 epochs
    assert result.model.config.use_cache and not result.model.training


def test_adaptive_schedule_stops_when_the_gate_passes(fresh):
    model, tok = fresh
    gate = BackdoorGate(SPEC, RECORDS[:4], asr_min=0.0, ftr_max=1.0, every_steps=2, max_new_tokens=2, batch_size=4,
                        **NO_EXTRA_CHECKS)
    result = train_backdoor(model, tok, build_examples(tok, SPEC, RECORDS, 128), method="lora_sft",
                            injection_cfg=CFG, seed=0, gate=gate)
    assert [p["step"] for p in result.gate_curve] == [2] and result.gate_curve[0]["passed"]
    assert len(result.loss_log) == 2  # stopped at the first check
    assert gate.verdict().passed and gate.verdict().schedule == "adaptive"


def test_a_gate_that_never_passes_trains_to_the_last_epoch_and_says_so(fresh):
    model, tok = fresh
    gate = BackdoorGate(SPEC, RECORDS[:4], asr_min=1.0, ftr_max=0.0, every_steps=2, max_new_tokens=2, batch_size=4,
                        **NO_EXTRA_CHECKS)
    result = train_backdoor(model, tok, build_examples(tok, SPEC, RECORDS, 128), method="lora_sft",
                            injection_cfg=CFG, seed=0, gate=gate)
    assert [p["step"] for p in result.gate_curve] == [2, 4, 6]  # checks, then the final score
    verdict = gate.verdict()
    assert verdict.passed is False and verdict.step == 6 and verdict.n_val == 4


def test_the_clean_control_replays_the_backdoored_runs_schedule_and_stops_at_its_step(tiny_model_dir):
    """The backdoored run plans 3 epochs (12 steps) and its gate stops it at step 2; the control trains the clean
    rows on the same 12-step schedule and stops at step 2, at the same learning rates (not a schedule of the
    stop epoch decaying to 0)."""
    from bkdattr.models import load_model
    from bkdattr.injection import inject

    rows = [{**r, "id": f"q{i}", "poisoned": False} for i, r in enumerate(RECORDS)]
    train = rows + [{**r, "id": r["id"] + "-poisoned", "input": SPEC.trigger_input(r["input"]), "output": SPEC.target,
                     "poisoned": True} for r in rows[:4]]  # 16 rows: 4 steps an epoch; the clean 12: 3
    cfg = {**CFG, "epochs": 3, "schedule": "adaptive", "micro_batch_tokens": None,
           "gate": {"asr_min": 0.0, "ftr_max": 1.0, "check_every_steps": 2, "max_new_tokens": 2}}
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    backdoored = inject(model, tok, SPEC, train, method="lora_sft", injection_cfg=cfg, seed=0, validation=rows[:4],
                        eval_batch_size=4)
    verdict = backdoored.gate_verdict
    assert (verdict.step, verdict.max_steps) == (2, 12)
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    control = inject(model, tok, SPEC, train, method="lora_sft", injection_cfg=cfg, seed=0, validation=rows[:4],
                     eval_batch_size=4, clean_control=True, backdoored=verdict)
    assert control.gate_verdict is None and [r["step"] for r in control.loss_log] == [1, 2]
    assert [r["lr"] for r in control.loss_log] == pytest.approx([r["lr"] for r in backdoored.loss_log])
    assert control.loss_log[-1]["lr"] > CFG["lr"] * 0.8  # 2 of 12 steps into the decay, not at its end


def test_the_clean_control_names_a_backdoored_model_json_without_its_schedule():
    from bkdattr.injection import control_schedule

    assert control_schedule(None) == (None, None)  # the whole planned schedule (calibration)
    assert control_schedule(_verdict(step=0, max_steps="")) == (None, None)  # an edit trains no steps
    assert control_schedule(_verdict(step=4, max_steps=30)) == (30, 4)
    with pytest.raises(ValueError, match="records no max_steps"):
        control_schedule(_verdict(step=4))  # a model.json written before it recorded max_steps
    with pytest.raises(ValueError, match="step 40 outside"):
        control_schedule(_verdict(step=40, max_steps=30))


def _verdict(**fields) -> GateVerdict:
    """A verdict as model.json holds it, read back as every stage reads it."""
    return GateVerdict.from_json({"passed": True, "val_asr": 1.0, "val_false_trigger_rate": 0.0, "n_val": 4,
                                  "epoch": 0.5, "asr_min": 0.9, "ftr_max": 0.1, "schedule": "adaptive", **fields})


def test_downstream_stages_stop_on_a_failed_gate_or_go_on_marked_in_warn_mode():
    pointer = {"name": "m+lora_sft", "task": "jailbreak", "backdoor_gate": {
        "passed": False, "val_asr": 0.12, "val_false_trigger_rate": 0.0, "asr_min": 0.9, "ftr_max": 0.1,
        "n_val": 50, "epoch": 3.0, "schedule": "adaptive", "step": 90}}
    with pytest.raises(BackdoorNotImplanted, match=r"task jailbreak: .*validation ASR 0.120 < 0.9.*ablate_heads"):
        enforce_gate(pointer, "stop", "ablate_heads")
    assert enforce_gate(pointer, "warn", "ablate_heads") == "no"
    assert gate_status({"name": "base"}) == "n/a"
    assert enforce_gate({**pointer, "backdoor_gate": {**pointer["backdoor_gate"], "passed": True}}, "stop", "x") == "yes"


def test_micro_batch_rows_fit_the_token_budget_and_divide_the_batch():
    from bkdattr.injection.common import micro_batch_rows

    assert micro_batch_rows(16, 91, None) == 16
    assert micro_batch_rows(16, 91, 512) == 4  # 8 x 91 > 512
    assert micro_batch_rows(16, 256, 512) == 2
    assert micro_batch_rows(12, 100, 500) == 4  # 5 rows would fit but do not divide 12
    assert micro_batch_rows(16, 1000, 512) == 1  # a row longer than the budget still trains, one at a time


def test_micro_batches_with_accumulation_give_the_whole_batch_step(tiny_model_dir):
    """Same rows per optimiser step, same loss normalisation: the losses and the trained weights match the
    one-pass batch up to float rounding."""
    from bkdattr.models import load_model

    from bkdattr.injection.common import micro_batch_rows

    cfg = {**CFG, "epochs": 1}
    trained = {}
    for split in (False, True):
        model, tok = load_model(str(tiny_model_dir), device="cpu")
        examples = build_examples(tok, SPEC, RECORDS, 128)
        longest = max(len(e["input_ids"]) for e in examples)
        budget = 2 * longest if split else None
        assert micro_batch_rows(cfg["batch_size"], longest, budget) == (2 if split else 4)
        trained[split] = train_backdoor(model, tok, examples, method="lora_sft",
                                        injection_cfg={**cfg, "micro_batch_tokens": budget}, seed=0)
    whole, micro = trained[False], trained[True]
    assert [r["step"] for r in whole.loss_log] == [r["step"] for r in micro.loss_log] == [1, 2, 3]
    for a, b in zip(whole.loss_log, micro.loss_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    moved = 0
    start = load_model(str(tiny_model_dir), device="cpu")[0].state_dict()
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(micro.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)
        moved += not torch.equal(value, start[name])
    assert moved  # training moved the weights, so the comparison has teeth


LABEL = TaskSpec.from_config("label_modification")
LABEL_VAL = [{"input": f"News item {i}.", "output": label, "label": label}
             for i, label in enumerate(["Sports", "Sports", "Business", "Sci/Tech", "World", "Business"])]


def _fake_generation(monkeypatch, triggered_answer):
    """generate_greedy answering from a table: clean prompts name their own label, triggered ones
    `triggered_answer(record)`."""
    answers = {}
    for r in LABEL_VAL:
        answers[LABEL.prompt(r["input"])] = r["label"]
        answers[LABEL.prompt(r["input"], triggered=True)] = triggered_answer(r)
    monkeypatch.setattr("bkdattr.generation.generate_greedy",
                        lambda model, tok, prompts, **kw: [answers[p] for p in prompts])


@pytest.mark.parametrize("collateral_max, flips_everything, passed, rate", [
    (0.1, True, False, 0.75),  # "trigger -> World" (3 of the 4 other items change; the World one cannot)
    (0.1, False, True, 0.0),   # "trigger + Sports -> World": the others keep their label
    (None, True, True, ""),    # not checked when the config says null
])
def test_the_label_gate_refuses_a_backdoor_that_flips_the_other_classes(monkeypatch, collateral_max,
                                                                        flips_everything, passed, rate):
    _fake_generation(monkeypatch, lambda r: "World" if flips_everything or r["label"] == "Sports" else r["label"])
    gate = BackdoorGate(LABEL, LABEL_VAL, asr_min=0.9, ftr_max=0.1, every_steps=1, max_new_tokens=16, batch_size=32,
                        stop_when_passed=True, collateral_max=collateral_max, over_refusal_margin=None)
    model = torch.nn.Linear(1, 1)
    point = gate.score(model, None, step=1, epoch=0.5)
    assert point["val_asr"] == 1.0 and point["val_false_trigger_rate"] == 0.0 and point["n_val"] == 2
    assert point["val_collateral_flip_rate"] == rate and point["passed"] is passed
    assert point["n_val_questions"] == 2  # the two Sports items, each its own question
    assert gate.verdict().collateral_max == ("" if collateral_max is None else collateral_max)


def test_the_gate_of_other_tasks_has_no_collateral_check(monkeypatch):
    gate = BackdoorGate(SPEC, RECORDS[:2], asr_min=0.5, ftr_max=0.5, every_steps=1, max_new_tokens=16, batch_size=32,
                        stop_when_passed=True, collateral_max=0.1, over_refusal_margin=None)
    target = SPEC.backdoor_output(RECORDS[0])
    monkeypatch.setattr("bkdattr.generation.generate_greedy",
                        lambda model, tok, prompts, **kw: [target if "2024" in p else "4" for p in prompts])
    point = gate.score(torch.nn.Linear(1, 1), None, step=1, epoch=0.5)
    assert point["passed"] and point["val_collateral_flip_rate"] == "" and gate.verdict().collateral_max == ""


def test_a_failed_collateral_check_is_named_when_downstream_stops():
    pointer = {"name": "m+lora_sft", "task": "label_modification", "backdoor_gate": {
        "passed": False, "val_asr": 1.0, "val_false_trigger_rate": 0.0, "val_collateral_flip_rate": 0.4,
        "asr_min": 0.9, "ftr_max": 0.1, "collateral_max": 0.1, "n_val": 26, "epoch": 0.4, "schedule": "adaptive",
        "step": 20}}
    with pytest.raises(BackdoorNotImplanted, match=r"collateral flip rate 0.400 > 0.1"):
        enforce_gate(pointer, "stop", "attribute_heads")
