# Configuration validation, the path helpers every rule file uses, and the rules' input and params functions.

import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.utils import update_config

from lossbench.core.seeding import derive_seed
from lossbench.metrics.lpips import TRUNK_ENV as LPIPS_TRUNK_ENV
from lossbench.pipeline.config import typed_overrides, validate_with_overrides
from lossbench.pipeline.config_file import ConfigError, read_yaml
from lossbench.pipeline.consistency import missing_data_folders
from lossbench.pipeline.sections import data_owner, task_spec
from lossbench.pipeline.experiment import results_dir
from lossbench.pipeline.lr_sweep import sweep_settings
from lossbench.pipeline.job_settings import evaluation_settings, task_data, run_settings
from lossbench.registry import Registry
from lossbench.report.tables import subject

CONFIG_SOURCE = ", ".join(map(str, workflow.configfiles)) or "config"


def checked_config(require_data):
    """Validate the configuration in place, return its evaluation settings; else exit with a one-line error."""
    try:
        # Snakemake's own YAML loading keeps the last of two equal keys silently: re-read each file strictly.
        for configfile in workflow.configfiles:
            read_yaml(configfile)
        # --config values with a file's YAML types (`seeds=[0, 1]`), and named in the messages about them.
        overrides = typed_overrides(workflow.config_settings.config)
        update_config(config, overrides)
        validate_with_overrides(config, CONFIG_SOURCE, overrides, require_data=require_data)
        return evaluation_settings(config)
    except ConfigError as error:
        named = any(str(error).startswith(str(path)) for path in [CONFIG_SOURCE, *workflow.configfiles, "--config "])
        sys.exit(f"Configuration error: {error}" if named else f"Configuration error: {CONFIG_SOURCE}: {error}")


#: A dry run shows the plan, and `budget` counts published sizes, before the data exist: the workflow is planned
#: without them, and a run that needs them stops before its first job (refuse_missing_data, on start). Snakemake
#: has not parsed its own arguments when this file is read: whether this is a dry run is known on start only.
EVALUATION = checked_config(require_data=False)
MISSING_DATA = missing_data_folders(config)
if MISSING_DATA:
    print(
        f"Note: {CONFIG_SOURCE}: {'; '.join(MISSING_DATA)}: planned without them, the run needs them.", file=sys.stderr
    )


def counts_budget_only():
    """Whether the targets are the budget only (`budget`, `.../budget.md`), which is counted without the data."""
    targets = workflow.dag_settings.targets
    return bool(targets) and all(target == "budget" or Path(target).name == "budget.md" for target in targets)


def refuse_missing_data():
    """On start (never in a dry run), before any job: exit naming every missing data folder, unless for the budget."""
    if MISSING_DATA and not counts_budget_only():
        checked_config(require_data=True)


def existing(path):
    """``path`` as a rule input when it exists, else nothing, so that a plan can be shown before the data are there."""
    return [path] if Path(path).exists() else []


ENV = "../../envs/lossbench.yaml"
#: Every output of the experiment lies under this folder, so two experiments never share a file.
RESULTS = results_dir(config)


def results(path):
    """``path`` (wildcards allowed) inside the experiment's folder."""
    return f"{RESULTS}/{path}"


TASKS = list(config["tasks"])
#: Task → the spec of its kind (lossbench.data.tasks): channels, data rules, thesis table.
TASK_SPECS = {task: task_spec(config, task) for task in TASKS}
LOSSES = list(config["losses"])
#: The configuration's losses and metrics (the package's and its own), built once for the run settings; each job builds
#: its own from the configuration (lossbench.pipeline.job.workflow_job).
REGISTRY = Registry.from_config(config)
SEEDS = config["seeds"]
#: Validation noise and masks are fixed by this seed, so every model is scored on the same inputs.
VALIDATION_SEED = 0
LPIPS_PRETRAINED = EVALUATION["lpips_trunk"] == "pretrained"
# Planned from local files only (lossbench.metrics.lpips.resolve_trunk); the jobs, which inherit this, use
# the same trunk even when rule lpips_weights fetches it while they run, so no label differs from its values.
os.environ[LPIPS_TRUNK_ENV] = EVALUATION["lpips_trunk"]
#: Table → what it is of (lossbench.report.tables.Subject): one per task, the thesis's for its tasks, table_<task>
#: for others.
TABLES = {
    table.name: table
    for table in (subject(task, config["tasks"][task]["kind"], config["tasks"][task]) for task in TASKS)
}
CONFIGURED_TABLES = list(TABLES)
#: Tables compared with the thesis's published values (the thesis's tasks).
THESIS_TABLES = [name for name, table in TABLES.items() if table.thesis]
#: Tasks scored with fastMRI's per-volume metrics too (companion tables), and their tables.
FASTMRI_TASKS = [task for task in TASKS if TASK_SPECS[task].challenge is not None]
FASTMRI_TABLES = [name for name, table in TABLES.items() if table.task in FASTMRI_TASKS]
#: Grayscale tasks, whose FLIP rows are compared under each grayscale reading (rule flip_gray_modes).
GRAY_TASKS = [task for task in TASKS if TASK_SPECS[task].channels == 1]
#: Tables of tasks the thesis did not have (rule table_not_in_thesis).
OTHER_TABLES = [name for name in TABLES if name not in THESIS_TABLES]
#: Loss → its configured parameters, for the tables (rules table, table_fastmri).
LOSS_PARAMS = {loss: config["losses"][loss]["params"] for loss in LOSSES}


