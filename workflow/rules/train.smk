# Training: one job per (task, loss, seed), each on one GPU when there is one.


rule train:
    input:
        train=lambda w: data_dir(w.task, "train"),
        valset="results/data/{task}/val.h5",
    output:
        model="results/models/{task}/{loss}/seed{seed}/model.pt",
        curve=report(
            "results/models/{task}/{loss}/seed{seed}/curve.csv",
            caption="../report/curve.rst",
            category="Training curves",
            subcategory="{task}",
            labels={"task": "{task}", "loss": "{loss}", "seed": "{seed}"},
        ),
    params:
        spec=lambda w: train_spec(config, w.task, w.loss, int(w.seed)),
        checkpoints="results/checkpoints/{task}/{loss}/seed{seed}",
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "results/logs/train/{task}/{loss}/seed{seed}.log",
    conda:
        ENV
    script:
        "../scripts/train.py"
