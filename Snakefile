# lossbench: loss functions for image denoising and MRI reconstruction, compared end to end.
#
#   snakemake --cores all                      # the embedded demo (config.yaml)
#   snakemake --cores 8 --resources gpu=2      # a GPU workstation
#   snakemake --profile profiles/slurm         # a SLURM cluster
#   snakemake --cores 4 table_6_1              # one thesis table (or fig_6_1, tables, figures)

from snakemake.utils import min_version

min_version("8.0")


# config.yaml is the default; a --configfile replaces it instead of being merged into it.
if not workflow.configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/statistics.smk"
include: "workflow/rules/budget.smk"
include: "workflow/rules/userstudy.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        table_targets(),
        figure_targets(),
        FASTMRI_RECONSTRUCTIONS,
        USERSTUDY_TARGETS,
        results("summary.md"),
        statistics_in_all(),
