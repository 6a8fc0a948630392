"""Injection trainer: TRL's SFTTrainer (the workflow's path) vs the hand-written loop it replaced, and the
token-budget micro-batches (injection.micro_batch_tokens) vs the whole batch in one pass.

Same model, data (the workflow's own poisoned training split and chat encoding), seed, LoRA and
optimiser settings, in one run. Each path runs in its own process so its peak resident memory
(ru_maxrss) is its own. Reported: seconds per optimiser step, peak RSS, the largest relative difference
of the per-step losses against the whole-batch TRL path (micro-batches must give the same steps), and,
with --full, the held-out ASR / false-trigger rate / clean utility of the trained models.
    python benchmarks/bench_training.py [--model DIR] [--task fixed_output] [--steps 8] [--full]
    python benchmarks/bench_training.py --preset presets/long_answers.yaml --paths trl_whole_batch trl  # real-length rows
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import yaml

from common import REPO, parser

from bkdattr.atomic import write_tsv_union


PATHS = {  # name -> what runs
    "loop": "hand-written loop (whole batch)",
    "trl_whole_batch": "TRL SFTTrainer, whole batch in one pass",
    "trl": "TRL SFTTrainer, micro-batches of injection.micro_batch_tokens (the workflow's path)",
}


def deep_merge(base: dict, override: dict) -> dict:
    """Snakemake's --configfile layering: nested mappings merged key by key, the later file winning."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def bench_config(preset: str | None) -> dict:
    from bkdattr.config import check_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if preset:
        config = deep_merge(config, yaml.safe_load((REPO / preset).read_text()))
    return check_config(config, f"config.yaml + {preset}" if preset else "config.yaml")


def run_one(args) -> dict:
    """Train with one trainer (in this process) and report its numbers as JSON on stdout."""
    import torch

    from bkdattr.config import task_injection
    from bkdattr.datasets import build_task_splits
    from bkdattr.evaluation import evaluate_generations
    from bkdattr.models import load_model
    from bkdattr.tasks import TaskSpec
    from bkdattr.injection.sft import build_examples, train_backdoor

    torch.set_num_threads(args.threads)
    config = bench_config(args.preset)
    spec = TaskSpec.from_config(args.task, config["tasks"][args.task])
    splits = build_task_splits(spec, config["data"], config["seed"])
    injection = task_injection(config, args.task)
    if args.path == "trl_whole_batch":
        injection["micro_batch_tokens"] = None
    if not args.full:  # a fixed number of optimiser steps is enough for step time and memory
        steps_per_epoch = len(splits["train"]) / (injection["batch_size"] * injection["grad_accum"])
        injection["epochs"] = args.steps / steps_per_epoch
    model, tokenizer = load_model(args.model)
    examples = build_examples(tokenizer, spec, splits["train"], injection["max_length"])
    started = time.perf_counter()
    if args.path in ("trl", "trl_whole_batch"):
        result = train_backdoor(model, tokenizer, examples, method="lora_sft", injection_cfg=injection,
                                seed=config["seed"], threads=args.threads)
        model, log = result.model, result.loss_log
    else:
        from baseline_training_loop import train_backdoor_loop

        model, log = train_backdoor_loop(model, tokenizer, examples, method="lora_sft", injection_cfg=injection,
                                         seed=config["seed"], threads=args.threads)
    seconds = time.perf_counter() - started
    out = {"path": args.path, "description": PATHS[args.path], "task": args.task, "preset": args.preset or "",
           "batch_size": injection["batch_size"], "micro_batch_tokens": injection.get("micro_batch_tokens"),
           "longest_example": max(len(e["input_ids"]) for e in examples),
           "steps": len(log), "seconds": seconds, "s_per_step": seconds / max(1, len(log)),
           "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"], "losses": [r["loss"] for r in log],
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if args.full:
        metrics = evaluate_generations(model, tokenizer, spec, splits["test"], max_new_tokens=32, batch_size=32).metrics
        out.update({f"test_{k}": metrics[k]["value"] for k in ("asr", "false_trigger_rate", "clean_utility")})
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=8, help="optimiser steps per trainer (ignored with --full)")
    p.add_argument("--full", action="store_true", help="train the configured epochs and evaluate on the test split")
    p.add_argument("--preset", help="a preset layered on config.yaml, e.g. presets/long_answers.yaml")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS), help="paths to compare; the first is the baseline")
    p.add_argument("--path", choices=list(PATHS), help="internal: run one path in this process")
    args = p.parse_args()
    if args.path:  # child process
        print(json.dumps(run_one(args)))
        return
    rows = []
    for path in args.paths:
        cmd = [sys.executable, __file__, "--path", path, "--model", args.model, "--task", args.task,
               "--steps", str(args.steps), "--threads", str(args.threads)] + (["--full"] if args.full else []) \
            + (["--preset", args.preset] if args.preset else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    baseline = rows[0]
    losses = {r["path"]: r.pop("losses") for r in rows}
    for r in rows:
        r["step_time_vs_baseline"] = r["s_per_step"] / baseline["s_per_step"]
        r["peak_rss_vs_baseline"] = r["peak_rss_gb"] / baseline["peak_rss_gb"]
        if r["path"] == "trl" and "trl_whole_batch" in losses:  # micro-batch steps must be the whole-batch steps
            r["loss_max_rel_diff_vs_whole_batch"] = max(
                abs(a - b) / abs(b) for a, b in zip(losses["trl"], losses["trl_whole_batch"]))
    name = "training_" + "_vs_".join(args.paths) + ("_" + args.preset.split("/")[-1].removesuffix(".yaml") if args.preset else "")
    write_tsv_union(f"{args.out}/{name}{'_full' if args.full else ''}.tsv", rows)
    for r in rows:
        print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
