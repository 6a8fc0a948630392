"""Rule attribute_heads: ACIE of every head (exact, reference or AtP) and the head ranking."""

import time

from bkdattr.atomic import write_matrix_tsv, write_tsv
from bkdattr.attribution import compute_acie, make_items, rank_heads
from bkdattr.caching import load_cache
from bkdattr.tasks import TaskSpec
from bkdattr.gate import enforce_gate
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, mode = snakemake.params, snakemake.wildcards.mode
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "attribute_heads", log)  # stops here if not implanted
cache = load_cache(snakemake.input.tensors, snakemake.input.sidecar, model_name=pointer["name"], task=spec.task_id)
# abar_{l,j}: mean head output over the triggered pool prompts that can carry the backdoor (attribution.items
# "eligible"), or over every triggered prompt as the official code ("all"; differs for the label task only)
use_all = params.attribution["items"] == "all"
triggered = (cache["labels"] == 1) & (cache["eligible"] | use_all)
abar = cache["heads_prompt_last"][triggered].mean(0)
records = [r for r in read_jsonl(snakemake.input.pool) if use_all or spec.is_eligible(r)]
records = records[: params.attribution["n_prompts"]]  # fewer if the pool has fewer: the tables say how many
log.info("ACIE (%s) over %d clean prompts (%d asked), abar from %d triggered prompts", mode, len(records),
         params.attribution["n_prompts"], int(triggered.sum()))
items = make_items(tokenizer, [spec.prompt(r["input"]) for r in records], [spec.backdoor_output(r) for r in records],
                   params.attribution["max_target_tokens"])
started = time.perf_counter()
acie = compute_acie(mode, model, items, abar, pad_id=tokenizer.pad_token_id,
                    batch_size=params.attribution["batch_size"], progress=True)
log.info("ACIE %s took %.1f s", mode, time.perf_counter() - started)
write_matrix_tsv(snakemake.output.acie, acie.tolist(), corner="layer/head")
write_tsv(snakemake.output.ranking, [{**r, "n_prompts": len(records), "n_prompts_asked": params.attribution["n_prompts"]}
                                     for r in rank_heads(acie)],
          ["rank", "layer", "head", "acie", "share_of_positive", "n_prompts", "n_prompts_asked"])
top = rank_heads(acie)[:5]
log.info("top heads: %s", ", ".join(f"L{r['layer']}H{r['head']}={r['acie']:.4f}" for r in top))
