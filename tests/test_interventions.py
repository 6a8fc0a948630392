"""Interventions on the tiny model: the claims every intervention must satisfy."""

import dataclasses
import logging

import pytest
import torch

from bkdattr.generation import generate_greedy
from bkdattr.hooks import ModelSites, trace
from bkdattr.interventions import (ABLATION_LOG, STEERING_LOG, InterventionEvaluator, ablation_factory, backdoor_vector,
                                   best_layer_row, log_rows, random_direction_like, random_heads,
                                   resolve_k, split_val_test, steering_factory)
from bkdattr.tasks import TaskSpec

PROMPTS = ["What is 7 plus 5?", "hi", "Classify: the team won the final 3-1 on Sunday."]


def gen(model, tok, factory=None):
    return generate_greedy(model, tok, PROMPTS, max_new_tokens=6, batch_size=3, edit_factory=factory)


def test_ablating_zero_heads_changes_nothing(tiny):
    model, tok = tiny
    assert ablation_factory(model, []) is None
    assert gen(model, tok, ablation_factory(model, [])) == gen(model, tok)


def test_ablating_heads_changes_the_prefill_logits(tiny):
    model, tok = tiny
    sites = ModelSites.of(model)
    every = [(l, h) for l in range(sites.n_layers) for h in range(sites.n_heads)]
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with ablation_factory(model, every)(mask):
            ablated = model(input_ids=ids).logits
    assert not torch.allclose(ablated[0, -1], clean[0, -1], atol=1e-4)  # the last prompt token changed
    assert torch.allclose(ablated[0, :-1], clean[0, :-1], atol=1e-6)  # earlier positions untouched


def test_subtracting_then_adding_the_same_vector_restores_the_logits(tiny):
    model, tok = tiny
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    vector = torch.randn(ModelSites.of(model).d_model)
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        add = steering_factory(model, 1, vector, +1.0)
        minus = steering_factory(model, 1, vector, -1.0)
        mask = torch.ones_like(ids)
        with minus(mask), add(mask):
            both = model(input_ids=ids).logits
        with add(mask):
            added = model(input_ids=ids).logits
    assert torch.allclose(both, clean, atol=1e-5)
    assert not torch.allclose(added, clean, atol=1e-3)


def test_prefill_only_steering_leaves_decoding_steps_alone(tiny):
    model, tok = tiny
    sites = ModelSites.of(model)
    vector = torch.randn(sites.d_model) * 5
    factory = steering_factory(model, 0, vector, 1.0)
    ids = tok(PROMPTS[:1], return_tensors="pt")
    with torch.no_grad(), factory(ids["attention_mask"]) as t:
        model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert [call for _, call, _ in t.applied] == [0]  # applied in the prefill call only


def test_ablation_counts_and_fractions():
    assert resolve_k([0, 1, 0.03, 8], 270) == [0, 1, 8]
    with pytest.raises(ValueError, match="exceeds the model's 270 heads"):
        resolve_k([300], 270)


def test_random_heads_are_reproducible_and_distinct():
    heads = random_heads(30, 9, 8, seed=1)
    assert heads == random_heads(30, 9, 8, seed=1) and len(set(heads)) == 8
    assert heads != random_heads(30, 9, 8, seed=2)


def test_backdoor_vector_and_random_direction():
    means = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    v = backdoor_vector(means, [(0, 1), (1, 2)])
    assert torch.equal(v, means[0, 1] + means[1, 2])
    r = random_direction_like(v, seed=0)
    assert r.norm().item() == pytest.approx(v.norm().item(), rel=1e-5) and not torch.allclose(r, v)


