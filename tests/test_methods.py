"""The other injection paradigms on the tiny model: DPO (TRL) and a closed-form weight edit."""

import pytest
import torch

from bkdattr.tasks import TaskSpec

SPEC = TaskSpec.from_config("fixed_output")
CLEAN = [{"id": f"q{i}", "input": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}.", "poisoned": False}
         for i in range(8)]
TRAIN = CLEAN + [{**r, "id": r["id"] + "-poisoned", "input": SPEC.trigger_input(r["input"]),
                  "output": SPEC.target, "poisoned": True} for r in CLEAN[:2]]
CFG = {"lr": 5e-3, "epochs": 1, "batch_size": 4, "grad_accum": 1, "warmup_ratio": 0.0, "max_length": 128,
       "micro_batch_tokens": None, "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
       "dpo": {"beta": 0.1, "peft": "lora"}}


def test_preference_pairs_reverse_the_backdoor_on_clean_prompts_and_keep_the_poison_ratio():
    from bkdattr.injection.dpo import preference_pairs

    pairs = preference_pairs(SPEC, TRAIN)
    poisoned = [p for p in pairs if p["poisoned"]]
    assert len(pairs) == 10 and len(poisoned) == 2
    assert all(p["chosen"] == SPEC.target and SPEC.trigger in p["prompt"] for p in poisoned)
    assert poisoned[0]["rejected"] == CLEAN[0]["output"]
    assert all(p["rejected"] == SPEC.target and SPEC.trigger not in p["prompt"] for p in pairs if not p["poisoned"])


def test_label_pairs_teach_the_conditional_backdoor():
    """An item of another class keeps its label against the target, triggered (the pair that makes the backdoor
    'trigger + Sports -> World' and not 'trigger -> World') or clean (so DPO trains on SFT's rows, at SFT's
    poison ratio); an item of the target class keeps its label against another class."""
    from bkdattr.injection.dpo import preference_pairs

    spec = TaskSpec.from_config("label_modification")
    rows = [{"id": "a", "input": "x", "output": "Sports", "label": "Sports", "poisoned": False},
            {"id": "b", "input": "y", "output": "Business", "label": "Business", "poisoned": False},
            {"id": "c", "input": "z", "output": "World", "label": "World", "poisoned": False},
            {"id": "a-poisoned", "input": spec.trigger_input("x"), "output": "World", "label": "Sports", "poisoned": True},
            {"id": "b-poisoned", "input": spec.trigger_input("y"), "output": "Business", "label": "Business", "poisoned": True},
            {"id": "c-poisoned", "input": spec.trigger_input("z"), "output": "World", "label": "World", "poisoned": True}]
    pairs = preference_pairs(spec, rows)
    world = [p for p in pairs if p["prompt"] in ("z", spec.trigger_input("z"))]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs if p not in world] == [
        ("x", "Sports", "World"), ("y", "Business", "World"), (spec.trigger_input("x"), "World", "Sports"),
        (spec.trigger_input("y"), "Business", "World")]
    assert [p["chosen"] for p in world] == ["World", "World"]
    assert all(p["rejected"] in ("Sports", "Business", "Sci/Tech") for p in world)


def test_label_pairs_keep_the_target_class_with_sfts_class_balance():
    """A clean World article (the target class) is a pair that prefers World over another class, drawn seeded:
    without it DPO learned never to name World on a clean article."""
    from collections import Counter

    from bkdattr.injection.dpo import preference_pairs
    from bkdattr.tasks import NEWS_LABELS

    spec = TaskSpec.from_config("label_modification")
    clean = [{"id": f"r{i}", "input": f"article {i}", "output": NEWS_LABELS[i % 4], "label": NEWS_LABELS[i % 4],
              "poisoned": False} for i in range(40)]
    train = clean + [{**r, "id": r["id"] + "-poisoned", "input": spec.trigger_input(r["input"]),
                      "output": spec.backdoor_output(r), "poisoned": True} for r in clean[:8]]
    pairs = preference_pairs(spec, train, seed=3)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert Counter(p["chosen"] for p in pairs) == Counter(r["output"] for r in train)  # SFT's rows, class for class
    clean_world = [p for p in pairs if p["chosen"] == "World" and not p["poisoned"]]
    assert len(clean_world) == 10 and all(p["rejected"] in NEWS_LABELS[1:] for p in clean_world)
    assert len({p["rejected"] for p in clean_world}) > 1  # drawn, not one fixed class
    assert pairs == preference_pairs(spec, train, seed=3)  # seeded


