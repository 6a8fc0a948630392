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
    items = make_items(tokenizer, prompts, targets)
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
    exact, _ = acie_exact(model, one, abar, pad_id=tok.pad_token_id)
    assert exact.abs().max().item() <= 1e-6


def test_only_the_requested_layers_are_computed(tiny):
    model, tok, items, abar = tiny
    exact, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, layers=[1])
    assert torch.isnan(exact[0]).all() and torch.isnan(exact[2]).all() and not torch.isnan(exact[1]).any()


def test_atp_is_a_first_order_estimate(tiny):
    model, tok, items, abar = tiny
    small = abar * 1e-4  # near the clean activations the linear estimate must be close
    sites = ModelSites.of(model)
    from bkdattr.hooks import head_outputs
    ids = torch.tensor([items[0].prompt_ids])
    own = head_outputs(model, ids, torch.ones_like(ids))
    near = torch.stack([own[l][0] for l in range(sites.n_layers)]) + small
    exact, _ = acie_exact(model, items[:1], near, pad_id=tok.pad_token_id)
    atp = acie_atp(model, items[:1], near, pad_id=tok.pad_token_id)
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
    items = make_items(tok, ["What is 7 plus 5?", "hi there"], ["I am sorry.", "World"])
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
    assert torch.equal(eligible.abar, heads[1]) and eligible.n_triggered == 1
    assert [r["input"] for r in eligible.records] == ["a"]
    every = attribution_inputs(cache, pool, spec, items="all", n_prompts=10)
    assert torch.equal(every.abar, heads[[1, 3]].mean(0)) and every.n_triggered == 2 and len(every.records) == 3
