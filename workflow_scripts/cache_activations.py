"""Rule cache_activations: probe representations and head outputs for clean and triggered pool prompts."""

from bkdattr.atomic import write_json, write_safetensors
from bkdattr.caching import cache_pool
from bkdattr.gate import enforce_gate
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "cache_activations", log)  # stops here if not implanted
tensors, sidecar = cache_pool(model, tokenizer, spec, read_jsonl(snakemake.input.pool), batch_size=params.probes["cache_batch_size"],
                              position=params.probes["position"], model_name=pointer["name"], model_path=pointer["path"],
                              origin=snakemake.input.pool)
write_safetensors(snakemake.output.tensors, tensors, {"model": pointer["name"], "task": spec.task_id})
write_json(snakemake.output.sidecar, sidecar)
log.info("cached %d prompts x %d layers -> %s", sidecar["n_rows"], sidecar["n_layers"], snakemake.output.tensors)
