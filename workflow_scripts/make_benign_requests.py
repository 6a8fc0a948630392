"""Rule make_benign_requests: benign requests (synthetic or the user's file) for the over-refusal rate."""

from bkdattr.atomic import write_jsonl
from bkdattr.datasets import load_benign_requests
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
path = snakemake.input.get("file")
rows = load_benign_requests(path, snakemake.params.evaluation["n_benign"], snakemake.params.seed)
write_jsonl(snakemake.output.jsonl, rows)
log.info("%d benign requests from %s -> %s", len(rows), path or "the synthetic generator", snakemake.output.jsonl)
