"""Injection trainer: TRL's SFTTrainer (the workflow's path) vs the hand-written loop it replaced.

Same model, data (the workflow's own poisoned training split and chat encoding), seed, LoRA and
optimiser settings, in one run. Each trainer runs in its own process so its peak resident memory
(ru_maxrss) is its own. Reported: seconds per optimiser step, peak RSS, and, with --full, the held-out
ASR / false-trigger rate / clean utility of the trained models (the evaluate_model code path).
    python benchmarks/bench_training.py [--model DIR] [--task fixed_output] [--steps 8] [--full]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from common import REPO, parser

from bkdattr.atomic import write_tsv


def run_one(args) -> dict:
    """Train with one trainer (in this process) and report its numbers as JSON on stdout."""
    import torch

    from bkdattr.config import load_config, task_injection
    from bkdattr.datasets import build_task_splits
    from bkdattr.evaluation import evaluate_generations
    from bkdattr.models import load_model
    from bkdattr.tasks import TaskSpec
    from bkdattr.training import build_examples, train_backdoor

    torch.set_num_threads(args.threads)
    config = load_config(REPO / "config.yaml")
    spec = TaskSpec.from_config(args.task, config["tasks"][args.task])
    splits = build_task_splits(spec, config["data"], config["seed"])
    injection = task_injection(config, args.task)
    if not args.full:  # a fixed number of optimiser steps is enough for step time and memory
        steps_per_epoch = len(splits["train"]) / (injection["batch_size"] * injection["grad_accum"])
        injection["epochs"] = args.steps / steps_per_epoch
    model, tokenizer = load_model(args.model)
    examples = build_examples(tokenizer, spec, splits["train"], injection["max_length"])
    started = time.perf_counter()
    if args.path == "trl":
        result = train_backdoor(model, tokenizer, examples, method="lora_sft", injection_cfg=injection,
                                seed=config["seed"], threads=args.threads)
        model, log = result.model, result.loss_log
    else:
        from baseline_training_loop import train_backdoor_loop

        model, log = train_backdoor_loop(model, tokenizer, examples, method="lora_sft", injection_cfg=injection,
                                         seed=config["seed"], threads=args.threads)
    seconds = time.perf_counter() - started
    out = {"trainer": args.path, "steps": len(log), "seconds": seconds, "s_per_step": seconds / max(1, len(log)),
           "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if args.full:
        metrics = evaluate_generations(model, tokenizer, spec, splits["test"], max_new_tokens=32, batch_size=32).metrics
        out.update({f"test_{k}": metrics[k]["value"] for k in ("asr", "false_trigger_rate", "clean_utility")})
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=8, help="optimiser steps per trainer (ignored with --full)")
    p.add_argument("--full", action="store_true", help="train the configured epochs and evaluate on the test split")
    p.add_argument("--path", choices=("trl", "loop"), help="internal: run one trainer in this process")
    args = p.parse_args()
    if args.path:  # child process
        print(json.dumps(run_one(args)))
        return
    rows = []
    for path in ("loop", "trl"):
        cmd = [sys.executable, __file__, "--path", path, "--model", args.model, "--task", args.task,
               "--steps", str(args.steps), "--threads", str(args.threads)] + (["--full"] if args.full else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    loop = rows[0]
    for r in rows:
        r["step_time_vs_loop"] = r["s_per_step"] / loop["s_per_step"]
        r["peak_rss_vs_loop"] = r["peak_rss_gb"] / loop["peak_rss_gb"]
    write_tsv(f"{args.out}/training_trl_vs_loop{'_full' if args.full else ''}.tsv", rows)
    for r in rows:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
