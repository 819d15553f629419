# Figures: input, reference and each model's output for a validation image, and zoomed crops.


rule figure:
    input:
        valset=of_task(validation_file),
        outputs=of_task(first_seed_outputs),
    output:
        png=report(
            results("figures/{figure}.png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=results("figures/{figure}.pdf"),
    log:
        results("logs/figures/{figure}.log"),
    wildcard_constraints:
        # Only the configured comparison figures: the user-study figures are other rules' outputs.
        figure=one_of(figure_ids()),
    conda:
        ENV
    params:
        settings=figure_settings,
        panel=figure_panel,
        crop=figure_crop,
        losses=LOSSES,
        seed=SEEDS[0],
        lpips_pretrained=LPIPS_PRETRAINED,
    script:
        "../scripts/figure.py"


for _figure in figure_ids():

    rule:
        name:
            _figure
        input:
            figure_files(_figure),


rule figures:
    input:
        figure_targets(),


rule curve_figure:
    input:
        curves=expand(results("models/{{task}}/{loss}/seed{seed}/curve.csv"), loss=LOSSES, seed=SEEDS[0]),
        inputs=results("metrics/{task}/input.csv"),
    output:
        png=report(
            results("figures/curves_{task}.png"),
            caption="../report/curves.rst",
            category="Training curves",
            labels={"task": "{task}"},
        ),
        pdf=results("figures/curves_{task}.pdf"),
    log:
        results("logs/figures/curves_{task}.log"),
    conda:
        ENV
    params:
        losses=LOSSES,
        seed=SEEDS[0],
        val_images=task_setting("training", "val_images"),
        lpips_pretrained=LPIPS_PRETRAINED,
    script:
        "../scripts/curves.py"


# The own-metric race: every configured metric at every validation, a line per loss (does a loss still gain on its
# own metric?).
rule race_figure:
    input:
        curves=expand(results("models/{{task}}/{loss}/seed{seed}/curve.csv"), loss=LOSSES, seed=SEEDS[0]),
        inputs=results("metrics/{task}/input.csv"),
    output:
        png=report(
            results("figures/race_{task}.png"),
            caption="../report/race.rst",
            category="Training curves",
            labels={"task": "{task}", "figure": "own-metric race"},
        ),
        pdf=results("figures/race_{task}.pdf"),
    log:
        results("logs/figures/race_{task}.log"),
    conda:
        ENV
    params:
        losses=LOSSES,
        seed=SEEDS[0],
        val_images=task_setting("training", "val_images"),
        lpips_pretrained=LPIPS_PRETRAINED,
    script:
        "../scripts/race.py"


rule curves:
    input:
        curve_files(),
