# The user study: the thesis's two studies (Tables 6.2, 6.5, Figs. 6.7, 6.8, 6.17, 6.18) from the shipped
# count matrices, flicker stimuli of our models for a study of our own, and its analysis when responses
# are configured. Study ids: thesis_denoise, thesis_mri, ours_<task>.

from lossbench.tables import TABLES as METRIC_TABLES
from lossbench.userstudy import pipeline

USERSTUDY = config["userstudy"]
OWN_STUDIES = pipeline.own_studies(config)
USERSTUDY_OUTPUTS = pipeline.study_outputs(config)
USERSTUDY_TARGETS = pipeline.targets(config)
TASK_TABLE = {task: name for name, (task, _) in METRIC_TABLES.items()}


for _study, (_table, _jod_figure, _triangle_figure) in USERSTUDY_OUTPUTS.items():

    # One job per study: the bootstrap is the costly part, and its tables and figures share it.
    rule:
        name:
            f"userstudy_analysis_{_study}"
        input:
            counts=pipeline.counts_file(_study),
        output:
            jod=f"results/userstudy/{_study}/jod.csv",
            samples=f"results/userstudy/{_study}/samples.csv",
            p_values=f"results/userstudy/{_study}/p_values.csv",
            table=report(f"results/tables/{_table}.csv", caption="../report/userstudy_table.rst", category="User study", labels={"table": _table, "format": "probabilities"}),
            table_md=f"results/tables/{_table}.md",
            table_tex=f"results/tables/{_table}.tex",
            jod_table=report(f"results/tables/{_table}_jod.csv", caption="../report/userstudy_table.rst", category="User study", labels={"table": _table, "format": "JOD"}),
            jod_table_md=f"results/tables/{_table}_jod.md",
            jod_table_tex=f"results/tables/{_table}_jod.tex",
            jod_png=report(f"results/figures/{_jod_figure}.png", caption="../report/userstudy_jod.rst", category="User study", labels={"figure": _jod_figure}),
            jod_pdf=f"results/figures/{_jod_figure}.pdf",
            triangle_png=report(f"results/figures/{_triangle_figure}.png", caption="../report/userstudy_triangle.rst", category="User study", labels={"figure": _triangle_figure}),
            triangle_pdf=f"results/figures/{_triangle_figure}.pdf",
        params:
            title=pipeline.title(_study),
            n_samples=USERSTUDY["bootstrap_samples"],
            seed=USERSTUDY["seed"],
        log:
            f"results/logs/userstudy/{_study}.log",
        conda:
            ENV
        script:
            "../scripts/userstudy_analysis.py"


rule userstudy_kendall_thesis:
    input:
        denoise=expand("results/userstudy/thesis_denoise/{name}.csv", name=["jod", "samples"]),
        mri=expand("results/userstudy/thesis_mri/{name}.csv", name=["jod", "samples"]),
    output:
        csv=report("results/tables/userstudy_kendall_thesis.csv", caption="../report/userstudy_kendall.rst", category="User study", labels={"table": "Kendall τ, thesis"}),
        md="results/tables/userstudy_kendall_thesis.md",
    params:
        # Study → the published metric tables of the models it compared (the MRI study showed knee and brain images).
        published={"thesis_denoise": ["table_6_1"], "thesis_mri": ["table_6_3", "table_6_4"]},
    log:
        "results/logs/userstudy/kendall_thesis.log",
    conda:
        ENV
    script:
        "../scripts/userstudy_kendall.py"


rule userstudy_kendall_ours:
    input:
        study=lambda w: expand("results/userstudy/{study}/{name}.csv", study=w.study, name=["jod", "samples"]),
        table=lambda w: f"results/tables/{TASK_TABLE[w.study.removeprefix('ours_')]}.csv",
    output:
        csv=report("results/tables/userstudy_kendall_{study}.csv", caption="../report/userstudy_kendall.rst", category="User study", labels={"table": "Kendall τ, {study}"}),
        md="results/tables/userstudy_kendall_{study}.md",
    params:
        published=None,
    wildcard_constraints:
        study="|".join(OWN_STUDIES) or "no_own_study",
    log:
        "results/logs/userstudy/kendall_{study}.log",
    conda:
        ENV
    script:
        "../scripts/userstudy_kendall.py"


rule userstudy_stimuli:
    input:
        valset="results/data/{task}/val.h5",
        outputs=expand("results/outputs/{{task}}/{loss}/seed{seed}.h5", loss=LOSSES, seed=SEEDS[0]),
    output:
        manifest="results/userstudy/stimuli/{task}/manifest.json",
    params:
        images=lambda w: USERSTUDY["stimuli"][w.task],
        losses=LOSSES,
        flicker_ms=USERSTUDY["flicker_ms"],
        viewing=EVALUATION["flip"],
    log:
        "results/logs/userstudy/stimuli_{task}.log",
    conda:
        ENV
    script:
        "../scripts/userstudy_stimuli.py"


rule userstudy_counts:
    input:
        manifest="results/userstudy/stimuli/{task}/manifest.json",
        # Every observer file is an input, so that new answers rerun the analysis.
        responses=lambda w: sorted(str(path) for path in Path(USERSTUDY["responses"], w.task).glob("*.jsonl")),
    output:
        "results/userstudy/ours_{task}/observer_counts.csv",
    params:
        folder=lambda w: str(Path(USERSTUDY["responses"], w.task)),
    log:
        "results/logs/userstudy/counts_{task}.log",
    conda:
        ENV
    script:
        "../scripts/userstudy_counts.py"


for _table, _jod_figure, _triangle_figure in USERSTUDY_OUTPUTS.values():

    rule:
        name:
            _table
        input:
            pipeline.table_files(_table),

    for _figure in (_jod_figure, _triangle_figure):

        rule:
            name:
                _figure
            input:
                pipeline.figure_files(_figure),


rule userstudy:
    input:
        USERSTUDY_TARGETS,