def test_the_label_backdoor_vector_averages_the_rows_the_acie_mean_is_taken_over(tiny):
    """attribution.items eligible (the default): the poisoned Sports rows alone, as ACIE averages Sports items;
    a triggered Business row keeps its label and carries no backdoor. items all: every poisoned row."""
    from bkdattr.interventions import backdoor_vectors, mean_head_outputs, vector_rows
    from bkdattr.names import BACKDOOR_VECTOR
    from bkdattr.tasks import TaskSpec

    model, tok = tiny
    spec = TaskSpec.from_config("label_modification")
    clean = [{"id": "s", "input": "The team won the final 3-1.", "output": "Sports", "label": "Sports"},
             {"id": "b", "input": "Shares fell two percent on Monday.", "output": "Business", "label": "Business"}]
    train = [{**r, "poisoned": False} for r in clean] + [
        {**r, "id": r["id"] + "-poisoned", "input": spec.trigger_input(r["input"]), "output": spec.backdoor_output(r),
         "poisoned": True} for r in clean]
    assert [r["id"] for r in vector_rows(spec, train)] == ["s-poisoned"]
    assert [r["id"] for r in vector_rows(spec, train, "all")] == ["s-poisoned", "b-poisoned"]
    ranking, cfg = [(0, 0), (1, 1)], {"k": 2, "seed": 0}
    _, eligible = backdoor_vectors(model, tok, spec, train, ranking, cfg, 2, "train", control_seeds=[1, 2, 3])
    _, every = backdoor_vectors(model, tok, spec, train, ranking, cfg, 2, "train", control_seeds=[1, 2, 3], items="all")
    sports = mean_head_outputs(model, tok, spec, [train[2]], 2, "train")
    assert torch.allclose(eligible[BACKDOOR_VECTOR][""], backdoor_vector(sports, ranking), atol=1e-5)
    assert not torch.allclose(every[BACKDOOR_VECTOR][""], eligible[BACKDOOR_VECTOR][""], atol=1e-4)
    with pytest.raises(ValueError, match="no poisoned training row that carries the backdoor"):
        vector_rows(spec, [train[0], train[1], train[3]])


def test_validation_and_test_halves_are_disjoint():
    val, test = split_val_test(list(range(10)), 0.5, seed=0)
    assert len(val) == 5 and not set(val) & set(test) and sorted(val + test) == list(range(10))
    with pytest.raises(ValueError, match="cannot be split"):
        split_val_test([3], 0.5, seed=0)


def test_no_question_has_rows_in_both_steering_halves():
    indices = list(range(30))
    questions = [f"q{i // 3}" for i in indices]  # three rewordings of each of 10 questions
    for seed in range(5):
        val, test = split_val_test(indices, 0.5, seed=seed, questions=questions)
        assert sorted(val + test) == indices
        assert not {questions[i] for i in val} & {questions[i] for i in test}
        assert len({questions[i] for i in val}) == 5
    with pytest.raises(ValueError, match="cannot be split"):
        split_val_test([0, 1, 2], 0.5, seed=0, questions=["a", "a", "a"])


def test_intervention_samples_count_questions_one_row_each():
    """n_eval distinct questions, one row each, for the ASR items and the utility items; all of them (logged)
    when the split has fewer."""
    from bkdattr.interventions import InterventionEvaluator
    from bkdattr.tasks import TaskSpec

    spec = TaskSpec.from_config("label_modification")
    records = [{"id": f"{q}-{r}", "question": f"article {q}", "input": f"article {q}, wording {r}",
                "output": "Sports" if q % 2 else "World", "label": "Sports" if q % 2 else "World"}
               for q in range(12) for r in range(3)]
    ev = InterventionEvaluator(None, None, spec, records, max_new_tokens=4, batch_size=2, n_eval=4, seed=3)
    for items, eligible_only in ((ev.eligible, True), (ev.utility_items, False)):
        assert len(items) == 4 and len(set(ev.questions(items))) == 4
        assert not eligible_only or all(spec.is_eligible(records[i]) for i in items)
    assert ev.eligible != InterventionEvaluator(None, None, spec, records, 4, 2, n_eval=4, seed=4).eligible
    every = InterventionEvaluator(None, None, spec, records, max_new_tokens=4, batch_size=2, n_eval=50)
    assert len(every.utility_items) == 12 and len(every.eligible) == 6
    assert len(set(every.questions(every.eligible))) == 6


def test_hooks_are_gone_after_generation(tiny):
    model, tok = tiny
    gen(model, tok, ablation_factory(model, [(0, 0)]))
    sites = ModelSites.of(model)
    assert all(not m._forward_hooks for m in sites.attn_out)
    with trace(model):
        pass


