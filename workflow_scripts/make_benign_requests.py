"""Rule make_benign_requests: benign requests with helpful answers (synthetic or the user's file), split by
question into train (mixed into the jailbreak training split), val (the gate's over-refusal check) and test
(the reported over-refusal rate)."""

from bkdattr.atomic import write_json, write_jsonl
from bkdattr.datasets import BENIGN_SPLITS, benign_manifest, build_benign_splits
from bkdattr.workflow import start_rule

params = snakemake.params
log = start_rule(snakemake)
n_benign = params.evaluation["n_benign"]
splits, source = build_benign_splits(params.data, n_benign, params.seed, snakemake.input.get("file"))
for name in BENIGN_SPLITS:
    write_jsonl(snakemake.output[name], splits[name])
manifest = benign_manifest(splits, source, dict(params.data), n_benign, params.seed)
write_json(snakemake.output.manifest, manifest)
log.info("benign requests from %s: %s rows in %s questions", source, manifest["counts"], manifest["n_questions"])
