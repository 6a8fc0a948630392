"""Tests for bkdattr.hooks on tiny random-init models (fp32, CPU, seconds)."""
import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from bkdattr.hooks import (HeadEdit, ModelSites, ResidualEdit, head_outputs, last_token_index,
                           position_ids_from_mask, trace)

ATOL = 1e-5
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=100, max_position_embeddings=64)
CONFIGS = {
    "llama": lambda: LlamaConfig(**SMALL),
    "llama_hd24": lambda: LlamaConfig(**SMALL, head_dim=24, attention_bias=True),
    "qwen2": lambda: Qwen2Config(**SMALL),
    "gpt2": lambda: GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64),
}
_CACHE = {}


def make(name):
    if name not in _CACHE:
        torch.manual_seed(0)
        cfg = CONFIGS[name]()
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():  # larger random weights/biases so edits visibly move the logits
            for n, p in model.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
                elif p.dim() == 2:
                    p.normal_(0, 0.1)
        _CACHE[name] = model
    return _CACHE[name]


def ids(b=3, s=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 100, (b, s), generator=g)


def logits(model, x, **kw):
    with torch.no_grad():
        return model(input_ids=x, **kw).logits


def manual_head_out(sites, l, z, j):
    """a_j from weight slices, written independently of hooks.py."""
    m, hd = sites.attn_out[l], sites.head_dim
    zj = z[..., j * hd:(j + 1) * hd]
    if isinstance(m, nn.Linear):
        return zj @ m.weight[:, j * hd:(j + 1) * hd].T
    return zj @ m.weight[j * hd:(j + 1) * hd]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_heads_sum_to_projection_output(name):
    model, x = make(name), ids()
    sites = ModelSites.of(model)
    assert sites.n_layers == 2 and sites.n_heads == 4 and sites.d_model == 64
    assert sites.head_dim == (24 if name == "llama_hd24" else 16)
    seen = {}
    hs = [m.register_forward_hook(lambda m, a, o, l=l: seen.__setitem__(l, (a[0], o)))
          for l, m in enumerate(sites.attn_out)]
    try:
        with torch.no_grad(), trace(model, read_heads=[0, 1]) as t:
            model(input_ids=x)
    finally:
        for h in hs:
            h.remove()
    for l in range(2):
        z, out = seen[l]
        r = t.heads[l]
        assert r.shape == (3, 6, 4, 64)
        bias = sites.attn_out[l].bias
        total = r.sum(-2) + (0 if bias is None else bias)
        torch.testing.assert_close(total, out, atol=ATOL, rtol=0)
        torch.testing.assert_close(r[..., 2, :], manual_head_out(sites, l, z, 2), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_zero_all_heads_equals_zeroing_projection_input(name):
    model, x = make(name), ids()
    sites = ModelSites.of(model)
    h = sites.attn_out[1].register_forward_pre_hook(lambda m, a: (torch.zeros_like(a[0]),))
    try:
        ref = logits(model, x)
    finally:
        h.remove()
    outs = []
    with trace(model, head_edits=[HeadEdit(1, [0, 1, 2, 3], "zero")], read_heads=[1]) as t:
        # registered after trace's hook, so it sees the edited output
        h = sites.attn_out[1].register_forward_hook(lambda m, a, o: outs.append(o))
        try:
            got = logits(model, x)
        finally:
            h.remove()
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    assert torch.all(t.heads[1] == 0)  # reads see the edit
    if name == "gpt2":  # output is just the bias
        torch.testing.assert_close(outs[0], sites.attn_out[1].bias.expand_as(outs[0]), atol=ATOL, rtol=0)
    assert not torch.allclose(got, logits(model, x), atol=1e-3)


@pytest.mark.parametrize("name", ["llama", "llama_hd24", "gpt2"])
def test_replace_with_own_value_and_with_mean(name):
    model, x = make(name), ids()
    sites = ModelSites.of(model)
    mask = torch.ones_like(x)
    pos = last_token_index(mask)
    with torch.no_grad(), trace(model, read_heads=[0], positions=pos) as t:
        base = model(input_ids=x).logits
    with torch.no_grad(), trace(model, read_heads=[0]) as t_all:
        model(input_ids=x)
    # replacing heads with their own values (per row, at the last token / everywhere) is a no-op
    for p, val in ((pos, t.heads[0][:, [1, 3]]), ("all", t_all.heads[0][:, :, [1, 3]])):
        with trace(model, head_edits=[HeadEdit(0, [1, 3], "replace", val, positions=p)]):
            torch.testing.assert_close(logits(model, x), base, atol=ATOL, rtol=0)

    mean = t.heads[0][:, [2]].mean(0)  # [1, d]: mean over the batch of head 2
    def manual(m, a, o):
        o = o.clone()
        ar = torch.arange(x.shape[0])
        o[ar, pos] += mean[0] - manual_head_out(sites, 0, a[0][ar, pos], 2)
        return o
    h = sites.attn_out[0].register_forward_hook(manual)
    try:
        ref = logits(model, x)
    finally:
        h.remove()
    edit = HeadEdit(0, [2], "replace", mean, positions=pos)
    with trace(model, head_edits=[edit], read_heads=[0], positions=pos) as t2:
        got = logits(model, x)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(t2.heads[0][:, 2], mean.expand(3, -1), atol=ATOL, rtol=0)
    torch.testing.assert_close(t2.heads[0][:, 1], t.heads[0][:, 1], atol=ATOL, rtol=0)
    # post-edit read with "all" positions: only the edited sites change
    with trace(model, head_edits=[edit], read_heads=[0]) as t3:
        logits(model, x)
    ar = torch.arange(3)
    torch.testing.assert_close(t3.heads[0][ar, pos, 2], mean.expand(3, -1), atol=ATOL, rtol=0)
    torch.testing.assert_close(t3.heads[0][:, :-1], t_all.heads[0][:, :-1], atol=ATOL, rtol=0)
    torch.testing.assert_close(t3.heads[0][:, -1, [0, 1, 3]], t_all.heads[0][:, -1, [0, 1, 3]], atol=ATOL, rtol=0)


def test_add_then_subtract_and_empty_edit():
    model, x = make("llama"), ids()
    base = logits(model, x)
    v = torch.randn(64, generator=torch.Generator().manual_seed(3)) * 5
    pos = torch.tensor([5, 2, 4])
    for p in ("all", pos):
        with trace(model, residual_edits=[ResidualEdit(1, v, 2.0, p)]):
            assert not torch.allclose(logits(model, x), base, atol=1e-3)
        with trace(model, residual_edits=[ResidualEdit(1, v, 2.0, p), ResidualEdit(1, v, -2.0, p)]):
            torch.testing.assert_close(logits(model, x), base, atol=ATOL, rtol=0)
    # head "add" then "add" of the negation also cancels; empty zero-ablation is a no-op
    w = torch.randn(2, 64)
    with trace(model, head_edits=[HeadEdit(0, [0, 1], "add", w), HeadEdit(0, [0, 1], "add", -w)]):
        torch.testing.assert_close(logits(model, x), base, atol=ATOL, rtol=0)
    with trace(model, head_edits=[HeadEdit(0, [], "zero")]) as t:
        torch.testing.assert_close(logits(model, x), base, atol=ATOL, rtol=0)
    assert t.applied == [(0, 0, "zero")]
    with pytest.raises(ValueError):  # overlapping set-edits are ambiguous
        with trace(model, head_edits=[HeadEdit(0, [1], "zero"), HeadEdit(0, [1], "replace", w[:1])]):
            pass


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_prefill_only_during_generate(name):
    model = make(name)
    sites = ModelSites.of(model)
    x = ids(2, 4)
    v = torch.randn(64) * 5
    m = sites.attn_out[1]
    for prefill_only in (True, False):
        rec = []  # (seq_len, output - unedited projection output), registered after trace's hook
        edit = ResidualEdit(1, v, positions="all", prefill_only=prefill_only)
        with trace(model, residual_edits=[edit]) as t:
            h = m.register_forward_hook(
                lambda mod, a, o: rec.append((a[0].shape[1], o - nn.functional.linear(a[0], mod.weight, mod.bias)
                                              if isinstance(mod, nn.Linear) else o - (a[0] @ mod.weight + mod.bias))))
            try:
                with torch.no_grad():
                    model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                   max_new_tokens=5, min_new_tokens=5, pad_token_id=0)
            finally:
                h.remove()
        assert [s for s, _ in rec] == [4, 1, 1, 1, 1]
        for i, (_, d) in enumerate(rec):
            expect = v if (i == 0 or not prefill_only) else torch.zeros(64)
            torch.testing.assert_close(d, expect.expand_as(d), atol=1e-4, rtol=0)
        assert t.applied == [(1, i, "residual") for i in range(1 if prefill_only else 5)]


