"""Rule run_record: the effective config and the versions of Python, the platform and the pinned libraries."""
import sys

import yaml

from bkdattr.atomic import write_text, write_tsv
from bkdattr.workflow import package_versions, start_rule

log = start_rule(snakemake)
write_text(snakemake.output.config, yaml.safe_dump(dict(snakemake.params.config), sort_keys=False))
rows = package_versions("bkdattr")
write_tsv(snakemake.output.versions, rows, ["package", "version"])
log.info("wrote %s and %s (%d packages; python %s)", snakemake.output.config, snakemake.output.versions,
         len(rows) - 2, sys.version.split()[0])
