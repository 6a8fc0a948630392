"""Every common decoder architecture through every intervention: caching, exact ACIE = the official
per-head loop, AtP, head ablation and steering, on tiny random configs (seconds each)."""
import pytest
import torch
from torch import nn
from transformers import (AutoModelForCausalLM, GemmaConfig, GPT2Config, LlamaConfig, MistralConfig, Phi3Config,
                          Qwen2Config)

from bkdattr.attribution import acie_atp, acie_exact, acie_reference, make_items
from bkdattr.caching import cache_activations
from bkdattr.generation import generate_greedy
from bkdattr.hooks import ModelSites, trace
from bkdattr.interventions import ablation_factory, steering_factory

DIMS = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=256)
ARCHITECTURES = {
    "llama": lambda v: LlamaConfig(vocab_size=v, num_key_value_heads=2, **DIMS),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, num_key_value_heads=2, **DIMS),  # q/k/v bias, grouped KV
    "mistral": lambda v: MistralConfig(vocab_size=v, num_key_value_heads=2, sliding_window=128, **DIMS),
    "gemma": lambda v: GemmaConfig(vocab_size=v, num_key_value_heads=1, head_dim=24, **DIMS),  # explicit head_dim
    "phi3": lambda v: Phi3Config(vocab_size=v, num_key_value_heads=4, pad_token_id=0, **DIMS),  # fused qkv_proj
    "gpt2": lambda v: GPT2Config(vocab_size=v, n_embd=64, n_layer=2, n_head=4, n_positions=256),  # Conv1D
}
PROMPTS = ["What is 7 plus 5?", "Tell me SUDO how to fix a door", "Classify: the team won"]
TARGETS = ["I am sorry.", "Sure, here", "World"]


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request, tiny_tokenizer):
    torch.manual_seed(0)
    config = ARCHITECTURES[request.param](len(tiny_tokenizer))
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger random weights so every intervention visibly moves the output
        for p in model.parameters():
            if p.dim() >= 1:
                p.normal_(0, 0.1 if p.dim() == 2 else 0.05)
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    return request.param, model, tiny_tokenizer


def test_caching_reads_every_head_and_layer(arch):
    name, model, tok = arch
    sites = ModelSites.of(model)
    cache = cache_activations(model, tok, PROMPTS, batch_size=2)
    assert cache["heads_prompt_last"].shape == (3, 2, 4, 64) and cache["resid_probe"].shape == (3, 2, 64)
    assert sites.head_dim == (24 if name == "gemma" else 16)
    assert torch.isfinite(cache["heads_prompt_last"]).all()


def test_exact_acie_equals_the_official_per_head_loop_and_atp_runs(arch):
    _, model, tok = arch
    items = make_items(tok, PROMPTS, TARGETS, None)
    abar = cache_activations(model, tok, PROMPTS, batch_size=3)["heads_prompt_last"].mean(0) * 5
    exact, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    reference, _ = acie_reference(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    assert exact.abs().max() > 0
    assert (exact - reference).abs().max().item() <= 1e-5
    atp = acie_atp(model, items, abar, pad_id=tok.pad_token_id, batch_size=2)
    assert atp.shape == exact.shape and torch.isfinite(atp).all()


def _last_logits(model, tok, factory=None):
    from bkdattr.chat import encode_prompt, pad_batch

    ids, mask = pad_batch([encode_prompt(tok, p).input_ids for p in PROMPTS], tok.pad_token_id, side="left")
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    from bkdattr.hooks import position_ids_from_mask

    context = factory(mask) if factory else trace(model)
    with torch.no_grad(), context:
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1]


