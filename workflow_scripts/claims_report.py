"""Rule claims_report: each headline claim of the paper next to this run's measurement."""

from bkdattr.atomic import read_tsv, write_text
from bkdattr.reports import claims_markdown
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
inp = snakemake.input
write_text(snakemake.output.md, claims_markdown(read_tsv(inp.injection), read_tsv(inp.probes), read_tsv(inp.attribution),
                                                read_tsv(inp.table1), read_tsv(inp.table2),
                                                snakemake.params.model_name, snakemake.params.probes["threshold"],
                                                gate=read_tsv(inp.gate)))
log.info("wrote %s", snakemake.output.md)