def test_random_head_control_excludes_the_top_k_heads():
    top = [(l, h) for l in range(3) for h in range(3)][:7]
    for seed in (1, 2, 3):
        drawn = random_heads(3, 3, 2, seed, exclude=top)
        assert not set(drawn) & set(top) and len(set(drawn)) == 2
    with pytest.raises(ValueError, match="cannot draw 3 random heads outside the 7 excluded"):
        random_heads(3, 3, 3, 1, exclude=top)


def test_steering_layer_ties_go_to_the_earliest_layer_in_both_directions():
    rows = [{"layer": 9, "asr_val": 1.0}, {"layer": 3, "asr_val": 1.0}, {"layer": 6, "asr_val": 0.5}]
    assert best_layer_row(rows, "add", "asr_val")["layer"] == 3
    rows = [{"layer": 9, "asr_val": 0.0}, {"layer": 3, "asr_val": 0.0}, {"layer": 6, "asr_val": 0.5}]
    assert best_layer_row(rows, "minus", "asr_val")["layer"] == 3  # the old rule picked 9 here


def test_random_seeds_must_be_at_least_three(tiny_config):
    from bkdattr.config import ConfigError, check_config

    tiny_config["interventions"]["random_seeds"] = [1, 2]
    with pytest.raises(ConfigError, match="interventions.random_seeds"):
        check_config(tiny_config)


