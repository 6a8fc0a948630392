"""Shared by the benchmarks: model and prompts of the default workflow, timing, result table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # bkdattr itself is imported installed (pip install -e .)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=str(REPO / "results/models/base/checkpoint"),
                   help="HF checkpoint directory (default: the default workflow's SmolLM2 base model)")
    p.add_argument("--task", default="fixed_output")
    p.add_argument("--n", type=int, default=64, help="number of prompts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks/results"))
    return p


def prompts(task: str, n: int, seed: int = 0) -> list[str]:
    """Clean + triggered prompts of the synthetic data (as the workflow builds them)."""
    from bkdattr.synthetic import GENERATORS
    from bkdattr.tasks import TaskSpec

    spec = TaskSpec.from_config(task)
    items = GENERATORS[task](n // 2 + 1, seed)
    return [spec.prompt(r["input"], triggered=t) for r in items for t in (False, True)][:n]


def task_splits(task: str):
    """(spec, splits) of the default config's task: the workflow's own test / val / attribution splits."""
    from bkdattr.config import load_config
    from bkdattr.datasets import build_task_splits
    from bkdattr.tasks import TaskSpec

    config = load_config(REPO / "config.yaml")
    spec = TaskSpec.from_config(task, config["tasks"][task], config["evaluation"]["refusal_matcher"])
    return spec, build_task_splits(spec, config["data"], config["seed"])


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
