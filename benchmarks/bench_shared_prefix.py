"""The tokens every prompt of a set shares, run once (`share_prefix=True`, generation.SharedPrefix) vs run in
every prompt (`share_prefix=False`, the baseline), on the workflow's own prompt sets:

  generation   the evaluate_model rule's sets (test split: clean, triggered, and jailbreak's benign requests;
               32 new tokens) and the backdoor gate's (validation: 16 new tokens, early stop), compact decoder;
               outputs compared string for string
  prefixes     the interventions' prompt prefixes (PromptPrefixes: every prompt minus its last token), then
               one unedited generation from them (32 tokens); outputs compared
  cache        cache_activations of the attribution pool (clean and triggered prompts; rule
               cache_activations); largest absolute difference of the cached tensors
  reference    the reference log-probability of evaluate_model (clean test prompts and their reference
               answers); largest absolute difference

Both paths run in one process, alternating, after a warm-up; the minimum of `--repeats` runs counts.

    python benchmarks/bench_shared_prefix.py --model results/models/base/checkpoint --task fixed_output \
        --n 96 --threads 1
"""

import sys

from bench_decoder import prompt_sets
from common import parser, task_splits, timed

from bkdattr.atomic import write_tsv

PATHS = (False, True)  # share_prefix; baseline first


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    import torch

    from bkdattr.caching import cache_activations
    from bkdattr.generation import PromptPrefixes, generate_greedy
    from bkdattr.models import load_model
    from bkdattr.utility import reference_logprobs

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    generate_greedy(model, tokenizer, ["Say hi."] * 4, max_new_tokens=4, batch_size=4)  # warm-up

    jobs = []  # (use, prompt set, n prompts, fn(share) -> result, compare(a, b) -> (identical?, detail))
    same_text = lambda a, b: (a == b, f"{sum(x == y for x, y in zip(a, b))}/{len(a)} identical")  # noqa: E731
    for name, prompts, max_new, stop_when in prompt_sets(args.task, args.n):
        jobs.append(("generation", name, len(prompts), lambda s, p=prompts, m=max_new, w=stop_when: generate_greedy(
            model, tokenizer, p, max_new_tokens=m, batch_size=32, stop_when=w, share_prefix=s), same_text))
        if name in ("eval_clean", "eval_triggered"):
            jobs.append(("prefixes", name, len(prompts), lambda s, p=prompts: PromptPrefixes(
                model, tokenizer, p, batch_size=32, share_prefix=s).generate(max_new_tokens=32), same_text))

    def max_diff(a, b):  # float32 rounding of other matmul shapes: judged relative to each tensor's scale
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        relative = max(((a[k] - b[k]).abs().max() / a[k].abs().max()).item() for k in a)
        return relative <= 1e-5, f"max abs diff {diff:.2e} (relative to the largest value {relative:.1e})"

    spec, splits = task_splits(args.task)
    # the cache_activations rule's prompts: each attribution-pool item clean, then triggered
    pool = [spec.prompt(r["input"], triggered=t) for r in splits["attribution"][: args.n] for t in (False, True)]
    jobs.append(("cache", "attribution_pool", len(pool), lambda s: cache_activations(
        model, tokenizer, pool, batch_size=16, share_prefix=s), max_diff))
    test = splits["test"][: args.n]
    ref_prompts, references = [spec.prompt(r["input"]) for r in test], [r["output"] for r in test]
    jobs.append(("reference", "eval_clean", len(ref_prompts), lambda s: torch.tensor(reference_logprobs(
        model, tokenizer, ref_prompts, references, batch_size=32, share_prefix=s)),
        # mean log-probabilities per token (about -0.5 to -3), reported to 3 decimals: equal within 1e-4
        lambda a, b: ((a - b).abs().max().item() <= 1e-4, f"max abs diff {(a - b).abs().max().item():.2e}")))

    rows, all_equal = [], True
    for use, name, n, fn, compare in jobs:
        results, seconds = {}, {s: [] for s in PATHS}
        for _ in range(args.repeats):
            for share in PATHS:
                results[share], t = timed(lambda f=fn, s=share: f(s))
                seconds[share].append(t)
        equal, detail = compare(results[False], results[True])
        all_equal &= equal
        base = min(seconds[False])
        for share in PATHS:
            rows.append({"task": args.task, "model": args.model, "use": use, "prompt_set": name, "prompts": n,
                         "share_prefix": share, "seconds": min(seconds[share]),
                         "speedup_vs_whole_prompts": base / min(seconds[share]), "same_result": detail})
            print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                  flush=True)
    total = {s: sum(r["seconds"] for r in rows if r["share_prefix"] == s) for s in PATHS}
    for share in PATHS:
        rows.append({"task": args.task, "model": args.model, "use": "all", "prompt_set": "", "prompts": "",
                     "share_prefix": share, "seconds": total[share],
                     "speedup_vs_whole_prompts": total[False] / total[share], "same_result": str(all_equal)})
        print(f"all\tshare_prefix={share}\tseconds={total[share]:.1f}\tspeedup={total[False] / total[share]:.3f}")
    write_tsv(f"{args.out}/shared_prefix_{args.task}_{args.model.strip('/').split('/')[-2]}.tsv", rows)
    if not all_equal:
        sys.exit("sharing the prompt prefix changed a result")


if __name__ == "__main__":
    main()