def data_tasks(rules):
    """The tasks with data of their own (not data_from) provided by the data rules ``rules`` (photos, fastmri)."""
    return [task for task in TASKS if TASK_SPECS[task].data == rules and data_owner(config, task) == task]


def one_of(names):
    """A wildcard constraint matching exactly ``names``, and nothing at all when there are none."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    task=one_of(TASKS),
    loss="[a-z0-9_]+",
    seed=r"\d+",


def data_dir(task, split):
    """Folder (or, for the ImageNet subset, manifest) of a task's training or validation data.

    Generated for the demo; the user's folder for `folder`; for the real datasets the checked,
    verified copies made by the rules of data.smk.
    """
    owner = data_owner(config, task)  # a task with data_from reads the folders of the task it names
    data = config["tasks"][owner]["data"]
    if data["source"] == "folder":
        return existing(data[f"{split}_dir"])
    if data["source"] == "imagenet":
        return f"{RESULTS}/data/{owner}/train_manifest.csv" if split == "train" else f"{RESULTS}/data/{owner}/kodak"
    if data["source"] == "fastmri":
        return f"{RESULTS}/data/{owner}/{split}_files"
    if data["source"] == "embedded":
        return f"{RESULTS}/data/{owner}/{split}_images"
    return f"{RESULTS}/data/{owner}/synthetic_{split}"


def train_data(task):
    """What a task's training reads: the decoded photographs of a task on photographs (rule
    decode_images, of the task whose data it uses), the fastMRI folder of an MRI task."""
    return (
        results(f"data/{data_owner(config, task)}/train_decoded.h5")
        if TASK_SPECS[task].data == "photos"
        else data_dir(task, "train")
    )


def model_metric_files(task, suite=""):
    """Loss → its models' metric files, one per seed (suite ".fastmri" for fastMRI's per-volume metrics)."""
    return {
        loss: expand(
            results("metrics/{task}/{loss}/seed{seed}{suite}.csv"), task=task, loss=loss, seed=SEEDS, suite=suite
        )
        for loss in LOSSES
    }


def model_metric_paths(task, suite=""):
    """The files of model_metric_files as one list, loss after loss."""
    return [path for paths in model_metric_files(task, suite).values() for path in paths]


def input_metrics(task, suite=""):
    """The metric file of a task's degraded inputs (suite ".fastmri" for fastMRI's per-volume metrics)."""
    return results(f"metrics/{task}/input{suite}.csv")


def validation_file(task):
    """A task's validation set (rule validation_set)."""
    return results(f"data/{task}/val.h5")


def first_seed_outputs(task):
    """The validation outputs of every loss's model of the first seed, for a task's figures and stimuli."""
    return expand(results("outputs/{task}/{loss}/seed{seed}.h5"), task=task, loss=LOSSES, seed=SEEDS[0])


def table_files(name):
    """Every file of a table: formats, per-seed values, the thesis comparison (its tables), fastMRI metrics (MRI)."""
    suffixes = [".csv", ".md", ".tex"]
    if TABLES[name].thesis:
        suffixes += ["_vs_paper.csv", "_vs_paper.md"]
    suffixes += ["_per_seed.csv", "_per_seed.md"]
    if name in FASTMRI_TABLES:
        suffixes += ["_fastmri.csv", "_fastmri.md", "_fastmri.tex"]
    return expand(results("tables/{name}{suffix}"), name=name, suffix=suffixes)


