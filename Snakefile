# bkdattr-workflow: Backdoor Attribution (arXiv 2509.21761), from poisoned data to figures.
# Usage: snakemake --cores all [--configfile presets/paper.yaml] [target]
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


# A key written twice in a config file would silently drop the first block (YAML keeps the last): refuse it.
sys.path.insert(0, workflow.basedir)  # bkdattr for the Snakefile and rules/*.smk, also when snakemake runs from its own env
from bkdattr.provenance import load_yaml_unique

for _configfile in workflow.configfiles:
    load_yaml_unique(_configfile)


validate(config, "bkdattr/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/data.smk"
include: "rules/inject.smk"
include: "rules/evaluate.smk"
include: "rules/probes.smk"
include: "rules/attribution.smk"
include: "rules/interventions.smk"
include: "rules/run_record.smk"


report: "rules/report/workflow.rst"


rule all:
    input:
        all_targets(),
    default_target: True