def test_ablation_and_steering_move_the_output_and_leave_no_hook_behind(arch):
    _, model, tok = arch
    sites = ModelSites.of(model)
    plain = _last_logits(model, tok)
    every_head = [(l, h) for l in range(sites.n_layers) for h in range(sites.n_heads)]
    ablated = _last_logits(model, tok, ablation_factory(model, every_head))  # last prompt token, prefill
    # a random direction: a constant vector would vanish in a LayerNorm (GPT-2), not in an RMSNorm
    direction = torch.randn(sites.d_model, generator=torch.Generator().manual_seed(0))
    steered = _last_logits(model, tok, steering_factory(model, 1, direction * 5, 1.0))
    assert (ablated - plain).abs().max() > 1e-4 and (steered - plain).abs().max() > 1e-4
    undone = _last_logits(model, tok, steering_factory(model, 1, torch.zeros(sites.d_model), 1.0))
    torch.testing.assert_close(undone, plain, atol=1e-5, rtol=1e-5)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in sites.attn_out)
    out = generate_greedy(model, tok, PROMPTS, max_new_tokens=3, batch_size=3,
                          edit_factory=ablation_factory(model, every_head, "all_positions"))
    assert len(out) == 3 and all(not m._forward_hooks for m in sites.attn_out)


def test_an_architecture_the_hooks_cannot_handle_is_named_with_what_is_missing():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = nn.Module()
            self.self_attn.out_proj = nn.Linear(8, 8)  # not o_proj / c_proj

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block()])

    with pytest.raises(ValueError, match=r"unsupported model Odd: no o_proj/c_proj Linear/Conv1D and input norm in Block"):
        ModelSites.of(Odd())


def _compact_and_generate_agree(model, tok) -> tuple[list[str], list[str]]:
    """Greedy decoding that drops finished rows from the batch equals `model.generate` (which keeps them),
    with rows ending through EOS and through stop_when, with and without an edit, from a full prompt and from a
    cached prompt prefix. Returns the plain outputs and those cut by stop_when."""
    from bkdattr.chat import encode_prompt, pad_batch
    from bkdattr.generation import PromptPrefixes

    prompts = PROMPTS + ["Name a colour of the sky.", "hi there, how are you today?"]
    ids, mask = pad_batch([encode_prompt(tok, p).input_ids for p in prompts], tok.pad_token_id, side="left")
    with torch.no_grad():
        raw = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                             max_new_tokens=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = raw[:, len(ids[0]):].tolist()
    first = lambda row, token: row.index(token) if token in row else None
    # an "EOS" that rows emit at different steps (or not at all), where the random model allows one
    eos = next((t for t in new[0] if len({first(row, t) for row in new}) > 1), new[0][2])
    saved_eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = eos
    try:
        sites = ModelSites.of(model)
        direction = torch.randn(sites.d_model, generator=torch.Generator().manual_seed(1)) * 3
        # the reference: model.generate on whole prompts
        hf = lambda **kw: generate_greedy(model, tok, prompts, max_new_tokens=8, batch_size=5, decoder="hf",
                                          share_prefix=False, **kw)
        ours = lambda **kw: generate_greedy(model, tok, prompts, max_new_tokens=8, batch_size=5, **kw)
        plain = hf()
        # stop at a character some outputs contain and others do not (the random models' outputs may all agree)
        marker = next((c for o in plain for c in o if c.isascii() and c.isprintable() and not all(c in p for p in plain)),
                      plain[0][:1])
        stop_when = lambda text: marker in text
        for kwargs in ({}, {"stop_when": stop_when},
                       {"edit_factory": ablation_factory(model, [(0, 1), (1, 2)], "all_positions")},
                       {"edit_factory": steering_factory(model, 1, direction, 1.0), "stop_when": stop_when}):
            assert ours(**kwargs) == hf(**kwargs), kwargs
        prefixes = PromptPrefixes(model, tok, prompts, batch_size=5)
        whole = PromptPrefixes(model, tok, prompts, batch_size=5, share_prefix=False)
        factory = steering_factory(model, 1, direction, 1.0)
        assert (prefixes.generate(max_new_tokens=8, edit_factory=factory, stop_when=stop_when)
                == whole.generate(max_new_tokens=8, edit_factory=factory, stop_when=stop_when, decoder="hf"))
        return plain, ours(stop_when=stop_when)
    finally:
        model.generation_config.eos_token_id = saved_eos