def table_targets():
    """Every file of every configured table (`snakemake tables`)."""
    return [path for name in CONFIGURED_TABLES for path in table_files(name)]


def figure_ids():
    """Every configured figure id: the panel figures and their zoomed-crop companions."""
    ids = {}
    for figure, spec in config["figures"].items():
        if spec["task"] in TASKS:
            ids[figure] = (figure, False)
            if "crop_figure" in spec:
                ids[spec["crop_figure"]] = (figure, True)
    return ids


def figure_files(figure):
    """A figure's PNG and PDF."""
    return expand(results("figures/{figure}.{ext}"), figure=figure, ext=["png", "pdf"])


def curve_files():
    """The training-curve and own-metric race figures of every configured task (all losses in one figure each)."""
    return expand(results("figures/{figure}_{task}.{ext}"), figure=["curves", "race"], task=TASKS, ext=["png", "pdf"])


def figure_targets():
    """Every figure: the configured comparison figures and the training curves."""
    return [path for figure in figure_ids() for path in figure_files(figure)] + curve_files()


def statistics_files(table):
    """The variance decomposition and the pairwise comparisons of a thesis table (statistics.smk)."""
    return expand(
        results("tables/{table}_{kind}.{ext}"), table=table, kind="variance", ext=["csv", "md", "tex"]
    ) + expand(results("tables/{table}_pairs.{ext}"), table=table, ext=["csv", "md"])


def ranking_files(task):
    """A task's ranking figure (statistics.smk)."""
    return expand(results("figures/ranking_{task}.{ext}"), task=task, ext=["png", "pdf"])


def statistics_targets():
    """Every statistics output: `snakemake statistics`, and part of `all` with several seeds."""
    return [path for table in CONFIGURED_TABLES for path in statistics_files(table)] + [
        path for task in TASKS for path in ranking_files(task)
    ]


def statistics_in_all():
    """The statistics outputs of `all`: with several seeds only (`snakemake statistics` builds them with one too)."""
    return statistics_targets() if len(SEEDS) >= 2 else []


def data_targets():
    """Every task's training and validation data, with the checks of a user's folders (`snakemake data`)."""
    return [
        path
        for task in TASKS
        for split in ("train", "val")
        for path in [data_dir(task, split)] + data_check(task, split)
    ]


def stimuli_inputs(wildcards):
    """The validation sets and model outputs of every task of our study, named valset_<task> and outputs_<task>."""
    inputs = {}
    for task in STUDY_TASKS[wildcards.study]:
        inputs[f"valset_{task}"] = validation_file(task)
        # The models of the first seed, or of every seed (userstudy.seeds: all), in the order of the study's conditions.
        inputs[f"outputs_{task}"] = [
            results(f"outputs/{task}/{loss}/seed{seed}.h5") for loss in LOSSES for seed in STIMULUS_SEEDS
        ]
    return inputs


def data_check(task, split):
    """The check report a user folder needs before a rule reads it (folder source), else nothing.

    Checks run in rules of their own, so a failing check stops before any data output is replaced.
    """
    owner = data_owner(config, task)
    if config["tasks"][owner]["data"]["source"] == "folder":
        return [f"{RESULTS}/data/{owner}/checks/{split}_images.csv"]
    return []


# Input and params functions of the rules: each takes a job's wildcards; of_task, task_setting, data_folder and
# task_seed make one.


def job_task(wildcards):
    """The task a job is about: its task wildcard, or the task of its table or of its comparison figure."""
    if "task" in wildcards.keys():
        return wildcards.task
    if "table" in wildcards.keys():
        return TABLES[wildcards.table].task
    return figure_settings(wildcards)["task"]


def of_task(function, *args):
    """An input or params function: ``function(task, *args)`` of the job's task (job_task)."""

    def of_job_task(wildcards):
        return function(job_task(wildcards), *args)

    return of_job_task


def task_setting(*keys):
    """A params function: the job task's setting ``tasks.<task>.<keys...>``, a key's ``{wildcards}`` filled in."""

    def setting(wildcards):
        value = config["tasks"][job_task(wildcards)]
        for key in keys:
            value = value[key.format(**wildcards)]
        return value

    return setting


