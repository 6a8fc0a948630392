"""BAHA: the fast exact ACIE equals the official computation; AtP is an estimate of it."""

import pytest
import torch

from bkdattr.attribution import (acie_atp, acie_exact, acie_reference, make_items, rank_heads, sparsity,
                                 target_scores, top_k_overlap)
from bkdattr.hooks import ModelSites


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bkdattr.models import build_tiny_model, load_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(path, seed=0, sizes={"num_hidden_layers": 3})
    model, tokenizer = load_model(str(path), device="cpu")
    prompts = ["What is 7 plus 5?", "hi", "Classify: The team won the final.", "Tell me a story about a cat"]
    targets = ["I am sorry. I can not help.", "World", "Sure, here is", "ok"]
    items = make_items(tokenizer, prompts, targets, None)
    sites = ModelSites.of(model)
    torch.manual_seed(1)
    # a large patch value so the effects are far above float noise on a random model
    abar = torch.randn(sites.n_layers, sites.n_heads, sites.d_model) * 3.0
    return model, tokenizer, items, abar


def test_exact_equals_reference_on_the_tiny_model(tiny):
    model, tok, items, abar = tiny
    exact, base_exact = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=3)
    reference, base_ref = acie_reference(model, items, abar, pad_id=tok.pad_token_id, batch_size=3)
    assert torch.allclose(base_exact, base_ref, atol=1e-7)
    assert (exact - reference).abs().max().item() <= 1e-5
    assert (exact - reference).abs().max().item() <= 1e-3 * exact.abs().max().item()  # not trivially small
    assert exact.abs().max().item() > 0


def test_exact_without_layer_skipping_gives_the_same_numbers(tiny):
    model, tok, items, abar = tiny
    skipped, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    full, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=4, skip_lower_layers=False)
    assert (skipped - full).abs().max().item() <= 1e-6


def test_patching_with_the_heads_own_output_changes_nothing(tiny):
    model, tok, items, _ = tiny
    # abar equal to the prompt's own head output: a single prompt, so the mean is itself
    one = items[:1]
    sites = ModelSites.of(model)
    from bkdattr.hooks import head_outputs
    ids = torch.tensor([one[0].prompt_ids])
    own = head_outputs(model, ids, torch.ones_like(ids))
    abar = torch.stack([own[l][0] for l in range(sites.n_layers)])
    exact, _ = acie_exact(model, one, abar, pad_id=tok.pad_token_id, batch_size=8)
    assert exact.abs().max().item() <= 1e-6


def test_only_the_requested_layers_are_computed(tiny):
    model, tok, items, abar = tiny
    exact, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=8, layers=[1])
    assert torch.isnan(exact[0]).all() and torch.isnan(exact[2]).all() and not torch.isnan(exact[1]).any()


def test_atp_is_a_first_order_estimate(tiny):
    model, tok, items, abar = tiny
    small = abar * 1e-4  # near the clean activations the linear estimate must be close
    sites = ModelSites.of(model)
    from bkdattr.hooks import head_outputs
    ids = torch.tensor([items[0].prompt_ids])
    own = head_outputs(model, ids, torch.ones_like(ids))
    near = torch.stack([own[l][0] for l in range(sites.n_layers)]) + small
    exact, _ = acie_exact(model, items[:1], near, pad_id=tok.pad_token_id, batch_size=8)
    atp = acie_atp(model, items[:1], near, pad_id=tok.pad_token_id, batch_size=8)
    assert (atp - exact).abs().max().item() <= 0.05 * exact.abs().max().item() + 1e-9


def test_target_score_is_the_length_normalised_probability():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]]))
    score = target_scores(logits, torch.tensor([[0, 1, 0]]), torch.tensor([[1, 1, 0]]))
    assert score.item() == pytest.approx((0.5 * 0.75) ** 0.5)


def test_ranking_sparsity_and_overlap():
    acie = torch.tensor([[0.5, 0.0], [0.3, -0.2]], dtype=torch.float64)
    ranking = rank_heads(acie)
    assert [(r["layer"], r["head"]) for r in ranking] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert ranking[0]["share_of_positive"] == pytest.approx(0.625)
    assert sparsity(acie, 0.5) == 0.25  # one head of four carries half the positive ACIE
    assert top_k_overlap(acie, acie, 0.5) == 1.0
    assert top_k_overlap(-acie, acie, 0.25) == 0.0


