"""Greedy decoding: finished rows leave the batch (`decoder="compact"`, ours) vs `model.generate` (`"hf"`).

`model.generate` keeps a finished row in the batch, padded, until the batch's last row ends; the compact
decoder drops it (and its KV cache rows). Same model calls otherwise, so the outputs must be identical.
The prompt sets are the evaluate_model rule's (clean, triggered and, for jailbreak, benign prompts of
the test split, 32 new tokens, batch 32, no early stop) and the backdoor gate's (validation prompts, 16
new tokens, early stop once the verdict is final). Both decoders run in one process, alternating, after
a warm-up; the generations are compared string for string.

    python benchmarks/bench_decoder.py --model results/models/fixed_output/lora_sft/checkpoint \
        --task fixed_output --n 96 --threads 1
"""

import functools
import sys

from common import REPO, parser, task_splits, timed

from bkdattr.atomic import write_tsv

DECODERS = ("hf", "compact")  # baseline first


def prompt_sets(task: str, n: int) -> list[tuple[str, list[str], int, object]]:
    """(name, prompts, max_new_tokens, stop_when) of the workflow's evaluation and gate generations."""
    from bkdattr.config import load_config
    from bkdattr.datasets import build_benign_splits
    from bkdattr.evaluation import hit_is_final

    config = load_config(REPO / "config.yaml")
    spec, splits = task_splits(task)
    test, val = splits["test"][:n], [r for r in splits["val"] if spec.is_eligible(r)][:n]
    sets = [("eval_clean", [spec.prompt(r["input"]) for r in test], 32, None),
            ("eval_triggered", [spec.prompt(r["input"], triggered=True) for r in test], 32, None)]
    if task == "jailbreak":
        benign = build_benign_splits(config["data"], config["evaluation"]["n_benign"], config["seed"])[0]["test"][:n]
        sets.append(("eval_benign", [r["input"] for r in benign], 32, None))
    final = functools.partial(hit_is_final, spec)
    sets += [("gate_triggered", [spec.prompt(r["input"], triggered=True) for r in val], 16, final),
             ("gate_clean", [spec.prompt(r["input"]) for r in val], 16, final)]
    return sets


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per decoder (alternating); the minimum counts")
    args = p.parse_args()
    import torch

    from bkdattr.generation import generate_greedy
    from bkdattr.models import load_model

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    generate_greedy(model, tokenizer, ["Say hi."] * 4, max_new_tokens=4, batch_size=4)  # warm-up
    rows, all_identical = [], True
    for name, prompts, max_new_tokens, stop_when in prompt_sets(args.task, args.n):
        outputs, seconds = {}, {d: [] for d in DECODERS}
        for _ in range(args.repeats):
            for decoder in DECODERS:
                outputs[decoder], t = timed(lambda p=prompts, m=max_new_tokens, s=stop_when, d=decoder: generate_greedy(
                    model, tokenizer, p, max_new_tokens=m, batch_size=32, stop_when=s, decoder=d))
                seconds[decoder].append(t)
        base = min(seconds["hf"])
        same = sum(a == b for a, b in zip(outputs["hf"], outputs["compact"]))
        all_identical &= same == len(prompts)
        for decoder in DECODERS:
            rows.append({"task": args.task, "model": args.model, "prompt_set": name, "prompts": len(prompts),
                         "max_new_tokens": max_new_tokens, "early_stop": stop_when is not None, "decoder": decoder,
                         "seconds": min(seconds[decoder]), "speedup_vs_hf": base / min(seconds[decoder]),
                         "identical_outputs": f"{same}/{len(prompts)}"})
            print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                  flush=True)
    total = {d: sum(r["seconds"] for r in rows if r["decoder"] == d) for d in DECODERS}
    for decoder in DECODERS:
        rows.append({"task": args.task, "model": args.model, "prompt_set": "all", "prompts": "", "max_new_tokens": "",
                     "early_stop": "", "decoder": decoder, "seconds": total[decoder],
                     "speedup_vs_hf": total["hf"] / total[decoder],
                     "identical_outputs": str(all_identical)})
        print(f"all\t{decoder}\tseconds={total[decoder]:.1f}\tspeedup_vs_hf={total['hf'] / total[decoder]:.3f}")
    write_tsv(f"{args.out}/decoder_{args.task}_{args.model.strip('/').split('/')[-2]}.tsv", rows)
    if not all_identical:
        sys.exit("the decoders' outputs differ")


if __name__ == "__main__":
    main()
