"""Cache throughput: dynamic padding vs every prompt padded to 256 tokens (the official scripts' way).

Same model, same prompts, same run; reports prompts/s of each and the ratio.
    python benchmarks/bench_cache.py [--model DIR] [--n 64]
"""

from common import parser, prompts, timed

from bkdattr.atomic import write_tsv


def main() -> None:
    args = parser(__doc__).parse_args()
    import torch

    from bkdattr.caching import cache_activations
    from bkdattr.models import load_model

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    texts = prompts(args.task, args.n)
    cache_activations(model, tokenizer, texts[:4], batch_size=4)  # warm-up
    dynamic, t_dynamic = timed(lambda: cache_activations(model, tokenizer, texts, batch_size=16))
    fixed, t_fixed = timed(lambda: cache_activations(model, tokenizer, texts, batch_size=16, padding="fixed",
                                                     fixed_length=256))
    diff = max((dynamic[k] - fixed[k]).abs().max().item() for k in dynamic)
    rows = [{"mode": "fixed_256 (baseline)", "prompts": len(texts), "seconds": t_fixed, "prompts_per_s": len(texts) / t_fixed},
            {"mode": "dynamic", "prompts": len(texts), "seconds": t_dynamic, "prompts_per_s": len(texts) / t_dynamic}]
    for r in rows:
        r["speedup_vs_baseline"] = t_fixed / r["seconds"]
        r["max_abs_diff_vs_baseline"] = diff
    write_tsv(f"{args.out}/cache_throughput.tsv", rows)
    for r in rows:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
