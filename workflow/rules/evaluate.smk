# Evaluation: per-image metrics of every model and of the degraded inputs, then each task's table (the
# thesis's tables, compared with its published values, and table_<task> for other tasks); for the MRI
# tasks also fastMRI's own per-volume NMSE, PSNR and SSIM in companion tables.

#: The settings of each computed metric of the user's own (own_metrics): a new module or parameter reruns the
#: evaluations. A parameter only where there are some, so that adding own_metrics reran no existing evaluation.
_OWN_METRICS = {name: config["own_metrics"][name] for name in config["metrics"] if name in config["own_metrics"]}
OWN_METRICS = {"own_metrics": _OWN_METRICS} if _OWN_METRICS else {}


rule evaluate_model:
    input:
        valset=results("data/{task}/val.h5"),
        outputs=results("outputs/{task}/{loss}/seed{seed}.h5"),
    output:
        results("metrics/{task}/{loss}/seed{seed}.csv"),
    log:
        results("logs/evaluate/{task}/{loss}/seed{seed}.log"),
    conda:
        ENV
    threads: config["threads"]
    params:
        **OWN_METRICS,
        suite="thesis",
        metrics=config["metrics"],
        evaluation=EVALUATION,
    script:
        "../scripts/evaluate.py"


use rule evaluate_model as evaluate_model_fastmri with:
    output:
        results("metrics/{task}/{loss}/seed{seed}.fastmri.csv"),
    log:
        results("logs/evaluate/{task}/{loss}/seed{seed}.fastmri.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_TASKS),
    params:
        suite="fastmri",


rule evaluate_input:
    input:
        valset=results("data/{task}/val.h5"),
    output:
        results("metrics/{task}/input.csv"),
    log:
        results("logs/evaluate/{task}/input.log"),
    conda:
        ENV
    threads: config["threads"]
    params:
        **OWN_METRICS,
        suite="thesis",
        metrics=config["metrics"],
        evaluation=EVALUATION,
    script:
        "../scripts/evaluate.py"


use rule evaluate_input as evaluate_input_fastmri with:
    output:
        results("metrics/{task}/input.fastmri.csv"),
    log:
        results("logs/evaluate/{task}/input.fastmri.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_TASKS),
    params:
        suite="fastmri",


rule table:
    input:
        inputs=of_task(input_metrics),
        models=of_task(model_metric_paths),
    output:
        csv=report(
            results("tables/{table}.csv"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "csv"},
        ),
        md=report(
            results("tables/{table}.md"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "markdown"},
        ),
        tex=results("tables/{table}.tex"),
        vs_csv=results("tables/{table}_vs_paper.csv"),
        vs_md=report(
            results("tables/{table}_vs_paper.md"),
            caption="../report/table_vs_paper.rst",
            category="Tables",
            labels={"table": "{table}", "format": "beside the thesis"},
        ),
        per_seed_csv=results("tables/{table}_per_seed.csv"),
        per_seed_md=results("tables/{table}_per_seed.md"),
    log:
        results("logs/tables/{table}.log"),
    wildcard_constraints:
        table=one_of(THESIS_TABLES),
    conda:
        ENV
    params:
        subject=table_subject,
        suite="thesis",
        models=of_task(model_metric_files),
        seeds=SEEDS,
        lpips_pretrained=LPIPS_PRETRAINED,
        loss_params=LOSS_PARAMS,
        evaluation=EVALUATION,
    script:
        "../scripts/table.py"


# The table of a task the thesis did not have: the same, without the comparison with published values.
use rule table as table_not_in_thesis with:
    output:
        csv=report(
            results("tables/{table}.csv"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "csv"},
        ),
        md=report(
            results("tables/{table}.md"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "markdown"},
        ),
        tex=results("tables/{table}.tex"),
        per_seed_csv=results("tables/{table}_per_seed.csv"),
        per_seed_md=results("tables/{table}_per_seed.md"),
    wildcard_constraints:
        table=one_of(OTHER_TABLES),


rule table_fastmri:
    input:
        inputs=of_task(input_metrics, ".fastmri"),
        models=of_task(model_metric_paths, ".fastmri"),
    output:
        csv=report(
            results("tables/{table}_fastmri.csv"),
            caption="../report/table_fastmri.rst",
            category="Tables",
            labels={"table": "{table}", "format": "fastMRI metrics"},
        ),
        md=results("tables/{table}_fastmri.md"),
        tex=results("tables/{table}_fastmri.tex"),
    log:
        results("logs/tables/{table}_fastmri.log"),
    wildcard_constraints:
        table=one_of(FASTMRI_TABLES),
    conda:
        ENV
    params:
        subject=table_subject,
        suite="fastmri",
        models=of_task(model_metric_files, ".fastmri"),
        lpips_pretrained=LPIPS_PRETRAINED,
        loss_params=LOSS_PARAMS,
        evaluation=EVALUATION,
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


#: Grayscale task → loss → its models' output files, one per seed.
GRAY_OUTPUTS = {
    task: {
        loss: expand(results("outputs/{task}/{loss}/seed{seed}.h5"), task=task, loss=loss, seed=SEEDS)
        for loss in LOSSES
    }
    for task in GRAY_TASKS
}
#: Those files as one list.
GRAY_OUTPUT_FILES = [path for by_loss in GRAY_OUTPUTS.values() for paths in by_loss.values() for path in paths]
#: Grayscale task → its validation set.
GRAY_VALSETS = {task: validation_file(task) for task in GRAY_TASKS}
#: Grayscale task → the label of its degraded inputs in the tables.
GRAY_INPUT_LABELS = {task: TASK_SPECS[task].input_label for task in GRAY_TASKS}


rule flip_gray_modes:
    """The grayscale (MRI) tables' FLIP rows under each reading of §3.2: gray_thesis, gray_lab, gray_replicated."""
    input:
        valsets=expand(results("data/{task}/val.h5"), task=GRAY_TASKS),
        outputs=GRAY_OUTPUT_FILES,
    output:
        csv=results("tables/flip_gray_modes.csv"),
        md=results("tables/flip_gray_modes.md"),
    log:
        results("logs/tables/flip_gray_modes.log"),
    conda:
        ENV
    threads: config["threads"]
    params:
        valsets=GRAY_VALSETS,
        outputs=GRAY_OUTPUTS,
        input_labels=GRAY_INPUT_LABELS,
        evaluation=EVALUATION,
    script:
        "../scripts/flip_gray_modes.py"
