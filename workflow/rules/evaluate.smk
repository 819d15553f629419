# Evaluation: per-image metrics of every model and of the degraded inputs, then the thesis's tables;
# for the MRI tasks also fastMRI's own per-volume NMSE, PSNR and SSIM in companion tables.


rule evaluate_model:
    input:
        valset=results("data/{task}/val.h5"),
        outputs=results("outputs/{task}/{loss}/seed{seed}.h5"),
    output:
        results("metrics/{task}/{loss}/seed{seed}.csv"),
    params:
        suite="thesis",
        metrics=config["metrics"],
        evaluation=EVALUATION,
    threads: config["threads"]
    log:
        results("logs/evaluate/{task}/{loss}/seed{seed}.log"),
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


use rule evaluate_model as evaluate_model_fastmri with:
    output:
        results("metrics/{task}/{loss}/seed{seed}.fastmri.csv"),
    params:
        suite="fastmri",
    wildcard_constraints:
        task="knee|brain",
    log:
        results("logs/evaluate/{task}/{loss}/seed{seed}.fastmri.log"),


rule evaluate_input:
    input:
        valset=results("data/{task}/val.h5"),
    output:
        results("metrics/{task}/input.csv"),
    params:
        suite="thesis",
        metrics=config["metrics"],
        evaluation=EVALUATION,
    threads: config["threads"]
    log:
        results("logs/evaluate/{task}/input.log"),
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


use rule evaluate_input as evaluate_input_fastmri with:
    output:
        results("metrics/{task}/input.fastmri.csv"),
    params:
        suite="fastmri",
    wildcard_constraints:
        task="knee|brain",
    log:
        results("logs/evaluate/{task}/input.fastmri.log"),


rule table:
    input:
        inputs=lambda w: f"{RESULTS}/metrics/{TABLES[w.table][0]}/input.csv",
        models=lambda w: flat(model_metric_files(TABLES[w.table][0])),
    output:
        csv=report(results("tables/{table}.csv"), caption="../report/table.rst", category="Tables", labels={"table": "{table}", "format": "csv"}),
        md=report(results("tables/{table}.md"), caption="../report/table.rst", category="Tables", labels={"table": "{table}", "format": "markdown"}),
        tex=results("tables/{table}.tex"),
        vs_csv=results("tables/{table}_vs_paper.csv"),
        vs_md=report(results("tables/{table}_vs_paper.md"), caption="../report/table_vs_paper.rst", category="Tables", labels={"table": "{table}", "format": "beside the thesis"}),
        per_seed_csv=results("tables/{table}_per_seed.csv"),
        per_seed_md=results("tables/{table}_per_seed.md"),
    params:
        table=lambda w: w.table,
        suite="thesis",
        models=lambda w: model_metric_files(TABLES[w.table][0]),
        seeds=SEEDS,
        lpips_pretrained=LPIPS_PRETRAINED,
        loss_params={loss: config["losses"][loss]["params"] for loss in LOSSES},
    wildcard_constraints:
        table="|".join(TABLES),
    log:
        results("logs/tables/{table}.log"),
    conda:
        ENV
    script:
        "../scripts/table.py"


rule table_fastmri:
    input:
        inputs=lambda w: f"{RESULTS}/metrics/{TABLES[w.table][0]}/input.fastmri.csv",
        models=lambda w: flat(model_metric_files(TABLES[w.table][0], ".fastmri")),
    output:
        csv=report(results("tables/{table}_fastmri.csv"), caption="../report/table_fastmri.rst", category="Tables", labels={"table": "{table}", "format": "fastMRI metrics"}),
        md=results("tables/{table}_fastmri.md"),
        tex=results("tables/{table}_fastmri.tex"),
    params:
        table=lambda w: w.table,
        suite="fastmri",
        models=lambda w: model_metric_files(TABLES[w.table][0], ".fastmri"),
        lpips_pretrained=LPIPS_PRETRAINED,
        loss_params={loss: config["losses"][loss]["params"] for loss in LOSSES},
    wildcard_constraints:
        table="table_6_3|table_6_4",
    log:
        results("logs/tables/{table}_fastmri.log"),
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


MRI_TASKS = [task for task in TASKS if TASK_KINDS[task] != "denoise"]
#: MRI task → loss → its models' output files, one per seed.
MRI_OUTPUTS = {task: {loss: expand(results("outputs/{task}/{loss}/seed{seed}.h5"), task=task, loss=loss, seed=SEEDS) for loss in LOSSES} for task in MRI_TASKS}


rule flip_gray_modes:
    """The MRI tables' FLIP rows under each grayscale reading of thesis §3.2 (gray_thesis, gray_lab, gray_replicated)."""
    input:
        valsets=expand(results("data/{task}/val.h5"), task=MRI_TASKS),
        outputs=[path for by_loss in MRI_OUTPUTS.values() for paths in by_loss.values() for path in paths],
    output:
        csv=results("tables/flip_gray_modes.csv"),
        md=results("tables/flip_gray_modes.md"),
    params:
        valsets={task: f"{RESULTS}/data/{task}/val.h5" for task in MRI_TASKS},
        outputs=MRI_OUTPUTS,
        evaluation=EVALUATION,
    threads: config["threads"]
    log:
        results("logs/tables/flip_gray_modes.log"),
    conda:
        ENV
    script:
        "../scripts/flip_gray_modes.py"