def test_padding_and_last_token_index():
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(left).tolist() == [4, 4, 4]
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert position_ids_from_mask(left)[0].tolist() == [0, 0, 0, 1, 2]

    model = make("llama")
    seqs = [ids(1, 5, seed=4)[0], ids(1, 3, seed=5)[0]]
    batch = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.zeros(2, 5, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, 5 - len(s):], mask[i, 5 - len(s):] = s, 1
    pos = last_token_index(mask)
    with torch.no_grad(), trace(model, read_heads=[0, 1], read_resid=[0, 1], positions=pos) as t:
        model(input_ids=batch, attention_mask=mask, position_ids=position_ids_from_mask(mask))
    ho = head_outputs(model, batch, mask)
    for i, s in enumerate(seqs):
        with torch.no_grad(), trace(model, read_heads=[0, 1], read_resid=[0, 1],
                                    positions=torch.tensor([len(s) - 1])) as ts:
            model(input_ids=s[None])
        for l in (0, 1):
            torch.testing.assert_close(t.heads[l][i], ts.heads[l][0], atol=ATOL, rtol=0)
            torch.testing.assert_close(t.resid[l][i], ts.resid[l][0], atol=ATOL, rtol=0)
            torch.testing.assert_close(ho[l][i], ts.heads[l][0], atol=ATOL, rtol=0)
    assert t.resid[0].shape == (2, 64) and t.heads[0].shape == (2, 4, 64)


