# Inference: every trained model restores its task's validation set.


rule infer:
    input:
        model=results("models/{task}/{loss}/seed{seed}/model.pt"),
        valset=results("data/{task}/val.h5"),
    output:
        results("outputs/{task}/{loss}/seed{seed}.h5"),
    params:
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        results("logs/infer/{task}/{loss}/seed{seed}.log"),
    conda:
        ENV
    script:
        "../scripts/infer.py"
