# Evaluation: per-image metrics of every model and of the degraded inputs, then the thesis's tables.


rule evaluate_model:
    input:
        valset="results/data/{task}/val.h5",
        outputs="results/outputs/{task}/{loss}/seed{seed}.h5",
    output:
        "results/metrics/{task}/{loss}/seed{seed}.csv",
    params:
        metrics=config["metrics"],
        evaluation=config["evaluation"],
    threads: config["threads"]
    log:
        "results/logs/evaluate/{task}/{loss}/seed{seed}.log",
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


rule evaluate_input:
    input:
        valset="results/data/{task}/val.h5",
    output:
        "results/metrics/{task}/input.csv",
    params:
        metrics=config["metrics"],
        evaluation=config["evaluation"],
    threads: config["threads"]
    log:
        "results/logs/evaluate/{task}/input.log",
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


rule table:
    input:
        inputs=lambda w: f"results/metrics/{TABLES[w.table][0]}/input.csv",
        models=lambda w: [p for paths in model_metric_files(TABLES[w.table][0]).values() for p in paths],
    output:
        csv=report("results/tables/{table}.csv", caption="../report/table.rst", category="Tables", labels={"table": "{table}", "format": "csv"}),
        md=report("results/tables/{table}.md", caption="../report/table.rst", category="Tables", labels={"table": "{table}", "format": "markdown"}),
        tex="results/tables/{table}.tex",
        vs_csv="results/tables/{table}_vs_paper.csv",
        vs_md=report("results/tables/{table}_vs_paper.md", caption="../report/table_vs_paper.rst", category="Tables", labels={"table": "{table}", "format": "beside the thesis"}),
    params:
        models=lambda w: model_metric_files(TABLES[w.table][0]),
    wildcard_constraints:
        table="|".join(TABLES),
    log:
        "results/logs/tables/{table}.log",
    conda:
        ENV
    script:
        "../scripts/table.py"


for _table in CONFIGURED_TABLES:

    rule:
        name:
            _table
        input:
            table_files(_table),


rule tables:
    input:
        table_targets(),
