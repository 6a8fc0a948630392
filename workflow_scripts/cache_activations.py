"""Rule cache_activations: probe representations and head outputs for clean and triggered pool prompts."""

from bkdattr.atomic import write_json, write_safetensors
from bkdattr.caching import cache_pool
from bkdattr.workflow import read_jsonl, rule_context

params, inp, out = snakemake.params, snakemake.input, snakemake.output
# stops here if the backdoor is not implanted
log, spec, pointer, model, tokenizer = rule_context(snakemake, gate="cache_activations", refusal_matcher=False)
tensors, sidecar = cache_pool(model, tokenizer, spec, read_jsonl(inp.pool), batch_size=params.probes["cache_batch_size"],
                              position=params.probes["position"], model_name=pointer["name"], model_path=pointer["path"],
                              origin=inp.pool)
write_safetensors(out.tensors, tensors, {"model": pointer["name"], "task": spec.task_id})
write_json(out.sidecar, sidecar)
log.info("cached %d prompts x %d layers -> %s and %s", sidecar["n_rows"], sidecar["n_layers"], out.tensors, out.sidecar)