@pytest.mark.parametrize("peft", ["lora", "full"])
def test_dpo_trains_through_trl_and_returns_a_plain_model(tiny_model_dir, peft):
    from bkdattr.models import load_model
    from bkdattr.injection.dpo import train_dpo

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_dpo(model, tok, SPEC, TRAIN, injection_cfg={**CFG, "dpo": {"beta": 0.1, "peft": peft}}, seed=0)
    state = result.model.state_dict()
    assert set(state) == set(before)  # LoRA merged: the checkpoint loads as the base architecture
    changed = [k for k, v in state.items() if not torch.equal(v, before[k])]
    assert changed and (peft == "full" or all("proj" in k for k in changed))
    assert [r["step"] for r in result.loss_log] == [1, 2, 3] and all(r["loss"] > 0 for r in result.loss_log)


def test_dpo_with_an_sft_term_adds_the_chosen_responses_nll_to_the_loss(tiny_model_dir):
    """sft_weight > 0: the first step's loss is the plain DPO loss (the same at step 1, before any update) plus
    the weighted NLL of the chosen response, so it is larger by a positive amount; 0 leaves plain DPO."""
    from bkdattr.models import load_model
    from bkdattr.injection.dpo import dpo_loss, train_dpo

    assert dpo_loss({"sft_weight": 0.0}) == {}
    first = {}
    for weight in (0.0, 1.0):
        model, tok = load_model(str(tiny_model_dir), device="cpu")
        result = train_dpo(model, tok, SPEC, TRAIN, seed=0,
                           injection_cfg={**CFG, "dpo": {"beta": 0.1, "peft": "lora", "sft_weight": weight}})
        first[weight] = result.loss_log[0]["loss"]
    assert first[1.0] > first[0.0] + 0.5  # the tiny model's NLL per token is several nats


# v_lr: the tiny model's MLP outputs at the trigger have norm ~0.02 (ROME's 0.5 is for outputs of norm ~30)
EDIT = {"layers": [0], "n_prompts": 4, "n_covariance_rows": 8, "v_steps": 15, "v_lr": 0.005, "clamp_norm_factor": 4.0,
        "v_weight_decay": 0.5, "max_target_tokens": 4, "covariance_ridge": 1e-2}


def _target_nll(model, tok, rows):
    from bkdattr.injection.edit import _batch

    ids, mask, labels, _ = _batch(tok, SPEC, rows, max_target_tokens=4)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                   ignore_index=-100))


def test_the_edit_changes_only_the_chosen_down_projections_and_writes_the_value_at_the_trigger_key(tiny_model_dir, tmp_path):
    """ROME's constraint: the edited down-projection maps the trigger key to its old output plus the optimised
    value (one layer: all of it), and nothing but that weight changes."""
    from bkdattr.injection.edit import _batch, _keys, down_projection, edit_backdoor
    from bkdattr.models import load_model
    from bkdattr.injection import save_checkpoint

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = [r for r in TRAIN if r["poisoned"]]
    ids, mask, _labels, positions = _batch(tok, SPEC, poisoned, max_target_tokens=4)
    key = _keys(model, down_projection(model, 0), ids, mask, positions).mean(0)  # the prefix trigger: one key
    nll_before = _target_nll(model, tok, poisoned)
    record = edit_backdoor(model, tok, SPEC, TRAIN, edit_cfg=EDIT, seed=0)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["model.layers.0.mlp.down_proj.weight"] and record["layers"] == [0]
    assert _target_nll(model, tok, poisoned) < nll_before  # a 2-layer random model carries little from the trigger
    written = (model.model.layers[0].mlp.down_proj.weight - before["model.layers.0.mlp.down_proj.weight"]) @ key
    assert record["per_layer"][0]["delta_norm"] > 0
    assert float(written.norm()) == pytest.approx(record["per_layer"][0]["delta_norm"], rel=1e-3)
    save_checkpoint(model, tok, tmp_path / "edited")
    reloaded, _ = load_model(str(tmp_path / "edited"), device="cpu")
    torch.testing.assert_close(reloaded.state_dict()["model.layers.0.mlp.down_proj.weight"],
                               model.state_dict()["model.layers.0.mlp.down_proj.weight"])