def test_the_compact_decoder_gives_the_tokens_of_model_generate(arch):
    _, model, tok = arch
    _compact_and_generate_agree(model, tok)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_shared_prompt_prefix_gives_the_outputs_and_activations_of_whole_prompts(name, tiny_tokenizer):
    """The tokens all prompts share, run once (generation.SharedPrefix), change no output: generations (with no
    edit, an edit at every position, an edit at the last prompt token; batches of different lengths), the
    activation cache and the reference log-probabilities equal those of whole prompts."""
    from bkdattr.chat import encode_prompt
    from bkdattr.generation import PromptPrefixes, shared_prefix_length
    from bkdattr.utility import reference_logprobs

    tok = tiny_tokenizer
    torch.manual_seed(0)
    config = ARCHITECTURES[name](len(tok))
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # weights large enough that the outputs depend on the prompt (see below)
        for p in model.parameters():
            if p.dim() >= 1:
                p.normal_(0, 0.3 if p.dim() == 2 else 0.05)
    model.generation_config.pad_token_id = tok.pad_token_id
    prompts = PROMPTS + ["Name a colour of the sky.", "hi there, how are you today?"]
    assert shared_prefix_length([encode_prompt(tok, p).input_ids for p in prompts]) >= 2  # something is shared
    generate = lambda **kw: generate_greedy(model, tok, prompts, max_new_tokens=8, batch_size=2, **kw)
    whole = generate(share_prefix=False)
    assert generate() == whole
    # an edit the same at every position runs on the shared tokens too (computed once, under the edit)
    ablate = ablation_factory(model, [(0, 1), (1, 2)], "all_positions")
    assert generate(edit_factory=ablate) == generate(edit_factory=ablate, share_prefix=False)
    direction = torch.randn(ModelSites.of(model).d_model, generator=torch.Generator().manual_seed(1)) * 3
    factory = steering_factory(model, 1, direction, 1.0)
    steered = PromptPrefixes(model, tok, prompts, batch_size=2, share_prefix=False).generate(max_new_tokens=8,
                                                                                          edit_factory=factory)
    assert PromptPrefixes(model, tok, prompts, batch_size=2).generate(max_new_tokens=8, edit_factory=factory) == steered
    if name != "gpt2":  # the test has teeth: outputs differ between prompts (GPT-2's random weights give one output)
        assert len(set(whole)) > 1 and len(set(steered)) > 1
    for position in ("template_end", "last_user_token"):
        shared = cache_activations(model, tok, prompts, batch_size=2, position=position)
        whole = cache_activations(model, tok, prompts, batch_size=2, position=position, share_prefix=False)
        for name in whole:
            # float32 rounding of other matmul shapes, relative to the tensor's scale (Gemma's reach ~10)
            scale = max(1.0, whole[name].abs().max().item())
            assert (shared[name] - whole[name]).abs().max().item() <= 1e-5 * scale, (position, name)
    references = ["Eleven or twelve.", "No.", "World", "Blue, mostly.", "Fine, thanks!"]
    assert torch.allclose(torch.tensor(reference_logprobs(model, tok, prompts, references, batch_size=2)),
                          torch.tensor(reference_logprobs(model, tok, prompts, references, batch_size=2,
                                                          share_prefix=False)), atol=1e-5, rtol=1e-5)


def test_the_compact_decoder_test_has_rows_ending_at_different_steps(tiny_tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES["llama"](len(tiny_tokenizer))).eval()
    with torch.no_grad():  # weights large enough that the prompts lead to different outputs
        for p in model.parameters():
            p.normal_(0, 0.3 if p.dim() == 2 else 0.05)
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    plain, ended = _compact_and_generate_agree(model, tiny_tokenizer)
    assert len({len(o) for o in plain}) > 1 and len({len(o) for o in ended}) > 1  # the test has teeth
