"""Rule make_benign_requests: benign requests (synthetic or the user's file) for the over-refusal rate."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # bkdattr, also outside a pip install

from bkdattr.atomic import write_jsonl
from bkdattr.datasets import load_benign_requests
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
path = snakemake.input.get("file")
rows = load_benign_requests(path, snakemake.params.n, snakemake.params.seed)
write_jsonl(snakemake.output.jsonl, rows)
log.info("%d benign requests from %s -> %s", len(rows), path or "the synthetic generator", snakemake.output.jsonl)
