# Statistics (thesis §8's open question): per table, the variance decomposition over losses, seeds and
# images and the paired comparison of every pair of losses; per task, a ranking figure per metric.
# `snakemake statistics` builds them; `all` includes them when there are at least two seeds.


rule table_statistics:
    input:
        models=of_task(model_metric_paths),
    output:
        variance_csv=results("tables/{table}_variance.csv"),
        variance_md=report(
            results("tables/{table}_variance.md"),
            caption="../report/table_statistics.rst",
            category="Statistics",
            labels={"table": "{table}", "format": "variance"},
        ),
        variance_tex=results("tables/{table}_variance.tex"),
        pairs_csv=results("tables/{table}_pairs.csv"),
        pairs_md=report(
            results("tables/{table}_pairs.md"),
            caption="../report/table_statistics.rst",
            category="Statistics",
            labels={"table": "{table}", "format": "pairs"},
        ),
    log:
        results("logs/statistics/{table}.log"),
    wildcard_constraints:
        table=one_of(TABLES),
    conda:
        ENV
    params:
        table="{table}",
        subject=table_subject,
        models=of_task(model_metric_files),
        lpips_pretrained=LPIPS_PRETRAINED,
    script:
        "../scripts/statistics.py"


rule ranking_figure:
    input:
        models=of_task(model_metric_paths),
    output:
        png=report(
            results("figures/ranking_{task}.png"),
            caption="../report/ranking.rst",
            category="Statistics",
            labels={"task": "{task}"},
        ),
        pdf=results("figures/ranking_{task}.pdf"),
    log:
        results("logs/statistics/ranking_{task}.log"),
    conda:
        ENV
    params:
        models=of_task(model_metric_files),
        kind=task_setting("kind"),
        lpips_pretrained=LPIPS_PRETRAINED,
    script:
        "../scripts/ranking_figure.py"


rule statistics:
    input:
        statistics_targets(),
