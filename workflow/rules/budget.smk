# The compute budget of the configured run, before it starts: `snakemake --cores 1 budget` writes
# results/budget.md (samples, steps, FLOPs, loss cost and CPU/GPU hours per training job). It needs no
# data: absent data are counted from the datasets' published sizes.


rule budget_table:
    output:
        results("budget.md"),
    log:
        results("logs/budget.log"),
    conda:
        ENV
    params:
        config=config,
        source=CONFIG_SOURCE,
    script:
        "../scripts/budget.py"


rule budget:
    input:
        results("budget.md"),
