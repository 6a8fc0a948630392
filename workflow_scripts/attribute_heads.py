"""Rule attribute_heads: ACIE of every head (exact, reference or AtP) and the head ranking."""

import time

from bkdattr.atomic import write_matrix_tsv, write_tsv
from bkdattr.attribution import attribution_inputs, compute_acie, make_items, rank_heads
from bkdattr.caching import load_cache
from bkdattr.gate import enforce_gate
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, mode, asked = snakemake.params, snakemake.wildcards.mode, snakemake.params.attribution["n_prompts"]
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "attribute_heads", log)  # stops here if not implanted
cache = load_cache(snakemake.input.tensors, snakemake.input.sidecar, model_name=pointer["name"], task=spec.task_id)
abar, records, n_triggered = attribution_inputs(cache, read_jsonl(snakemake.input.pool), spec,
                                                items=params.attribution["items"], n_prompts=asked)
log.info("ACIE (%s) over %d clean prompts (%d asked), abar from %d triggered prompts", mode, len(records), asked, n_triggered)
items = make_items(tokenizer, [spec.prompt(r["input"]) for r in records], [spec.backdoor_output(r) for r in records],
                   params.attribution["max_target_tokens"])
started = time.perf_counter()
acie = compute_acie(mode, model, items, abar, pad_id=tokenizer.pad_token_id,
                    batch_size=params.attribution["batch_size"], progress=True)
log.info("ACIE %s took %.1f s", mode, time.perf_counter() - started)
write_matrix_tsv(snakemake.output.acie, acie.tolist(), corner="layer/head")
ranking = rank_heads(acie)
write_tsv(snakemake.output.ranking, [{**r, "n_prompts": len(records), "n_prompts_asked": asked} for r in ranking],
          ["rank", "layer", "head", "acie", "share_of_positive", "n_prompts", "n_prompts_asked"])
log.info("top heads: %s", ", ".join(f"L{r['layer']}H{r['head']}={r['acie']:.4f}" for r in ranking[:5]))
