"""Rule injection_table: one table of ASR / false-trigger / utility for base and backdoored models."""

from bkdattr.atomic import read_tsv, write_text, write_tsv
from bkdattr.gate import NOT_APPLICABLE, implanted_by_run
from bkdattr.reports import INJECTION_COLUMNS, injection_markdown
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
implanted = implanted_by_run(read_tsv(snakemake.input.gate))
rows = [{"n_questions": "", **row, "backdoor_implanted": implanted.get((row["task"], row["model"]), NOT_APPLICABLE)}
        for path in snakemake.input.metrics for row in read_tsv(path)]
write_tsv(snakemake.output.tsv, rows, INJECTION_COLUMNS)
write_text(snakemake.output.md, injection_markdown(rows, snakemake.params.model_name))
log.info("wrote %s and %s", snakemake.output.tsv, snakemake.output.md)
