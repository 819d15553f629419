# Data: the embedded demo photographs, synthetic fastMRI-format volumes, and validation sets.


rule embedded_photos:
    output:
        directory("results/data/denoise/{split}_images"),
    params:
        names=lambda w: config["tasks"]["denoise"]["data"][w.split],
        max_side=config["tasks"].get("denoise", {}).get("data", {}).get("max_side"),
    wildcard_constraints:
        split="train|val",
    log:
        "results/logs/data/denoise_{split}_images.log",
    conda:
        ENV
    script:
        "../scripts/embedded_photos.py"


rule synthetic_mri:
    output:
        directory("results/data/{task}/synthetic_{split}"),
    params:
        challenge=lambda w: TASK_KINDS[w.task],
        volumes=lambda w: config["tasks"][w.task]["data"][w.split]["volumes"],
        slices=lambda w: config["tasks"][w.task]["data"][w.split]["slices"],
        prefix=lambda w: f"{w.task}_{w.split}",
        seed=lambda w: derive_seed(w.task, w.split),
    wildcard_constraints:
        task="knee|brain",
        split="train|val",
    log:
        "results/logs/data/{task}_synthetic_{split}.log",
    conda:
        ENV
    script:
        "../scripts/synthetic_mri.py"


rule validation_set:
    input:
        lambda w: data_dir(w.task, "val"),
    output:
        "results/data/{task}/val.h5",
    params:
        kind=lambda w: TASK_KINDS[w.task],
        data=lambda w: task_data(config, w.task),
        seed=VALIDATION_SEED,
    log:
        "results/logs/data/{task}_validation_set.log",
    conda:
        ENV
    script:
        "../scripts/validation_set.py"
