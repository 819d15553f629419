# The one-screen summary of the study (`make demo` prints it), over every task's table: each model's PSNR gain over its input
# and whether each loss wins the metric it optimises.


rule summary:
    input:
        expand(results("tables/{table}.csv"), table=CONFIGURED_TABLES),
    output:
        results("summary.md"),
    params:
        tables=CONFIGURED_TABLES,
        tasks={name: table.task for name, table in TABLES.items()},
    log:
        results("logs/summary.log"),
    conda:
        ENV
    script:
        "../scripts/summary.py"
