# Training: one job per (task, loss, seed), each on one GPU when there is one (lossbench.train.gpu_pool picks
# a free one); checkpoints outside the outputs, in results/checkpoints/, survive a failed job, so a
# re-run resumes. Also the learning-rate sweep: `snakemake lr_sweep_<task>`.

#: The sweep's learning rates as they appear in file names (float() of the label is the rate).
LR_GRID = [f"{lr:g}" for lr in config["lr_sweep"]["grid"]]


rule train:
    input:
        train=of_task(train_data),
        valset=results("data/{task}/val.h5"),
    output:
        model=results("models/{task}/{loss}/seed{seed}/model.pt"),
        curve=report(
            results("models/{task}/{loss}/seed{seed}/curve.csv"),
            caption="../report/curve.rst",
            category="Training curves",
            subcategory="{task}",
            labels={"task": "{task}", "loss": "{loss}", "seed": "{seed}"},
        ),
    log:
        results("logs/train/{task}/{loss}/seed{seed}.log"),
    # The trainings are the long jobs: started before the short ones that wait on them, they keep every core
    # busy; otherwise the last one can run alone while the other cores idle (40 s of the demo's 17 min).
    priority: 1
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        # Plain data: Snakemake reruns a job whose parameters' repr changed, and skips the check for
        # values it cannot represent (a dataclass).
        settings=training_settings,
        checkpoints=results("checkpoints/{task}/{loss}/seed{seed}"),
        device=config["device"],
    script:
        "../scripts/train.py"


rule lr_sweep_run:
    input:
        train=of_task(train_data),
        valset=results("data/{task}/val.h5"),
    output:
        result=results("lr_sweep/{task}/{loss}/lr{lr}.yaml"),
        run=directory(results("lr_sweep/{task}/{loss}/lr{lr}")),
    log:
        results("logs/lr_sweep/{task}/{loss}/lr{lr}.log"),
    wildcard_constraints:
        lr=r"[0-9.e+-]+",
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        settings=sweep_run_settings,
        checkpoints=results("checkpoints/lr_sweep/{task}/{loss}/lr{lr}"),
        device=config["device"],
    script:
        "../scripts/lr_sweep_run.py"


rule lr_sweep_choose:
    input:
        expand(results("lr_sweep/{{task}}/{loss}/lr{lr}.yaml"), loss=LOSSES, lr=LR_GRID),
    output:
        results("lr_sweep/{task}.yaml"),
    log:
        results("logs/lr_sweep/{task}.log"),
    conda:
        ENV
    params:
        losses=[loss for loss in LOSSES for _ in LR_GRID],
    script:
        "../scripts/lr_sweep_choose.py"


for _task in TASKS:

    rule:
        name:
            f"lr_sweep_{_task}"
        input:
            f"{RESULTS}/lr_sweep/{_task}.yaml",
