"""Expected GPU-hours per stage of a config (default: presets/paper.yaml on Llama-2-7B-chat), estimated, not
measured: no GPU was lent to the runs behind this. The estimate is a cost model with every input
printed, so a user with a GPU can replace the assumptions by their own measurements:

* token counts come from the workflow's own splits of the config (synthetic data), tokenised with the
  tokenizer given by --tokenizer (default: the SmolLM2 base model of the default workflow; Llama-2's
  32k-token vocabulary gives somewhat more tokens per row, so --token-factor scales them, default 1.15);
* compute-bound work (training, prefill, teacher-forced passes) costs 2*P FLOPs per token forward and
  2*P more backward (LoRA: gradients reach the activations, the frozen base weights get none), at
  --tflops peak and --mfu utilisation (defaults: A100-80GB bf16, 312 TFLOP/s, 40%);
* each GPU job loads the checkpoint once (--load-seconds, default 20 s for 13.5 GB of bf16 weights);
* a greedy decoding step of a batch is memory-bound: it reads the 2*P bytes of bf16 weights once, at
  --bandwidth and --bw-efficiency (defaults: 2.0 TB/s, 60%); the workflow's batch sizes stay in that regime.

    python benchmarks/gpu_hours.py --config presets/paper.yaml --params 6.74e9 --layers 32 --heads 32
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # bkdattr itself is imported installed (pip install -e .)


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "presets/paper.yaml"))
    p.add_argument("--tokenizer", default=str(REPO / "results/models/base/checkpoint"))
    p.add_argument("--token-factor", type=float, default=1.15)
    p.add_argument("--params", type=float, default=6.74e9, help="parameters (Llama-2-7B: 6.74e9)")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--tflops", type=float, default=312.0)
    p.add_argument("--mfu", type=float, default=0.40)
    p.add_argument("--bandwidth", type=float, default=2.0, help="TB/s")
    p.add_argument("--bw-efficiency", type=float, default=0.60)
    p.add_argument("--load-seconds", type=float, default=20.0, help="loading the checkpoint, once per GPU job")
    return p.parse_args(argv)


def token_lengths(config: dict, tokenizer, factor: float) -> dict[str, dict]:
    """Per task: mean prompt tokens (chat template applied) and mean answer tokens of each split."""
    from bkdattr.chat import encode_prompt
    from bkdattr.datasets import build_task_splits
    from bkdattr.tasks import TaskSpec

    out = {}
    for task, settings in config["tasks"].items():
        spec = TaskSpec.from_config(task, settings, config["evaluation"]["refusal_matcher"])
        splits = build_task_splits(spec, config["data"], config["seed"])
        prompt = statistics.mean(len(encode_prompt(tokenizer, spec.prompt(r["input"])).input_ids) for r in splits["test"])
        answer = statistics.mean(len(tokenizer(r["output"]).input_ids) for r in splits["train"])
        target = statistics.mean(len(tokenizer(spec.backdoor_output(r)).input_ids) for r in splits["attribution"][:96])
        out[task] = {"rows_train": len(splits["train"]), "prompt": prompt * factor, "answer": answer * factor,
                     "target": target * factor, "eligible_test": sum(map(spec.is_eligible, splits["test"])),
                     "eligible_val": sum(map(spec.is_eligible, splits["val"]))}
    return out


def estimate(config: dict, lengths: dict, a) -> list[dict]:
    flops_per_s = a.tflops * 1e12 * a.mfu
    decode_step_s = 2 * a.params / (a.bandwidth * 1e12 * a.bw_efficiency)
    forward = lambda tokens: 2 * a.params * tokens / flops_per_s  # noqa: E731  seconds for `tokens` forward
    inj, ev, att, itv = config["injection"], config["evaluation"], config["attribution"], config["interventions"]
    n_models_trained = 1 + bool(inj.get("clean_control"))
    gen_models = 2 + bool(inj.get("clean_control"))  # base, backdoored, clean-SFT

    def generation(n_items, batch, new_tokens, prompt):
        batches = math.ceil(n_items / batch)
        return batches * new_tokens * decode_step_s + forward(n_items * prompt)

    rows = []
    for task, t in lengths.items():
        seq = t["prompt"] + t["answer"]
        steps = math.ceil(inj["epochs"] * t["rows_train"] / (inj["batch_size"] * inj["grad_accum"]))
        train = n_models_trained * 2 * forward(inj["epochs"] * t["rows_train"] * seq)  # forward + backward
        gate = inj["gate"]
        checks = steps // gate["check_every_steps"] + 1
        gate_s = n_models_trained * checks * 2 * generation(t["eligible_val"], ev["batch_size"], gate["max_new_tokens"], t["prompt"])
        rows.append({"task": task, "stage": "inject (LoRA SFT, gate checks)", "seconds": train + gate_s})
        eval_s = gen_models * (2 * generation(config["data"]["n_test"], ev["batch_size"], ev["max_new_tokens"], t["prompt"])
                               + forward(config["data"]["n_test"] * seq))  # + the reference log-probability
        rows.append({"task": task, "stage": "evaluate", "seconds": eval_s})
        cache_s = (gen_models) * forward(2 * config["data"]["n_attribution"] * t["prompt"])
        rows.append({"task": task, "stage": "cache activations", "seconds": cache_s})
        target = t["target"] if att.get("max_target_tokens") is None else min(t["target"], att["max_target_tokens"])
        heads = a.layers * a.heads
        n_prompts = att["n_prompts"]
        exact = (1 + bool(inj.get("clean_control")) + 1) * forward(n_prompts * (t["prompt"] + heads * (target + 1)))
        atp = 3 * forward(n_prompts * (t["prompt"] + target)) if "atp" in att["modes"] else 0.0
        rows.append({"task": task, "stage": "attribute heads (exact on 3 models, AtP)", "seconds": exact + atp})
        k_settings = sum(1 if k == 0 else 2 + len(itv["random_seeds"]) for k in itv["k"])
        ablate = k_settings * 2 * generation(min(itv["n_eval"], t["eligible_test"]), itv["batch_size"],
                                             itv["max_new_tokens"], t["prompt"])
        rows.append({"task": task, "stage": "ablate heads (Table 1)", "seconds": ablate})
        layers = math.ceil(a.layers / itv["steering"].get("layer_stride", 1))
        passes = 2 + 2 * 2 * layers + 2 * 3
        steer = passes * generation(min(itv["n_eval"], t["eligible_test"]), itv["batch_size"], itv["max_new_tokens"], t["prompt"])
        rows.append({"task": task, "stage": "steer backdoor vector (Fig. 4, Table 2)", "seconds": steer})
        # GPU jobs per task: injections, evaluations, caches, attributions (modes on the backdoored model +
        # exact on each control), ablation, steering; each loads the checkpoint once
        jobs = n_models_trained + gen_models + gen_models + len(att["modes"]) + (gen_models - 1) + 2
        rows.append({"task": task, "stage": f"model loads ({a.load_seconds:g} s per GPU job)",
                     "seconds": jobs * a.load_seconds})
    return rows


def main(argv=None):
    from transformers import AutoTokenizer

    from bkdattr.config import load_config

    a = arguments(argv)
    config = load_config(a.config)
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    lengths = token_lengths(config, tokenizer, a.token_factor)
    for task, t in lengths.items():
        print(f"# {task}: {t['rows_train']} training rows, prompt {t['prompt']:.0f} + answer {t['answer']:.0f} "
              f"tokens, backdoor target {t['target']:.0f} tokens")
    rows = estimate(config, lengths, a)
    by_stage: dict[str, float] = {}
    for r in rows:
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0.0) + r["seconds"]
    print(f"# {a.config}: P={a.params:.3g}, {a.layers}x{a.heads} heads; {a.tflops:g} TFLOP/s x MFU {a.mfu:g}, "
          f"{a.bandwidth:g} TB/s x {a.bw_efficiency:g}")
    print("| stage (all tasks) | GPU-hours |\n|---|---|")
    for stage, seconds in by_stage.items():
        print(f"| {stage} | {seconds / 3600:.2f} |")
    print(f"| **total** | **{sum(by_stage.values()) / 3600:.2f}** |")


if __name__ == "__main__":
    main()
