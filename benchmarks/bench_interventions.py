"""Head ablation (Table 1): the speed-ups of `InterventionEvaluator` against the plain path.

- prefix reuse: an ablation at the last prompt token in prefill (and the backdoor vector) leaves every
  earlier position unchanged, so each prompt set's prefix KV cache is computed once and every setting's
  generation starts from a copy (`reuse_prefix`);
- early stop: a row stops generating once every verdict read from it is final (the target or a refusal
  keyword has appeared; `early_stop`, rules in `evaluation.hit_is_final` / `clean_verdicts_final`);
- compact decoding: a finished row leaves the batch instead of riding along padded (`decoder="compact"`
  against `model.generate`, `"hf"`);
- the shared prompt prefix: the tokens every prompt of a set shares run once per set (`share_prefix`; for
  the all-positions ablation, once per setting, under the ablation).

The baseline is the first of --paths (default: the evaluator with all three off, the path before them).
Same model, items, settings and run; the rows (ASR, false triggers, utility and over-refusal per setting)
must be identical, only the time differs. Each path runs in its own process, so its peak RSS is its own. Jailbreak includes the benign
requests of the over-refusal rate, as the workflow's ablation does.

    python benchmarks/bench_interventions.py --model results/models/jailbreak/lora_sft/checkpoint \
        --task jailbreak --n 64
"""

import json
import random
import resource
import subprocess
import sys

from common import REPO, parser, timed

from bkdattr.atomic import write_tsv

K_VALUES = [0, 1, 2, 4]
SEEDS = [1, 2, 3]
PATHS = {  # name -> (reuse_prefix, early_stop, decoder, share_prefix, description)
    "plain": (False, False, "hf", False,
              "recompute the prompt every setting, full-length rows, model.generate (baseline)"),
    "reuse": (True, False, "hf", False, "reuse the prompt prefix"),
    "reuse_early_stop": (True, True, "hf", False, "reuse the prompt prefix + stop rows once their verdict is final"),
    "reuse_early_stop_compact": (True, True, "compact", False, "the same, finished rows leave the batch"),
    "reuse_early_stop_compact_shared": (True, True, "compact", True,
                                        "the same, the tokens all prompts share run once per set (ours)"),
}


def run_one(args, path: str) -> dict:
    import torch

    from bkdattr.datasets import build_benign_splits, build_task_splits
    from bkdattr.config import load_config
    from bkdattr.interventions import InterventionEvaluator, run_ablation
    from bkdattr.models import load_model
    from bkdattr.tasks import TaskSpec

    torch.set_num_threads(args.threads)
    config = load_config(REPO / "config.yaml")
    spec = TaskSpec.from_config(args.task, config["tasks"][args.task], config["evaluation"]["refusal_matcher"])
    test = build_task_splits(spec, config["data"], config["seed"])["test"]
    model, tokenizer = load_model(args.model)
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    every = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    k_values = [k for k in K_VALUES if 2 * k <= len(every)]  # random controls need k heads outside the top k
    ranking = random.Random(0).sample(every, max(k_values))  # any fixed ranking: both paths ablate the same heads
    reuse, early_stop, decoder, share_prefix, _ = PATHS[path]
    benign = (build_benign_splits(config["data"], config["evaluation"]["n_benign"], config["seed"])[0]["test"]
              if args.task == "jailbreak" else None)
    evaluator = InterventionEvaluator(model, tokenizer, spec, test, max_new_tokens=32, batch_size=32, n_eval=args.n,
                                      benign=benign, reuse_prefix=reuse, early_stop=early_stop,
                                      decoder=decoder, share_prefix=share_prefix)
    rows, seconds = timed(lambda: run_ablation(evaluator, ranking, n_layers, n_heads, k_values=k_values,
                                               random_seeds=SEEDS, all_positions_variant=True))
    return {"rows": rows, "seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--one", choices=list(PATHS), help="internal: run one path, print JSON")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS),
                   help="paths to run; the first is the baseline of the ratios")
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args, args.one)))
        return
    results = {}
    for path in args.paths:  # each in its own process, so peak memory is its own
        cmd = [sys.executable, __file__, "--one", path, "--model", args.model, "--task", args.task, "--n", str(args.n),
               "--threads", str(args.threads)]
        results[path] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    baseline = results[args.paths[0]]
    table = [{"path": name, "description": PATHS[name][4], "task": args.task, "n_items": args.n,
              "settings": len(r["rows"]), "seconds": r["seconds"], "max_rss_mb": r["max_rss_mb"],
              "speedup_vs_baseline": baseline["seconds"] / r["seconds"],
              "memory_vs_baseline": r["max_rss_mb"] / baseline["max_rss_mb"],
              "identical_rows": r["rows"] == baseline["rows"]} for name, r in results.items()]
    write_tsv(f"{args.out}/interventions_{args.task}.tsv", table)
    for r in table:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    if not all(r["identical_rows"] for r in table):
        sys.exit("the ablation rows differ between the paths")


if __name__ == "__main__":
    main()
