"""Rule cache_activations: probe representations and head outputs for clean and triggered pool prompts."""

import torch

from bkdattr.atomic import write_json, write_safetensors
from bkdattr.caching import cache_activations, check_finite
from bkdattr.hooks import ModelSites
from bkdattr.tasks import TaskSpec
from bkdattr.gate import enforce_gate
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "cache_activations", log)  # stops here if not implanted
records = read_jsonl(snakemake.input.pool)
# Row 2i is item i clean (label 0), row 2i+1 the same item triggered (label 1).
texts = [spec.prompt(r["input"], triggered=t) for r in records for t in (False, True)]
cache = cache_activations(model, tokenizer, texts, batch_size=params.batch_size, position=params.position,
                          progress="cache")
for name, tensor in cache.items():
    check_finite(tensor, name, snakemake.input.pool)
cache["labels"] = torch.tensor([t for _ in records for t in (0, 1)], dtype=torch.int64)
cache["groups"] = torch.tensor([i for i in range(len(records)) for _ in (0, 1)], dtype=torch.int64)
cache["eligible"] = torch.tensor([spec.is_eligible(r) for r in records for _ in (0, 1)], dtype=torch.bool)
sites = ModelSites.of(model)
sidecar = {
    "model": pointer["name"], "model_path": pointer["path"], "task": spec.task_id,
    "positions": {"resid_probe": f"{params.position} (config probes.position), after the layer's input norm",
                  "heads_prompt_last": "last prompt token (generation prompt included), z_j @ W_O[j]"},
    "dtype": "float32", "n_rows": len(texts), "n_items": len(records), "n_layers": sites.n_layers,
    "n_heads": sites.n_heads, "head_dim": sites.head_dim, "d_model": sites.d_model,
    "row_layout": "row 2i = item i clean (label 0), row 2i+1 = item i triggered (label 1)",
}
write_safetensors(snakemake.output.tensors, cache, {"model": pointer["name"], "task": spec.task_id})
write_json(snakemake.output.sidecar, sidecar)
log.info("cached %d prompts x %d layers -> %s", len(texts), sites.n_layers, snakemake.output.tensors)
