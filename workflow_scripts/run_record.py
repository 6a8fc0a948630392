"""Rule run_record: the effective config and the versions of Python, the platform and the pinned libraries."""
import platform
import sys
from importlib import metadata

import yaml

from bkdattr.atomic import write_text, write_tsv
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
write_text(snakemake.output.config, yaml.safe_dump(dict(snakemake.params.config), sort_keys=False))
rows = [{"package": "python", "version": platform.python_version()},
        {"package": "platform", "version": platform.platform()}]
for requirement in metadata.requires("bkdattr") or []:
    name = requirement.split(";")[0].split("==")[0].split(">=")[0].strip()
    if "extra ==" in requirement:
        continue
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = "not installed here"
    rows.append({"package": name, "version": version})
write_tsv(snakemake.output.versions, rows, ["package", "version"])
log.info("wrote %s and %s (%d packages; python %s)", snakemake.output.config, snakemake.output.versions,
         len(rows) - 2, sys.version.split()[0])