def test_hooks_removed_even_on_exception():
    model = make("gpt2")
    sites = ModelSites.of(model)
    mods = sites.attn_out + sites.attn_in

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)

    kw = dict(read_heads=[0, 1], read_resid=[0, 1], head_edits=[HeadEdit(0, [1], "zero")],
              residual_edits=[ResidualEdit(1, torch.ones(64))])
    with trace(model, **kw):
        assert n_hooks() > 0
        logits(model, ids())
    assert n_hooks() == 0
    with pytest.raises(RuntimeError, match="boom"):
        with trace(model, **kw):
            raise RuntimeError("boom")
    assert n_hooks() == 0
    with pytest.raises(ValueError):  # bad positions raise inside the forward; hooks still removed
        with trace(model, read_heads=[0], positions=torch.tensor([99, 0, 0])):
            logits(model, ids())
    assert n_hooks() == 0


def test_unsupported_model():
    with pytest.raises(ValueError, match="Linear"):
        ModelSites.of(nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_zero_edit_everywhere_read_at_positions(name):
    """A zero edit at every position, read at one position per row: the edited heads read 0, the others as
    unedited (this combination used to index the read rows twice and fail)."""
    model, x = make(name), ids()
    pos = torch.tensor([5, 2, 4])
    with torch.no_grad(), trace(model, read_heads=[0], positions=pos) as t0:
        model(input_ids=x)
    with torch.no_grad(), trace(model, read_heads=[0], positions=pos, head_edits=[HeadEdit(0, [1, 2], "zero")]) as t:
        model(input_ids=x)
    assert torch.all(t.heads[0][:, [1, 2]] == 0)
    assert torch.equal(t.heads[0][:, [0, 3]], t0.heads[0][:, [0, 3]])


def test_trace_names_its_sites_and_counts_calls_per_hook():
    model = make("llama")
    x = ids()
    with torch.no_grad(), trace(model, read_heads=[1], read_resid=[0],
                                residual_edits=[ResidualEdit(0, torch.ones(64), prefill_only=True)]) as t:
        model(input_ids=x)
        model(input_ids=x)
    assert sorted(t.hooks) == ["blocks.0.hook_attn_out", "blocks.0.ln1.hook_normalized", "blocks.1.hook_attn_out"]
    assert [h.calls for h in t.hooks.values()] == [2, 2, 2]
    assert t.applied == [(0, 0, "residual")]  # prefill_only: the first call of that site only


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("head", range(4))
def test_zeroing_one_head_removes_exactly_that_heads_share(name, head):
    """The one-head ablation: the projection output loses head `head`'s share a_j = z_j W_O[j] and nothing
    else (written from weight slices, not from hooks.py), and every other head reads unchanged."""
    model, x = make(name), ids()
    sites = ModelSites.of(model)
    seen = {}
    h = sites.attn_out[1].register_forward_hook(lambda m, a, o: seen.__setitem__("clean", (a[0], o)))
    try:
        logits(model, x)
    finally:
        h.remove()
    z, clean_out = seen["clean"]
    with trace(model, head_edits=[HeadEdit(1, [head], "zero")], read_heads=[1]) as t:
        # registered after trace's hook, so it sees the edited output
        h = sites.attn_out[1].register_forward_hook(lambda m, a, o: seen.__setitem__("edited", o))
        try:
            logits(model, x)
        finally:
            h.remove()
    expected = clean_out - manual_head_out(sites, 1, z, head)
    torch.testing.assert_close(seen["edited"], expected, atol=ATOL, rtol=0)
    assert torch.all(t.heads[1][..., head, :] == 0)
    for other in set(range(4)) - {head}:
        torch.testing.assert_close(t.heads[1][..., other, :], manual_head_out(sites, 1, z, other), atol=ATOL, rtol=0)
