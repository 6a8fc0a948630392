"""Rule confirmation_table: the headline numbers on the test split beside the same on the confirmation split."""

from bkdattr.atomic import read_tsv, write_tsv
from bkdattr.gate import implanted_by_run
from bkdattr.reports import CONFIRMATION_COLUMNS, confirmation_rows
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
rows = confirmation_rows([r for p in snakemake.input.test for r in read_tsv(p)],
                         [r for p in snakemake.input.confirm for r in read_tsv(p)],
                         implanted_by_run(read_tsv(snakemake.input.gate)))
write_tsv(snakemake.output.tsv, rows, CONFIRMATION_COLUMNS)
log.info("wrote %s (%d rows)", snakemake.output.tsv, len(rows))
