"""Head ablation (Table 1) with the prompt prefix reused across settings vs recomputed for each setting.

An ablation at the last prompt token in prefill (and the backdoor vector) leaves every earlier position
unchanged, so `InterventionEvaluator` computes each prompt set's prefix KV cache once and starts every
setting's generation from a copy. The baseline is the same evaluator with `reuse_prefix=False` (the path
before this change). Same model, items, settings and run; the rows (ASR, false triggers, utility per
setting) must be identical, only the time differs. Peak RSS of each path is read in its own process.

    python benchmarks/bench_interventions.py --model results/models/label_modification/lora_sft/checkpoint \
        --task label_modification --n 64
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


def run_one(args, reuse: bool) -> dict:
    import torch

    from bkdattr.datasets import build_task_splits
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
    evaluator = InterventionEvaluator(model, tokenizer, spec, test, max_new_tokens=32, batch_size=32, n_eval=args.n,
                                      reuse_prefix=reuse)
    rows, seconds = timed(lambda: run_ablation(evaluator, ranking, n_layers, n_heads, k_values=k_values,
                                               random_seeds=SEEDS, all_positions_variant=True))
    return {"rows": rows, "seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--one", choices=["reuse", "plain"], help="internal: run one path, print JSON")
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args, args.one == "reuse")))
        return
    results = {}
    for path in ("plain", "reuse"):  # each in its own process, so peak memory is its own
        cmd = [sys.executable, __file__, "--one", path, "--model", args.model, "--task", args.task, "--n", str(args.n),
               "--threads", str(args.threads)]
        results[path] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    same = results["plain"]["rows"] == results["reuse"]["rows"]
    settings = len(results["plain"]["rows"])
    table = [{"path": "recompute the prompt every setting (baseline)", "settings": settings,
              "seconds": results["plain"]["seconds"], "max_rss_mb": results["plain"]["max_rss_mb"]},
             {"path": "reuse the prompt prefix (ours)", "settings": settings,
              "seconds": results["reuse"]["seconds"], "max_rss_mb": results["reuse"]["max_rss_mb"]}]
    for r in table:
        r["speedup_vs_baseline"] = results["plain"]["seconds"] / r["seconds"]
        r["memory_vs_baseline"] = r["max_rss_mb"] / results["plain"]["max_rss_mb"]
        r["identical_rows"] = same
        r["task"] = args.task
        r["n_items"] = args.n
    write_tsv(f"{args.out}/interventions_prefix_reuse.tsv", table)
    for r in table:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    if not same:
        sys.exit("the ablation rows differ between the two paths")


if __name__ == "__main__":
    main()
