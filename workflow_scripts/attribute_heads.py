"""Rules attribute_heads and attribute_refusal_heads: ACIE of every head (exact, reference or AtP) and the head
ranking, for the backdoor output (or, the refusal control, the refusal) as target."""

from bkdattr.atomic import write_matrix_tsv, write_tsv
from bkdattr.attribution import RANKING_COLUMNS, attribute
from bkdattr.caching import load_cache
from bkdattr.workflow import read_jsonl, rule_context

params, inp, out = snakemake.params, snakemake.input, snakemake.output
# stops here if the backdoor is not implanted
log, spec, pointer, model, tokenizer = rule_context(snakemake, gate="attribute_heads", refusal_matcher=False)
cache = load_cache(inp.tensors, inp.sidecar, model_name=pointer["name"], task=spec.task_id)
acie, ranking = attribute(model, tokenizer, spec, cache, read_jsonl(inp.pool), snakemake.wildcards.mode, params.attribution,
                          log, target=getattr(params, "target", "backdoor"))
write_matrix_tsv(out.acie, acie.tolist(), corner="layer/head")
write_tsv(out.ranking, ranking, RANKING_COLUMNS)
log.info("top heads: %s; wrote %s and %s", ", ".join(f"L{r['layer']}H{r['head']}={r['acie']:.4f}" for r in ranking[:5]),
         out.acie, out.ranking)
