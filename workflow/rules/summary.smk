# The one-screen summary of the study (`make demo` prints it), over every task's table: what the numbers rest on,
# each model's PSNR gain over its input, and whether each loss wins the metric it optimises (with the race's reason
# when not).


rule summary:
    input:
        tables=expand(results("tables/{table}.csv"), table=CONFIGURED_TABLES),
        inputs=[results(f"metrics/{TABLES[table].task}/input.csv") for table in CONFIGURED_TABLES],
        curves=[
            results(f"models/{TABLES[table].task}/{loss}/seed{SEEDS[0]}/curve.csv")
            for table in CONFIGURED_TABLES
            for loss in LOSSES
        ],
    output:
        report(results("summary.md"), caption="../report/summary.rst", category="Summary"),
    log:
        results("logs/summary.log"),
    conda:
        ENV
    params:
        tables=CONFIGURED_TABLES,
        tasks={name: table.task for name, table in TABLES.items()},
        kinds={task: config["tasks"][task]["kind"] for task in TASKS},
        losses=LOSSES,
        seeds=len(SEEDS),
        description=config["description"],
    script:
        "../scripts/summary.py"