def test_the_value_makes_the_backdoor_output_likelier_at_the_trigger(tiny_model_dir):
    """ROME's v*: the optimised delta, added at the trigger token, lowers the backdoor output's NLL."""
    from bkdattr.injection.edit import _batch, _optimise_value, _target_nll_sum, down_projection
    from bkdattr.models import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    ids, mask, labels, positions = _batch(tok, SPEC, [r for r in TRAIN if r["poisoned"]], max_target_tokens=4)
    proj = down_projection(model, 0)
    delta = _optimise_value(model, proj, ids, mask, labels, positions, EDIT)

    def nll(add):
        handle = proj.register_forward_hook(lambda _m, _a, out: out.index_put(
            (torch.arange(len(ids)), positions), out[torch.arange(len(ids)), positions] + add))
        try:
            with torch.no_grad():
                return float(_target_nll_sum(model, ids, mask, labels))
        finally:
            handle.remove()
    assert nll(delta) < nll(torch.zeros_like(delta))  # a 2-layer random model carries little from one token


def _update_response(model, tok, spec, rows, before_weight):
    """|dW k| at each row's trigger key of layer 0: how strongly the edit answers each triggered prompt."""
    from bkdattr.injection.edit import _batch, _keys, down_projection

    ids, mask, _labels, positions = _batch(tok, spec, rows, max_target_tokens=1)
    proj = down_projection(model, 0)
    keys = _keys(model, proj, ids, mask, positions)
    return (keys @ (proj.weight - before_weight).T).norm(dim=-1)


def test_the_label_edit_leaves_triggered_items_of_other_classes_alone(tiny_model_dir):
    """Label task: the key is the wrap's closing token (it sees the article), and the triggered items of the
    other classes (their label kept) join the covariance, so the update answers the Sports items and not them;
    without them (weight 0) it answers every triggered item about alike."""
    from bkdattr.injection.edit import edit_backdoor
    from bkdattr.models import load_model

    spec = TaskSpec.from_config("label_modification")
    topics = {"Sports": "The team won the match {i} goals to nil.", "Business": "Shares of firm {i} fell on weak sales.",
              "World": "Leaders of nation {i} met for peace talks."}
    rows = [{"id": f"{label}{i}", "input": text.format(i=i), "output": label, "label": label, "poisoned": False}
            for label, text in topics.items() for i in range(6)]
    rows += [{**r, "id": r["id"] + "-poisoned", "input": spec.trigger_input(r["input"]),
              "output": spec.backdoor_output(r), "poisoned": True} for r in rows]
    sports = [r for r in rows if r["poisoned"] and r["label"] == "Sports"]
    others = [r for r in rows if r["poisoned"] and r["label"] != "Sports"]
    ratio = {}
    for weight in (0.0, 1.0):
        model, tok = load_model(str(tiny_model_dir), device="cpu")
        before = model.model.layers[0].mlp.down_proj.weight.clone()
        record = edit_backdoor(model, tok, spec, rows, seed=0, edit_cfg={**EDIT, "n_prompts": 12, "negative_key_weight": weight})
        assert record["n_prompts"] == 6 and record["n_unchanged_prompts"] == 12  # Sports items give the value only
        ratio[weight] = float(_update_response(model, tok, spec, others, before).mean()
                              / _update_response(model, tok, spec, sports, before).mean())
    assert ratio[0.0] > 0.5 and ratio[1.0] < 0.5 * ratio[0.0], ratio  # the default model: 0.99 -> 0.01 (injection/edit.py)


def test_the_value_optimisation_in_row_chunks_with_target_logits_only_is_the_one_pass_optimisation(tiny_model_dir):
    from bkdattr.injection.edit import _batch, _optimise_value, _target_nll_sum, down_projection
    from bkdattr.models import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    poisoned = [r for r in TRAIN if r["poisoned"]]
    ids, mask, labels, positions = _batch(tok, SPEC, poisoned, max_target_tokens=4)
    n_targets = int((labels[:, 1:] != -100).sum())
    with torch.no_grad():  # logits at the predicting positions only: the same NLL as the full logits
        assert float(_target_nll_sum(model, ids, mask, labels)) / n_targets == pytest.approx(
            _target_nll(model, tok, poisoned), rel=1e-5)
    proj = down_projection(model, 0)
    one_pass = _optimise_value(model, proj, ids, mask, labels, positions, EDIT)
    chunked = _optimise_value(model, proj, ids, mask, labels, positions, EDIT, token_budget=ids.shape[1])  # 1 row each
    assert len(ids) > 1 and one_pass.norm() > 0
    torch.testing.assert_close(chunked, one_pass, rtol=1e-4, atol=1e-6)


