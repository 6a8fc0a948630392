"""Rules attribute_heads and attribute_refusal_heads: ACIE of every head (exact, reference or AtP) and the head
ranking, for the backdoor output (or, the refusal control, the refusal) as target."""

from bkdattr.atomic import write_matrix_tsv, write_tsv
from bkdattr.attribution import RANKING_COLUMNS, attribute
from bkdattr.caching import load_cache
from bkdattr.gate import enforce_gate
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, mode = snakemake.params, snakemake.wildcards.mode
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "attribute_heads", log)  # stops here if not implanted
cache = load_cache(snakemake.input.tensors, snakemake.input.sidecar, model_name=pointer["name"], task=spec.task_id)
acie, ranking = attribute(model, tokenizer, spec, cache, read_jsonl(snakemake.input.pool), mode, params.attribution, log,
                          target=getattr(params, "target", "backdoor"))
write_matrix_tsv(snakemake.output.acie, acie.tolist(), corner="layer/head")
write_tsv(snakemake.output.ranking, ranking, RANKING_COLUMNS)
log.info("top heads: %s", ", ".join(f"L{r['layer']}H{r['head']}={r['acie']:.4f}" for r in ranking[:5]))
