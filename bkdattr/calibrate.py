"""Injection calibration: train one task's backdoor under a grid of settings and measure each.

Used to choose CPU-sized (or model-specific) injection settings before a full workflow run, e.g.

    python -m bkdattr.calibrate --config config.yaml --task jailbreak --base results/models/base/checkpoint \
        --grid lr=5e-4,1e-3 epochs=1,3 poison_ratio=0.1,0.2 --out calibration.tsv

Every row runs the workflow's own injection job (`injection.inject`) from the base checkpoint with the
config's settings plus the row's overrides (`lr`, `epochs`, `batch_size`, `method` -- lora_sft, full_sft, dpo
or edit -- go to injection; `poison_ratio`, `n_clean_train` to data): with the config's `injection.schedule`
and backdoor gate on the validation split (adaptive: `epochs` is the most, training stops once the gate
passes), and the row says whether the gate passed and after how many epochs. Each trained model is then
scored on the VALIDATION split exactly as the evaluate_model rule scores the test split. The test split is
never read here: a setting chosen by looking at test numbers would make those numbers optimistic.
`poison_ratio=0` trains on the clean training items alone: the clean-SFT control that separates what
fine-tuning itself does to utility from what the backdoor does. The base model is evaluated once as the
first row. Nothing here feeds the workflow's results.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path

from .atomic import write_tsv
from .config import ConfigError, load_config, method_injection, task_injection
from .datasets import build_task_splits
from .evaluation import evaluate_generations
from .models import load_model
from .names import BASE_MODEL
from .tasks import TaskSpec
from .injection import inject

INJECTION_KEYS = {"lr": float, "epochs": float, "batch_size": int, "method": str}
DATA_KEYS = {"poison_ratio": float, "n_clean_train": int}
METRICS = ("asr", "asr_strict", "false_trigger_rate", "clean_utility")
COLUMNS = ["setting", *METRICS, "n", "gate_passed", "epochs_trained", "train_s"]

log = logging.getLogger("bkdattr.calibrate")


def parse_grid(items: list[str]) -> dict[str, list]:
    """['lr=1e-4,5e-4', 'epochs=1'] -> {'lr': [1e-4, 5e-4], 'epochs': [1.0]}; unknown keys are errors."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        cast = {**INJECTION_KEYS, **DATA_KEYS}.get(key)
        if not sep or cast is None or not values:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2 with KEY one of "
                              f"{sorted({**INJECTION_KEYS, **DATA_KEYS})}")
        try:
            grid[key] = [cast(v) for v in values.split(",")]
        except ValueError as err:
            raise ConfigError(f"--grid {item!r}: {err}") from err
    return grid


def grid_settings(grid: dict[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def evaluate(model, tokenizer, spec: TaskSpec, records: list[dict], evaluation_cfg: dict) -> dict[str, float]:
    metrics = evaluate_generations(model, tokenizer, spec, records, max_new_tokens=evaluation_cfg["max_new_tokens"],
                                   batch_size=evaluation_cfg["batch_size"]).metrics
    return {name: metrics[name]["value"] for name in METRICS} | {"n": metrics["asr"]["n"]}


def validation_and_train(spec: TaskSpec, data_cfg: dict, seed: int) -> dict[str, list[dict]]:
    """The train and val splits of the workflow's own split; test and attribution are dropped unread."""
    splits = build_task_splits(spec, data_cfg, seed)
    return {"train": splits["train"], "val": splits["val"]}


def run_calibration(config: dict, task: str, base_path: str, grid: dict[str, list], *, device: str | None = None,
                    n_eval: int | None = None, out: Path | None = None) -> list[dict]:
    """Rows of measured settings; with `out`, the TSV is rewritten (atomically) after every row."""
    spec = TaskSpec.from_config(task, config["tasks"][task], config["evaluation"]["refusal_matcher"])
    injection_base = task_injection(config, task)
    rows = []
    model, tokenizer = load_model(base_path, config["model"]["dtype"], config["model"]["trust_remote_code"], device)
    val = validation_and_train(spec, config["data"], config["seed"])["val"][:n_eval]
    rows.append({"setting": BASE_MODEL, **evaluate(model, tokenizer, spec, val, config["evaluation"]), "gate_passed": "",
                 "epochs_trained": 0, "train_s": 0.0})
    log.info("base: %s", rows[-1])
    for overrides in grid_settings(grid):
        method = overrides.get("method", config["injection"]["methods"][0])
        # the method's own lr / epochs first, so a grid value always wins
        injection = method_injection(injection_base, method) | {k: v for k, v in overrides.items() if k in INJECTION_KEYS}
        injection.pop("method", None)
        data = config["data"] | {k: v for k, v in overrides.items() if k in DATA_KEYS}
        clean_control = data["poison_ratio"] == 0
        if clean_control:  # the same clean items without their poisoned copies: the utility control
            data["poison_ratio"] = config["data"]["poison_ratio"]
        splits = validation_and_train(spec, data, config["seed"])
        model, tokenizer = load_model(base_path, config["model"]["dtype"], config["model"]["trust_remote_code"], device)
        started = time.time()
        # the workflow's own injection job: any method, gated on validation; the control (clean rows, fixed
        # epochs) has no backdoor to gate
        result = inject(model, tokenizer, spec, splits["train"], method=method, injection_cfg=injection,
                        seed=config["seed"], validation=splits["val"][:n_eval],
                        eval_batch_size=config["evaluation"]["batch_size"],
                        clean_control=clean_control)  # no backdoored run to replay: the whole planned schedule
        model = result.model
        model.eval()
        train_s = time.time() - started
        measured = evaluate(model, tokenizer, spec, splits["val"][:n_eval], config["evaluation"])
        label = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items())
        verdict = result.gate_verdict
        rows.append({"setting": f"{method} {label}", **measured, "gate_passed": verdict.passed if verdict else "",
                     "epochs_trained": verdict.epoch if verdict else injection["epochs"], "train_s": round(train_s, 1)})
        log.info("%s", rows[-1])
        if out is not None:
            write_tsv(out, rows, COLUMNS)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--base", required=True, help="base model: HF checkpoint dir or hub id")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2")
    parser.add_argument("--out", required=True, help="TSV, rewritten atomically after each setting")
    parser.add_argument("--device", default=None)
    parser.add_argument("--n-eval", type=int, default=None, help="first N validation items (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    config = load_config(args.config)
    if args.task not in config["tasks"]:
        raise ConfigError(f"{args.config}: --task {args.task!r} is not under tasks ({sorted(config['tasks'])})")
    run_calibration(config, args.task, args.base, parse_grid(args.grid), device=args.device, n_eval=args.n_eval,
                    out=Path(args.out))  # written after every grid point
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
