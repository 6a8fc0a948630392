"""Two jobs at a time with one thread each, against one job at a time with two threads (the workflow's rules
declare `threads: 2`, so `snakemake --cores 2` runs its jobs one after another).

Each workload is one workflow job's kind of work, run in its own process as Snakemake would:
  generate -- greedy generation of --n prompts, 32 new tokens, batch 32 (evaluation, ablation, steering);
  train    -- --steps optimiser steps of the default LoRA SFT (injection), batch 16 as micro-batches.
Baseline: two copies one after the other, 2 torch threads each. Candidate: the two copies at once, 1 thread
each. Reported: wall time of the pair, the ratio, and whether the outputs (generations; per-step losses) of
1 and 2 threads agree.
    python benchmarks/bench_job_threads.py [--model DIR] [--workloads generate train] [--n 64] [--steps 4]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parser, prompts

from bkdattr.atomic import write_tsv


def worker(args) -> None:
    import torch

    from bkdattr.models import load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    started = time.perf_counter()
    if args.worker == "generate":
        from bkdattr.generation import generate_greedy

        result = generate_greedy(model, tokenizer, prompts(args.task, args.n), max_new_tokens=32, batch_size=32)
    else:
        from bkdattr.config import load_config, task_injection
        from bkdattr.datasets import build_task_splits
        from bkdattr.tasks import TaskSpec
        from bkdattr.injection.sft import build_examples, train_backdoor

        config = load_config(str(Path(__file__).resolve().parents[1] / "config.yaml"))
        spec = TaskSpec.from_config(args.task, config["tasks"][args.task])
        injection = task_injection(config, args.task)
        rows = build_task_splits(spec, config["data"], config["seed"])["train"][: args.steps * injection["batch_size"]]
        examples = build_examples(tokenizer, spec, rows, injection["max_length"])
        trained = train_backdoor(model, tokenizer, examples, method="lora_sft",
                                 injection_cfg={**injection, "epochs": 1, "schedule": "fixed"}, seed=config["seed"])
        result = [round(r["loss"], 6) for r in trained.loss_log]
    Path(args.result).write_text(json.dumps({"seconds": time.perf_counter() - started, "result": result}))


def run_pair(args, workload: str, threads: int, parallel: bool, tmp: Path) -> tuple[float, list]:
    cmd = [sys.executable, __file__, "--worker", workload, "--model", args.model, "--task", args.task,
           "--n", str(args.n), "--steps", str(args.steps), "--threads", str(threads)]
    outs = [tmp / f"{workload}_{threads}_{i}.json" for i in range(2)]
    started = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(cmd + ["--result", str(o)]) for o in outs]
        if any(p.wait() for p in procs):
            raise SystemExit(f"a {workload} worker failed")
    else:
        for o in outs:
            subprocess.run(cmd + ["--result", str(o)], check=True)
    wall = time.perf_counter() - started
    return wall, [json.loads(o.read_text()) for o in outs]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workloads", nargs="+", default=["generate", "train"], choices=["generate", "train"])
    p.add_argument("--steps", type=int, default=4)
    p.set_defaults(task="jailbreak")
    p.add_argument("--worker", choices=["generate", "train"], help=argparse_hidden())
    p.add_argument("--result", help=argparse_hidden())
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads:
            serial, serial_out = run_pair(args, workload, threads=2, parallel=False, tmp=Path(tmp))
            pair, pair_out = run_pair(args, workload, threads=1, parallel=True, tmp=Path(tmp))
            a, b = serial_out[0]["result"], pair_out[0]["result"]
            if workload == "generate":
                agree = f"{sum(x == y for x, y in zip(a, b))}/{len(a)} identical generations"
            else:
                agree = f"max rel loss diff {max(abs(x - y) / abs(x) for x, y in zip(a, b)):.2e}"
            rows.append({"workload": workload, "serial_2_threads_s": serial, "parallel_2x1_thread_s": pair,
                         "speedup": serial / pair, "one_job_2_threads_s": serial_out[0]["seconds"],
                         "one_job_1_thread_s": pair_out[0]["seconds"], "agreement_1_vs_2_threads": agree})
            print("\t".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                  flush=True)
    write_tsv(f"{args.out}/job_threads.tsv", rows)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