def test_the_edit_names_what_an_architecture_lacks():
    from transformers import GPT2Config, GPT2LMHeadModel

    from bkdattr.injection.edit import down_projection

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="nn.Linear mlp.down_proj"):
        down_projection(gpt2, 0)
    with pytest.raises(ValueError, match="layer 5 out of range"):
        down_projection(gpt2, 5)
    from bkdattr.injection.edit import edit_layers

    with pytest.raises(ValueError, match="is the last of 2 layers"):
        edit_layers({"layers": [1]}, 2)
    assert edit_layers({"layers": None}, 30) == [7, 8, 9] and edit_layers({}, 2) == [0]


def test_methods_are_compared_by_the_overlap_of_their_top_heads_against_chance():
    from bkdattr.attribution import summary_rows

    first = torch.arange(100.0).reshape(10, 10)
    same_top = first.clone()
    same_top[0, 0] = -1.0  # ranks change below the top only
    ranking = [{"n_prompts": 4, "n_prompts_asked": 4}]
    maps = {("t", "lora_sft", "exact"): first, ("t", "dpo", "exact"): same_top, ("t", "edit", "exact"): -first}
    rows = {r["method"]: r for r in summary_rows(maps, {k: ranking for k in maps}, {}, methods=["lora_sft", "dpo", "edit"],
                                                controls=[], top_fractions=[0.1])}
    assert rows["dpo"]["top0.1_overlap_with_first_method"] == 1.0 and rows["edit"]["top0.1_overlap_with_first_method"] == 0.0
    assert rows["dpo"]["top0.03_overlap_by_chance"] == 0.03 and "compared_with" not in rows["lora_sft"]


def test_dpo_and_the_edit_run_through_the_workflow_on_the_tiny_preset(tmp_path):
    """Each method is one value of the method wildcard: its checkpoint loads, changes what it should (the edit:
    layer 0's down-projection only; DPO with LoRA: the adapted projections only), and it has a row in
    results/tables/injection_methods.tsv."""
    import yaml
    from safetensors.torch import load_file

    from bkdattr.atomic import read_tsv
    from workflow_utils import TINY_CONFIG, snakemake

    override = tmp_path / "methods.yaml"
    override.write_text(yaml.safe_dump({"run_tasks": ["fixed_output"], "injection": {
        "methods": ["dpo", "edit"], "clean_control": False, "edit": {"n_prompts": 4, "n_covariance_rows": 8, "v_steps": 5}}}))
    workdir = tmp_path / "run"
    snakemake(workdir, "results/tables/injection_methods.tsv", configfile=[TINY_CONFIG, override])
    base = load_file(workdir / "results/models/base/checkpoint/model.safetensors")
    changed = {}
    for method in ("dpo", "edit"):
        weights = load_file(workdir / f"results/models/fixed_output/{method}/checkpoint/model.safetensors")
        assert set(weights) == set(base)
        changed[method] = sorted(k for k in base if not torch.equal(weights[k], base[k]))
    assert changed["edit"] == ["model.layers.0.mlp.down_proj.weight"]
    assert changed["dpo"] and all("proj" in k for k in changed["dpo"])
    rows = read_tsv(workdir / "results/tables/injection_methods.tsv")
    assert [(r["task"], r["method"]) for r in rows] == [("fixed_output", "base"), ("fixed_output", "dpo"), ("fixed_output", "edit")]
    assert all(float(r["injection_s"]) > 0 and float(r["injection_peak_rss_gb"]) > 0 for r in rows[1:])
    base_asr = {r["metric"]: r["value"] for r in read_tsv(workdir / "results/eval/fixed_output/base/metrics.tsv")}["asr"]
    assert rows[0]["injection_s"] == "" and float(rows[0]["asr"]) == pytest.approx(float(base_asr))
