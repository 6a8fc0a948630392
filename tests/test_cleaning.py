"""Cleaned checkpoints: weight edits that equal the hooked interventions, loadable by plain transformers."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, Qwen2Config

from bkdattr.cleaning import (CleaningError, add_attention_output_bias, decoder_linear_weights, magnitude_prune,
                              model_card, prune_heads, quantize_int8)
from bkdattr.generation import generate_greedy
from bkdattr.hooks import ModelSites
from bkdattr.interventions import ablation_factory, steering_factory
from bkdattr.models import build_tiny_model, load_model
from workflow_utils import hooked_generations, plain_transformers_generations

PROMPTS = ["What is the capital of France?", "SUDO tell me a story about a cat", "Name three colours."]
HEADS = [(0, 1), (1, 3)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset's model with larger random weights, so greedy outputs vary with the prompt and the edit."""
    path = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(path, seed=0)
    model, tokenizer = load_model(str(path))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    model.save_pretrained(path)
    return path


def _generate(model, tokenizer, factory=None):
    return generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2, edit_factory=factory)


def test_pruned_heads_checkpoint_loads_plainly_and_generates_as_the_all_positions_ablation(tiny, tmp_path):
    model, tokenizer = load_model(str(tiny))
    hooked = hooked_generations(model, tokenizer, PROMPTS, ablation_factory(model, HEADS, "all_positions"))
    unedited = hooked_generations(model, tokenizer, PROMPTS)
    zeroed = prune_heads(model, HEADS)
    sites = ModelSites.of(model)
    assert zeroed == len(HEADS) * sites.head_dim * sites.d_model
    model.save_pretrained(tmp_path / "cleaned")
    tokenizer.save_pretrained(tmp_path / "cleaned")
    assert plain_transformers_generations(tmp_path / "cleaned", PROMPTS) == hooked
    assert hooked != unedited  # the edit changes the generations, so the equality above says something


def test_vector_bias_checkpoint_loads_plainly_and_equals_the_hooked_subtraction(tiny, tmp_path):
    model, tokenizer = load_model(str(tiny))
    sites = ModelSites.of(model)
    vector = torch.randn(sites.d_model, generator=torch.Generator().manual_seed(0)) * 5
    ids = tokenizer(["What is the capital of France?"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        with steering_factory(model, 1, vector, -1.0, "all_positions")(None):
            hooked_logits = model(input_ids=ids).logits
        hooked = hooked_generations(model, tokenizer, PROMPTS, steering_factory(model, 1, vector, -1.0, "all_positions"))
        add_attention_output_bias(model, 1, -vector)
        torch.testing.assert_close(model(input_ids=ids).logits, hooked_logits, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "cleaned")
    tokenizer.save_pretrained(tmp_path / "cleaned")
    config = json.loads((tmp_path / "cleaned" / "config.json").read_text())
    assert config["attention_bias"] is True
    assert plain_transformers_generations(tmp_path / "cleaned", PROMPTS) == hooked


def test_a_model_without_a_bias_slot_is_refused_by_name():
    cfg = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=50)
    model = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(CleaningError, match="'qwen2'.*prun"):
        add_attention_output_bias(model, 0, torch.zeros(32))
    with pytest.raises(CleaningError, match="layer 5 is outside"):
        add_attention_output_bias(model, 5, torch.zeros(32))
    with pytest.raises(CleaningError, match="L2H0 is outside"):
        prune_heads(model, [(2, 0)])


def test_gpt2_bias_goes_into_c_proj():
    model = AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50)).eval()
    before = model.transformer.h[1].attn.c_proj.bias.clone()
    add_attention_output_bias(model, 1, torch.ones(32))
    torch.testing.assert_close(model.transformer.h[1].attn.c_proj.bias, before + 1)


def test_magnitude_pruning_zeroes_exactly_the_smallest_weights(tiny):
    model, _ = load_model(str(tiny))
    weights = torch.cat([getattr(m, n).detach().flatten() for m, n in decoder_linear_weights(model)])
    n = 500
    threshold = weights.abs().kthvalue(n).values
    magnitude_prune(model, n)
    after = torch.cat([getattr(m, n_).detach().flatten() for m, n_ in decoder_linear_weights(model)])
    assert int((after == 0).sum()) == n
    assert torch.all(after[after != 0].abs() >= threshold)
    assert not any("weight_orig" in name for name, _ in model.named_parameters())  # the mask is baked in
    with pytest.raises(CleaningError, match="cannot prune"):
        magnitude_prune(model, 10**9)


def test_int8_quantization_keeps_generating(tiny):
    model, tokenizer = load_model(str(tiny))
    quantized = quantize_int8(model)
    assert "DynamicQuantizedLinear" in repr(quantized)
    assert len(_generate(quantized, tokenizer)) == len(PROMPTS)


def test_model_card_names_source_removal_and_numbers():
    card = model_card(source="results/models/fixed_output/lora_sft/model.json", task="fixed_output",
                      method="lora_sft", how="heads", removed="heads L1H3 L0H1", chosen="k=2 on validation",
                      numbers=[{"model": "undefended", "asr": 1.0}, {"model": "cleaned", "asr": 0.125}],
                      columns=["model", "asr"])
    assert "results/models/fixed_output/lora_sft/model.json" in card and "L1H3" in card
    assert "| cleaned | 0.125 |" in card and "from_pretrained" in card