def data_folder(split):
    """An input function: the user's folder tasks.<task>.data.<split>_dir when it exists; ``split`` may be "{split}"."""

    def folder(wildcards):
        return existing(task_setting("data", f"{split}_dir")(wildcards))

    return folder


def task_seed(split):
    """A params function: the seed derived from the job's task and ``split`` (``"{split}"``: its split wildcard)."""

    def seed(wildcards):
        return derive_seed(job_task(wildcards), split.format(**wildcards))

    return seed


def task_challenge(wildcards):
    """The fastMRI challenge (singlecoil, multicoil) of the job task's kind."""
    return TASK_SPECS[job_task(wildcards)].challenge


def is_validation(wildcards):
    """Whether the job makes or reads the validation split."""
    return wildcards.split == "val"


def val_subset(wildcards):
    """The number of validation volumes an MRI task keeps (tasks.<task>.data.val_subset); None for training data."""
    return task_setting("data", "val_subset")(wildcards) if is_validation(wildcards) else None


def kodak_folder(wildcards):
    """Where the user put Kodak's images (tasks.<task>.data.val_dir); None to download them."""
    return config["tasks"][job_task(wildcards)]["data"].get("val_dir")


def largest_crop(wildcards):
    """The largest crop of the tasks training on the job task's photographs: itself and those with data_from it."""
    return max(config["tasks"][task]["crop"] for task in TASKS if data_owner(config, task) == job_task(wildcards))


def validation_data(wildcards):
    """The data settings a task's validation set is made with (lossbench.pipeline.job_settings.task_data)."""
    return task_data(config, job_task(wildcards))


def training_settings(wildcards):
    """A training job's run, as plain data (lossbench.pipeline.job_settings.run_settings)."""
    return run_settings(config, wildcards.task, wildcards.loss, int(wildcards.seed), REGISTRY).to_dict()


def sweep_run_settings(wildcards):
    """A learning-rate sweep job's run, as plain data (lossbench.pipeline.lr_sweep.sweep_settings)."""
    return sweep_settings(config, wildcards.task, wildcards.loss, float(wildcards.lr), REGISTRY).to_dict()


def table_subject(wildcards):
    """What the table ``wildcards.table`` is of, as plain data for job parameters (lossbench.report.tables.Subject)."""
    return asdict(TABLES[wildcards.table])


def figure_panel(wildcards):
    """The panel figure of ``wildcards.figure``: itself, or the figure whose crops a crop figure zooms into."""
    return figure_ids()[wildcards.figure][0]


def figure_crop(wildcards):
    """Whether ``wildcards.figure`` is the zoomed-crop companion of a panel figure."""
    return figure_ids()[wildcards.figure][1]


def figure_settings(wildcards):
    """The configuration (figures.<panel>) of the panel figure of ``wildcards.figure``."""
    return config["figures"][figure_panel(wildcards)]


# The user study's (names of userstudy.smk; our study ``ours_<study>`` is ``<study>`` in some rules).


def study_tasks_of(wildcards):
    """The tasks whose stimuli our study ``wildcards.study`` shows."""
    return STUDY_TASKS[wildcards.study]


def stimulus_images(wildcards):
    """Task → the validation images our study ``wildcards.study`` shows of it (userstudy.stimuli)."""
    return {task: USERSTUDY["stimuli"][task] for task in study_tasks_of(wildcards)}


def study_tables(wildcards):
    """Our metric table of every task our study ``wildcards.study`` (ours_<study>) showed."""
    return [results(f"tables/{TASK_TABLE[task]}.csv") for task in STUDY_TASKS[wildcards.study.removeprefix("ours_")]]


def study_answer_files(wildcards):
    """The observers' answer files of our study ``wildcards.study``: new answers rerun its analysis."""
    return study_targets.answer_files(config, wildcards.study)


def responses_folder(wildcards):
    """The folder of the answer files of our study ``wildcards.study``."""
    return str(Path(USERSTUDY["responses"], wildcards.study))


onstart:
    refuse_missing_data()
    # Beside the outputs: the configuration that made them, with the code's versions; rewritten only when
    # that changes, and outside the DAG, so it never reruns a job.
    from lossbench.pipeline import experiment

    experiment.write_if_changed(
        f"{RESULTS}/config.yaml", experiment.record(config, experiment.provenance(workflow.basedir))
    )
    experiment.write_if_changed(f"{RESULTS}/README.md", experiment.readme(config))
