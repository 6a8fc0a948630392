"""BAHA speed: the official per-head loop (reference, prompts padded to 256) vs our exact mode.

Same model, prompts, mean activations and run. The reference is run on `--reference-layers` only and
extrapolated to all layers (per-layer cost is the same for every layer in the official loop); the exact
mode runs all layers, and its numbers are compared with the reference's on the layers both ran.
    python benchmarks/bench_attribution.py [--model DIR] [--n 16] [--reference-layers 29]
"""

from common import REPO, parser, timed

from bkdattr.atomic import write_tsv


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(model=str(REPO / "results/models/fixed_output/lora_sft/checkpoint"), n=16)
    p.add_argument("--reference-layers", type=int, nargs="+", default=[29])
    p.add_argument("--max-target-tokens", type=int, default=16)
    args = p.parse_args()
    import torch

    from bkdattr.attribution import acie_exact, acie_reference, make_items
    from bkdattr.caching import cache_activations
    from bkdattr.hooks import ModelSites
    from bkdattr.models import load_model
    from bkdattr.synthetic import GENERATORS
    from bkdattr.tasks import TaskSpec

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    sites = ModelSites.of(model)
    spec = TaskSpec.from_config(args.task)
    records = [r for r in GENERATORS[args.task](4 * args.n, 1) if spec.is_eligible(r)][: 2 * args.n]
    clean, triggered = records[: args.n], records[args.n:]
    abar = cache_activations(model, tokenizer, [spec.prompt(r["input"], triggered=True) for r in triggered],
                             batch_size=16)["heads_prompt_last"].mean(0)
    items = make_items(tokenizer, [spec.prompt(r["input"]) for r in clean],
                       [spec.backdoor_output({**r, "backdoor_output": r.get("backdoor_output", "")}) for r in clean],
                       args.max_target_tokens)
    pad = tokenizer.pad_token_id
    (exact, _), t_exact = timed(lambda: acie_exact(model, items, abar, pad_id=pad, batch_size=8))
    (ref, _), t_ref = timed(lambda: acie_reference(model, items, abar, pad_id=pad, batch_size=8,
                                                   layers=args.reference_layers))
    layers = args.reference_layers
    diff = (exact[layers] - ref[layers]).abs().max().item()
    t_ref_all = t_ref * sites.n_layers / len(layers)
    rows = [{"model": args.model, "task": args.task, "prompts": args.n, "heads": sites.n_layers * sites.n_heads,
             "exact_s_all_layers": t_exact, "reference_s_measured": t_ref, "reference_layers_run": " ".join(map(str, layers)),
             "reference_s_all_layers_extrapolated": t_ref_all, "speedup": t_ref_all / t_exact,
             "max_abs_acie_diff_on_reference_layers": diff, "max_abs_acie": exact[layers].abs().max().item()}]
    write_tsv(f"{args.out}/attribution_speed_{args.task}.tsv", rows)
    for k, v in rows[0].items():
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
