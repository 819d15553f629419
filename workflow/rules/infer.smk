# Inference: every trained model restores its task's validation set.


rule infer:
    input:
        model=results("models/{task}/{loss}/seed{seed}/model.pt"),
        valset=results("data/{task}/val.h5"),
    output:
        results("outputs/{task}/{loss}/seed{seed}.h5"),
    log:
        results("logs/infer/{task}/{loss}/seed{seed}.log"),
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        device=config["device"],
    script:
        "../scripts/infer.py"


# The MRI outputs in fastMRI's submission layout, one `reconstruction` file per validation volume at its own
# scale: `python -m fastmri.evaluate --target-path <the volumes> --predictions-path <this folder>` reads them.
rule fastmri_reconstructions:
    input:
        outputs=results("outputs/{task}/{loss}/seed{seed}.h5"),
        volumes=of_task(data_dir, "val"),
    output:
        directory(results("outputs/{task}/{loss}/seed{seed}_fastmri")),
    log:
        results("logs/infer/{task}/{loss}/seed{seed}_fastmri.log"),
    wildcard_constraints:
        task=one_of(FASTMRI_TASKS),
    conda:
        ENV
    script:
        "../scripts/infer_fastmri.py"


#: Every MRI model's fastMRI submission folder (part of `all`).
FASTMRI_RECONSTRUCTIONS = [
    results(f"outputs/{task}/{loss}/seed{seed}_fastmri") for task in FASTMRI_TASKS for loss in LOSSES for seed in SEEDS
]
