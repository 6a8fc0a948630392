"""Generation throughput: our batched, dynamically padded, KV-cached greedy path vs prompts padded to 256.

Same model, prompts and run. The baseline left-pads every prompt to 256 tokens (the official scripts'
way); outputs must be identical, only the time differs.
    python benchmarks/bench_generation.py [--model DIR] [--n 64]
"""

from common import parser, prompts, timed

from bkdattr.atomic import write_tsv


def generate_fixed_256(model, tokenizer, texts, max_new_tokens, batch_size):
    import torch

    from bkdattr.chat import encode_prompt, pad_batch

    outputs = []
    for i in range(0, len(texts), batch_size):
        seqs = [encode_prompt(tokenizer, t).input_ids for t in texts[i:i + batch_size]]
        ids, mask = pad_batch(seqs + [[tokenizer.pad_token_id] * 256], tokenizer.pad_token_id, side="left")
        ids, mask = torch.tensor(ids[:-1]), torch.tensor(mask[:-1])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        outputs += [tokenizer.decode(o[ids.shape[1]:], skip_special_tokens=True).strip() for o in out]
    return outputs


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--max-new-tokens", type=int, default=32)
    args = p.parse_args()
    import torch

    from bkdattr.generation import generate_greedy
    from bkdattr.models import load_model

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    texts = prompts(args.task, args.n)
    generate_greedy(model, tokenizer, texts[:4], max_new_tokens=4, batch_size=4)  # warm-up
    ours, t_ours = timed(lambda: generate_greedy(model, tokenizer, texts, max_new_tokens=args.max_new_tokens,
                                                 batch_size=32))
    base, t_base = timed(lambda: generate_fixed_256(model, tokenizer, texts, args.max_new_tokens, 32))
    same = sum(a == b for a, b in zip(ours, base))
    rows = [{"mode": "fixed_256 (baseline)", "prompts": len(texts), "seconds": t_base, "prompts_per_s": len(texts) / t_base},
            {"mode": "dynamic (ours)", "prompts": len(texts), "seconds": t_ours, "prompts_per_s": len(texts) / t_ours}]
    for r in rows:
        r["speedup_vs_baseline"] = t_base / r["seconds"]
        r["identical_outputs"] = f"{same}/{len(texts)}"
    write_tsv(f"{args.out}/generation_throughput.tsv", rows)
    for r in rows:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