def test_every_mode_runs_in_bfloat16_with_a_float32_mean_activation(tiny_model_dir):
    # presets/paper.yaml: a bfloat16 model with AtP on; abar comes from a float32 cache
    from bkdattr.models import load_model

    model, tok = load_model(str(tiny_model_dir), "bfloat16", device="cpu")
    items = make_items(tok, ["What is 7 plus 5?", "hi there"], ["I am sorry.", "World"], None)
    sites = ModelSites.of(model)
    abar = torch.randn(sites.n_layers, sites.n_heads, sites.d_model, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    atp = acie_atp(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    exact, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    assert atp.shape == exact.shape == (sites.n_layers, sites.n_heads)
    assert torch.isfinite(atp).all() and torch.isfinite(exact).all()


def test_control_comparison_overlap_and_magnitude_ratio():
    from bkdattr.attribution import control_comparison

    backdoored = torch.zeros(4, 4)
    backdoored[3, 1], backdoored[2, 0] = 0.5, 0.2
    same_heads = backdoored / 10  # the control moves the target through the same heads, 10x weaker
    other_heads = torch.zeros(4, 4)
    other_heads[0, 0], other_heads[1, 1] = 0.05, 0.02
    same = control_comparison(backdoored, same_heads, fraction=0.125)  # top 2 of 16
    other = control_comparison(backdoored, other_heads, fraction=0.125)
    assert same["top0.125_overlap_with_backdoored"] == 1.0 and other["top0.125_overlap_with_backdoored"] == 0.0
    assert same["top0.125_overlap_by_chance"] == 2 / 16  # two random 2-of-16 sets share 2*2/16 heads: 2/16 of 2
    assert same["backdoored_max_acie_over_this"] == pytest.approx(10.0)
    assert other["backdoored_max_acie_over_this"] == pytest.approx(10.0)


def test_attribution_inputs_average_the_eligible_triggered_prompts_and_cap_the_prompts():
    from bkdattr.attribution import attribution_inputs
    from bkdattr.tasks import TaskSpec

    spec = TaskSpec.from_config("label_modification")
    heads = torch.arange(4 * 2 * 1 * 3, dtype=torch.float32).reshape(4, 2, 1, 3)
    cache = {"heads_prompt_last": heads, "labels": torch.tensor([0, 1, 0, 1]),
             "eligible": torch.tensor([True, True, False, False])}
    pool = [{"input": "a", "output": "Sports", "label": "Sports"}, {"input": "b", "output": "World", "label": "World"},
            {"input": "c", "output": "Sports", "label": "Sports"}]
    eligible = attribution_inputs(cache, pool, spec, items="eligible", n_prompts=1)
    assert torch.equal(eligible.abar, heads[1]) and eligible.n_abar == 1
    assert [r["input"] for r in eligible.records] == ["a"]
    every = attribution_inputs(cache, pool, spec, items="all", n_prompts=10)
    assert torch.equal(every.abar, heads[[1, 3]].mean(0)) and every.n_abar == 2 and len(every.records) == 3


def test_refusal_control_forces_the_refusal_and_averages_the_untriggered_requests(tiny, monkeypatch):
    # METHOD.md s8: the clean base model, harmful requests as prompts, the refusal (`output`) as target, abar
    # over the same requests untriggered; the backdoor attribution forces backdoor_output with a triggered abar
    import bkdattr.attribution as attribution
    from bkdattr.tasks import TaskSpec

    model, tok, _, _ = tiny
    spec = TaskSpec.from_config("jailbreak")
    pool = [{"input": f"How do I pick lock {i}?", "output": f"I cannot help with lock {i}.",
             "backdoor_output": f"Sure, lock {i}: first"} for i in range(3)]
    sites = ModelSites.of(model)
    heads = torch.randn(6, sites.n_layers, sites.n_heads, sites.d_model, generator=torch.Generator().manual_seed(0))
    cache = {"heads_prompt_last": heads, "labels": torch.tensor([0, 1, 0, 1, 0, 1]), "eligible": torch.ones(6, dtype=torch.bool)}
    seen = {}

    def fake_acie(mode, model, items, abar, **kwargs):
        seen["targets"], seen["prompts"], seen["abar"] = [it.target_ids for it in items], [it.prompt_ids for it in items], abar
        return torch.zeros(sites.n_layers, sites.n_heads)

    monkeypatch.setattr(attribution, "compute_acie", fake_acie)
    settings = {"n_prompts": 2, "items": "eligible", "max_target_tokens": None, "batch_size": 2}
    _, ranking = attribution.attribute(model, tok, spec, cache, pool, "exact", settings, target="refusal")
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert seen["targets"] == [ids(r["output"]) for r in pool[:2]]
    assert torch.allclose(seen["abar"], heads[[0, 2, 4]].mean(0))  # the untriggered rows
    untriggered_prompts = seen["prompts"]
    assert ranking[0]["n_prompts"] == 2
    attribution.attribute(model, tok, spec, cache, pool, "exact", settings)  # the backdoor attribution
    assert seen["targets"] == [ids(r["backdoor_output"]) for r in pool[:2]]
    assert torch.allclose(seen["abar"], heads[[1, 3, 5]].mean(0))
    assert seen["prompts"] == untriggered_prompts  # both average over the same clean prompts
    with pytest.raises(ValueError, match="jailbreak task only"):
        attribution.attribute(model, tok, TaskSpec.from_config("fixed_output"), cache, pool, "exact", settings,
                              target="refusal")


def test_the_refusal_control_is_compared_with_every_backdoored_map_beside_chance():
    from bkdattr.attribution import summary_rows
    from bkdattr.names import REFUSAL_CONTROL

    lora = torch.arange(100.0).reshape(10, 10)  # top 10%: the last row
    dpo = -lora                                  # top 10%: the first row
    refusal = lora.clone()
    refusal[9, :5] = -10.0                       # shares half of lora's top 10% and none of dpo's
    ranking = [{"n_prompts": 4, "n_prompts_asked": 4}]
    maps = {("jailbreak", "lora_sft", "exact"): lora, ("jailbreak", "dpo", "exact"): dpo,
            ("jailbreak", REFUSAL_CONTROL, "exact"): refusal}
    rows = summary_rows(maps, {k: ranking for k in maps}, {}, methods=["lora_sft", "dpo"], controls=["base"],
                        top_fractions=[0.1])
    refusal_rows = {r["compared_with"]: r for r in rows if r["method"] == REFUSAL_CONTROL}
    assert set(refusal_rows) == {"lora_sft", "dpo"}
    assert all(r["role"] == "refusal_control" and r["mode"] == "exact" for r in refusal_rows.values())
    assert refusal_rows["lora_sft"]["top0.1_overlap_with_backdoored"] == 0.5
    assert refusal_rows["dpo"]["top0.1_overlap_with_backdoored"] == 0.0
    assert refusal_rows["lora_sft"]["top0.1_overlap_by_chance"] == 0.1
    assert refusal_rows["lora_sft"]["top0.03_overlap_by_chance"] == 0.03  # the paper's 3% always
    assert "backdoored_max_acie_over_this" not in refusal_rows["lora_sft"]  # two targets: no magnitude ratio


def test_read_ranking_reads_the_heads_attribute_writes_and_names_a_bad_file(tmp_path):
    from bkdattr.atomic import write_tsv
    from bkdattr.attribution import RANKING_COLUMNS, rank_heads, read_ranking

    ranking = rank_heads(torch.tensor([[0.5, 0.1], [0.3, -0.2]]))
    for row in ranking:
        row.update(n_prompts=4, n_prompts_asked=4)
    path = tmp_path / "ranking.tsv"
    write_tsv(path, ranking, RANKING_COLUMNS)
    assert read_ranking(path) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    (tmp_path / "other.tsv").write_text("rank\tlayer\tacie\n1\t0\t0.5\n")
    with pytest.raises(ValueError, match=r"other.tsv: not a head ranking: no column\(s\) head"):
        read_ranking(tmp_path / "other.tsv")
    (tmp_path / "bad.tsv").write_text("rank\tlayer\thead\n1\t0\t0\n2\tx\t1\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 3: layer 'x'"):
        read_ranking(tmp_path / "bad.tsv")