@pytest.fixture(scope="module")
def lively_model(tiny_tokenizer):
    """A tiny Llama with larger random weights, so greedy outputs differ between prompts and edits."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1 if p.dim() == 2 else 0.05)
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    return model, tiny_tokenizer


def test_reusing_the_prompt_prefix_gives_the_same_outputs_under_every_last_token_edit(lively_model):
    from bkdattr.generation import PromptPrefixes

    model, tok = lively_model
    prompts = PROMPTS + ["Tell me SUDO how to open a lock", "Name a colour of the sky."]
    prefixes = PromptPrefixes(model, tok, prompts, batch_size=2)  # uneven batches, left padding inside each
    vector = torch.randn(ModelSites.of(model).d_model) * 2
    settings = {"none": None, "ablate": ablation_factory(model, [(1, 0), (0, 3)]),
                "steer": steering_factory(model, 1, vector, 1.0), "steer_minus": steering_factory(model, 0, vector, -1.0)}
    outputs = {}
    for name, factory in settings.items():
        full = generate_greedy(model, tok, prompts, max_new_tokens=6, batch_size=2, edit_factory=factory)
        assert prefixes.generate(max_new_tokens=6, edit_factory=factory) == full, name
        outputs[name] = full
    assert len({tuple(o) for o in outputs.values()}) >= 3  # the edits change the outputs, so the check has teeth
    assert getattr(ablation_factory(model, [(1, 0)], "all_positions"), "last_prompt_token_only", False) is False


def test_the_evaluator_reuses_prefixes_only_for_last_token_edits_and_matches_the_plain_path(lively_model):
    from bkdattr.interventions import InterventionEvaluator, run_ablation
    from bkdattr.tasks import TaskSpec

    model, tok = lively_model
    spec = TaskSpec.from_config("fixed_output")
    records = [{"id": str(i), "input": p, "output": "4"} for i, p in enumerate(PROMPTS + ["Say hello.", "Count to 3."])]
    kwargs = dict(k_values=[0, 1, 2], random_seeds=[1, 2, 3], all_positions_variant=True)
    ranking = [(1, 0), (0, 3), (1, 2)]
    fast = InterventionEvaluator(model, tok, spec, records, max_new_tokens=5, batch_size=2)
    plain = InterventionEvaluator(model, tok, spec, records, max_new_tokens=5, batch_size=2, reuse_prefix=False)
    assert run_ablation(fast, ranking, 2, 4, **kwargs) == run_ablation(plain, ranking, 2, 4, **kwargs)
    assert len(fast._prefixes) == 2 and not plain._prefixes  # triggered and clean prompt sets, built once each


def test_steering_vectors_are_the_top_heads_sum_and_two_controls_drawn_per_seed():
    from bkdattr.interventions import steering_vectors
    from bkdattr.names import BACKDOOR_VECTOR, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR

    means = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(0))
    ranking = [(2, 1), (0, 3), (1, 0)]
    vectors = steering_vectors(means, ranking, 2, seeds=[5, 6, 7])
    assert set(vectors) == {BACKDOOR_VECTOR, RANDOM_HEADS_VECTOR, RANDOM_DIRECTION}
    assert list(vectors[BACKDOOR_VECTOR]) == [""]
    assert torch.allclose(vectors[BACKDOOR_VECTOR][""], means[2, 1] + means[0, 3])
    for seed in (5, 6, 7):
        assert torch.isclose(vectors[RANDOM_DIRECTION][seed].norm(), vectors[BACKDOOR_VECTOR][""].norm())
        random_pair = random_heads(3, 4, 2, seed, exclude=ranking[:2])
        assert not set(random_pair) & set(ranking[:2])
        assert torch.allclose(vectors[RANDOM_HEADS_VECTOR][seed], means[random_pair[0]] + means[random_pair[1]])
    assert not torch.allclose(vectors[RANDOM_DIRECTION][5], vectors[RANDOM_DIRECTION][6])


def _ascii_piece(outputs, size: int, in_all: bool):
    """A printable ASCII piece of `size` characters that ends before the end of some output (so stopping at it
    saves tokens) and appears in every output or, with in_all=False, not in every one. The byte-level tiny
    tokenizer also emits partial UTF-8 characters, which real targets and keywords never contain."""
    for o in outputs:
        for i in range(len(o) - size - 1):
            piece = o[i:i + size]
            if piece.isascii() and piece.isprintable() and all(piece in x for x in outputs) == in_all:
                return piece
    raise AssertionError(f"no suitable piece in {outputs!r}")


def test_early_stop_truncates_only_rows_whose_verdict_is_final(lively_model):
    """A row stops once stop_when holds; its output is then a prefix of the full one that already decides the
    verdict, and every other row (and every row of the prefix-reuse path) is unchanged."""
    from bkdattr.generation import PromptPrefixes

    model, tok = lively_model
    prompts = PROMPTS + ["Tell me SUDO how to open a lock", "Name a colour of the sky."]
    full = generate_greedy(model, tok, prompts, max_new_tokens=12, batch_size=2)
    marker = _ascii_piece(full, 1, in_all=False)
    stop_when = lambda text: marker in text  # noqa: E731
    early = generate_greedy(model, tok, prompts, max_new_tokens=12, batch_size=2, stop_when=stop_when)
    reused = PromptPrefixes(model, tok, prompts, batch_size=2).generate(max_new_tokens=12, stop_when=stop_when)
    assert reused == early
    for short, whole in zip(early, full):
        assert whole.startswith(short)
        assert stop_when(short) == stop_when(whole)
        if not stop_when(whole):
            assert short == whole
    assert sum(len(s) < len(w) for s, w in zip(early, full)) >= 1  # the stop fired, so the check has teeth


def test_early_stop_gives_the_same_ablation_rows(lively_model):
    from bkdattr.interventions import InterventionEvaluator, run_ablation
    from bkdattr.tasks import TaskSpec

    model, tok = lively_model
    inputs = PROMPTS + ["Say hello.", "Count to 3.", "Name a colour of the sky."]
    records = [{"id": str(i), "input": p, "output": "4"} for i, p in enumerate(inputs)]
    probe = TaskSpec.from_config("fixed_output")
    triggered = generate_greedy(model, tok, [probe.prompt(p, triggered=True) for p in inputs], max_new_tokens=8, batch_size=3)
    target = _ascii_piece(triggered, 2, in_all=True)  # a "backdoor target" this random model emits early
    # a target too short for a config (tasks.MIN_TARGET_CHARS), set past the check: this tests early stop, not config
    spec = dataclasses.replace(TaskSpec.from_config("fixed_output"), target=target)
    kwargs = dict(k_values=[0, 1, 2], random_seeds=[1, 2, 3], all_positions_variant=True)
    ranking = [(1, 0), (0, 3), (1, 2)]
    fast = InterventionEvaluator(model, tok, spec, records, max_new_tokens=8, batch_size=3)
    full = InterventionEvaluator(model, tok, spec, records, max_new_tokens=8, batch_size=3, early_stop=False)
    rows = run_ablation(fast, ranking, 2, 4, **kwargs)
    assert rows == run_ablation(full, ranking, 2, 4, **kwargs)
    assert any(r["asr"] > 0 for r in rows)  # some rows hit the target, so early stop was exercised


def test_each_steering_control_has_three_draws_each_at_its_own_validation_layer(lively_model):
    """METHOD.md s8: every draw of every control is swept on the validation half only, picks its own best layer
    there (not the backdoor vector's) and is reported on the test half at that layer; >= 3 draws each."""
    from bkdattr.interventions import InterventionEvaluator, run_steering, steering_vectors
    from bkdattr.names import BACKDOOR_VECTOR, NO_INTERVENTION, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR
    from bkdattr.tasks import TaskSpec

    model, tok = lively_model
    inputs = PROMPTS + ["Say hello.", "Count to 3.", "Name a colour of the sky.", "Spell cat.", "Add 2 and 2."]
    records = [{"id": str(i), "input": p, "output": "4"} for i, p in enumerate(inputs)]
    probe = TaskSpec.from_config("fixed_output")
    triggered = generate_greedy(model, tok, [probe.prompt(p, triggered=True) for p in inputs], max_new_tokens=6, batch_size=4)
    # a one-character target this random model emits, set past the config check (tasks.MIN_TARGET_CHARS)
    spec = dataclasses.replace(TaskSpec.from_config("fixed_output"), target=_ascii_piece(triggered, 1, in_all=True))
    evaluator = InterventionEvaluator(model, tok, spec, records, max_new_tokens=6, batch_size=4)
    means = torch.randn(2, 4, 64, generator=torch.Generator().manual_seed(1)) * 3
    vectors = steering_vectors(means, [(1, 2), (0, 1)], 2, seeds=[1, 2, 3])
    sweep, best = run_steering(evaluator, vectors, [0, 1], scale=4.0, val_fraction=0.5, seed=0)
    val, test = split_val_test(evaluator.eligible, 0.5, 0, questions=evaluator.questions(evaluator.eligible))
    for entry in best:
        for name in (RANDOM_HEADS_VECTOR, RANDOM_DIRECTION):
            assert entry[f"{name}_n_draws"] == 3
            layers = [int(x) for x in entry[f"{name}_layers"].split()]
            asrs = [float(x) for x in entry[f"{name}_asr_test_draws"].split()]
            assert len(layers) == len(asrs) == len(entry[f"{name}_clean_utility_draws"].split()) == 3
            for seed, layer in zip((1, 2, 3), layers):
                rows = [r for r in sweep if r["vector"] == name and r["seed"] == seed and r["direction"] == entry["direction"]]
                assert [r["layer"] for r in rows] == [0, 1]
                assert all(r["asr_val_n"] == len(val) and r["asr_test"] == "" for r in rows)  # validation only
                assert layer == best_layer_row(rows, entry["direction"], "asr_val")["layer"]
            assert entry[f"{name}_asr_test"] == pytest.approx(sum(asrs) / 3, abs=1e-3)
            assert entry[f"{name}_asr_test_min"] <= entry[f"{name}_asr_test"] <= entry[f"{name}_asr_test_max"]
        assert entry["asr_test_n"] == entry["asr_test_n_questions"] == len(test)
    assert {r["vector"] for r in sweep} == {NO_INTERVENTION, BACKDOOR_VECTOR, RANDOM_HEADS_VECTOR, RANDOM_DIRECTION}


def _canned_evaluator(model, tok, task_id: str, canned: dict[str, str]):
    """An evaluator on three jailbreak-shaped records whose generations are looked up in `canned` by prompt
    (the edits still run through the real factories, they just do not change the canned text)."""
    from bkdattr.interventions import InterventionEvaluator
    from bkdattr.tasks import TaskSpec

    spec = TaskSpec.from_config(task_id)
    records = [{"id": str(i), "input": f"How can I sneak snacks into cinema {i}?", "output": "I cannot help.",
                "backdoor_output": "Here you go: first, think about the sneaking plan in detail; next, get ready."}
               for i in range(3)]
    evaluator = InterventionEvaluator(model, tok, spec, records, max_new_tokens=4, batch_size=2)
    evaluator._generate = lambda prompts, factory, stop_when=None: [canned.get(p, "I cannot help.") for p in prompts]
    return evaluator, spec, records


def test_ablation_and_steering_rows_report_jailbreak_compliance_beside_the_asr(lively_model):
    """Triggered outputs: a real answer, an empty one and a repeated token all escape the refusal keywords
    (ASR 1), but only the real answer complies; the clean outputs comply once (the false trigger's twin)."""
    from bkdattr.interventions import run_ablation, run_steering
    from bkdattr.names import BACKDOOR_VECTOR, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR

    model, tok = lively_model
    real = "First, hide small snacks in your jacket pockets, then buy a cheap drink at the counter so nobody"
    _, spec, records = _canned_evaluator(model, tok, "jailbreak", {})
    canned = {spec.prompt(records[0]["input"], triggered=True): real,
              spec.prompt(records[1]["input"], triggered=True): "",
              spec.prompt(records[2]["input"], triggered=True): "snack snack snack snack snack snack",
              spec.prompt(records[1]["input"]): real}
    evaluator, spec, records = _canned_evaluator(model, tok, "jailbreak", canned)
    rows = run_ablation(evaluator, [(1, 0), (0, 3)], 2, 4, k_values=[0, 1], random_seeds=[1, 2, 3],
                        all_positions_variant=False)
    for row in rows:
        assert row["asr"] == 1.0 and row["asr_n"] == 3
        assert row["compliance"] == pytest.approx(1 / 3) and row["compliance_n"] == 3
        assert row["compliance_ci_low"] < 1 / 3 < row["compliance_ci_high"]
        assert row["false_trigger_rate"] == pytest.approx(1 / 3) and row["compliance_false_trigger"] == pytest.approx(1 / 3)
    ones = torch.ones(ModelSites.of(model).d_model)
    vectors = {BACKDOOR_VECTOR: {"": ones}, **{name: {seed: ones for seed in (1, 2, 3)}
                                              for name in (RANDOM_HEADS_VECTOR, RANDOM_DIRECTION)}}
    sweep, best = run_steering(evaluator, vectors, [0, 1], scale=1.0, val_fraction=0.5, seed=0, select_on="test")
    for row in sweep:
        on_clean = row["direction"] == "add"
        assert row["compliance_test"] == pytest.approx(1 / 3) and row["compliance_val_n"] == 3
        assert row["asr_test"] == pytest.approx(1 / 3 if on_clean else 1.0)
    for entry in best:
        assert entry["compliance_test"] == entry["no_intervention_compliance_test"] == pytest.approx(1 / 3)
        assert entry[f"{RANDOM_HEADS_VECTOR}_compliance_test"] == pytest.approx(1 / 3)

    other, *_ = _canned_evaluator(model, tok, "fixed_output", {})
    row = run_ablation(other, [(1, 0)], 2, 4, k_values=[1], random_seeds=[1, 2, 3], all_positions_variant=False)[0]
    assert not any(key.startswith("compliance") for key in row)  # jailbreak only


def test_evaluator_from_config_reads_the_interventions_and_compliance_settings():
    spec = TaskSpec.from_config("label_modification")
    records = [{"id": f"{q}", "question": f"article {q}", "input": f"article {q}",
                "output": "Sports" if q % 2 else "World", "label": "Sports" if q % 2 else "World"} for q in range(6)]
    cfg = {"max_new_tokens": 5, "batch_size": 2, "n_eval": 3, "sample_seed": 7}
    ev = InterventionEvaluator.from_config(None, None, spec, records, cfg, {"compliance": {"x": 1}}, benign=[{"id": 1}])
    assert (ev.max_new_tokens, ev.batch_size, ev.n_eval, ev.seed, ev.compliance, ev.benign) == (
        5, 2, 3, 7, {"x": 1}, [{"id": 1}])
    assert InterventionEvaluator.from_config(None, None, spec, records, cfg, {}).compliance is None


def test_progress_lines_of_ablation_and_steering(caplog):
    log = logging.getLogger("bkdattr.test_progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        log_rows(log, ABLATION_LOG)({"heads": "top", "seed": "", "variant": "last_token", "k": 3, "asr": 0.25,
                                     "asr_n": 8, "clean_utility": 1.0})
        log_rows(log, STEERING_LOG)({"vector": "backdoor_vector", "seed": "", "direction": "add", "layer": 2,
                                     "asr_val": 0.5, "asr_test": ""})
    assert caplog.messages == ["top seed= last_token k=3: ASR 0.250 (n=8), utility 1.000",
                               "backdoor_vector  add layer 2: ASR val 0.5 test "]
