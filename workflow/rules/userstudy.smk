# The user study: the thesis's two studies (Tables 6.2, 6.5, Figs. 6.7, 6.8, 6.17, 6.18) from the shipped
# count matrices, flicker stimuli of our models for studies of our own (userstudy.studies: study → tasks;
# by default denoise, and one mri study of knee and brain images as the thesis's), and their analysis
# when responses are configured. Study ids: thesis_denoise, thesis_mri, ours_<study>. Only our studies with
# answer files (<responses>/<study>/*.jsonl) are analysed, decided here when the workflow is planned, so that
# a study nobody has answered yet is named (in the log and in tables/userstudy_ours_studies.*), not failed.

from lossbench.pipeline import userstudy as study_targets
from lossbench.userstudy.agreement import thesis_sources
from lossbench.userstudy.counts import THESIS_STUDIES

USERSTUDY = config["userstudy"]
STUDY_TASKS = study_targets.study_tasks(config)
OWN_STUDIES = study_targets.own_studies(config)
USERSTUDY_OUTPUTS = study_targets.study_outputs(config)
USERSTUDY_TARGETS = study_targets.targets(config)
# The models our studies show (the first seed's, or every seed's with userstudy.seeds: all) and their conditions, loss
# after loss; where the metrics find each loss's JOD (with every seed's model, the means over its seeds).
STIMULUS_SEEDS = study_targets.stimulus_seeds(config)
STUDY_CONDITIONS = study_targets.conditions(config)
STUDY_SCORES = study_targets.scores(config)
# Thesis study → the published metric tables of the models it compared (the MRI study showed knee and brain images).
THESIS_TABLES = thesis_sources()
TASK_TABLE = {table.task: name for name, table in TABLES.items()}
UNANSWERED = [row for row in study_targets.study_status(config) if row["answer_files"] == "0"]
if UNANSWERED:
    _NOT_ANALYSED = ", ".join("{} (no answers in {})".format(row["study"], row["responses"]) for row in UNANSWERED)
    print(
        f"Note: userstudy: not analysing {_NOT_ANALYSED}; see {RESULTS}/tables/userstudy_ours_studies.md.",
        file=sys.stderr,
    )


for _study, (_table, _jod_figure, _triangle_figure) in USERSTUDY_OUTPUTS.items():

    # One job per study: the bootstrap is the costly part, and its tables and figures share it.
    rule:
        name:
            f"userstudy_analysis_{_study}"
        input:
            # Our studies also give the lines skipped in their answer files, for the log and the JOD table's caption.
            **study_targets.analysis_inputs(_study, RESULTS),
        output:
            jod=f"{RESULTS}/userstudy/{_study}/jod.csv",
            samples=f"{RESULTS}/userstudy/{_study}/samples.csv",
            p_values=f"{RESULTS}/userstudy/{_study}/p_values.csv",
            table=report(
                f"{RESULTS}/tables/{_table}.csv",
                caption="../report/userstudy_table.rst",
                category="User study",
                labels={"table": _table, "format": "probabilities"},
            ),
            table_md=f"{RESULTS}/tables/{_table}.md",
            table_tex=f"{RESULTS}/tables/{_table}.tex",
            jod_table=report(
                f"{RESULTS}/tables/{_table}_jod.csv",
                caption="../report/userstudy_table.rst",
                category="User study",
                labels={"table": _table, "format": "JOD"},
            ),
            jod_table_md=f"{RESULTS}/tables/{_table}_jod.md",
            jod_table_tex=f"{RESULTS}/tables/{_table}_jod.tex",
            jod_png=report(
                f"{RESULTS}/figures/{_jod_figure}.png",
                caption="../report/userstudy_jod.rst",
                category="User study",
                labels={"figure": _jod_figure},
            ),
            jod_pdf=f"{RESULTS}/figures/{_jod_figure}.pdf",
            triangle_png=report(
                f"{RESULTS}/figures/{_triangle_figure}.png",
                caption="../report/userstudy_triangle.rst",
                category="User study",
                labels={"figure": _triangle_figure},
            ),
            triangle_pdf=f"{RESULTS}/figures/{_triangle_figure}.pdf",
        log:
            f"{RESULTS}/logs/userstudy/{_study}.log",
        conda:
            ENV
        params:
            title=study_targets.title(_study, config),
            # The thesis publishes pooled counts: its observer count is given; ours come with per-observer counts.
            observers=study_targets.observers(_study),
            n_samples=USERSTUDY["bootstrap_samples"],
            seed=USERSTUDY["seed"],
            jod_origin=USERSTUDY["jod_origin"],
        script:
            "../scripts/userstudy_analysis.py"


rule userstudy_kendall_thesis:
    input:
        **{
            study: expand(results(f"userstudy/thesis_{study}/{{name}}.csv"), name=["jod", "samples"])
            for study in THESIS_STUDIES
        },
    output:
        csv=report(
            results("tables/userstudy_kendall_thesis.csv"),
            caption="../report/userstudy_kendall.rst",
            category="User study",
            labels={"table": "Kendall τ, thesis"},
        ),
        md=results("tables/userstudy_kendall_thesis.md"),
    log:
        results("logs/userstudy/kendall_thesis.log"),
    conda:
        ENV
    params:
        published=THESIS_TABLES,
    script:
        "../scripts/userstudy_kendall.py"


rule userstudy_kendall_ours:
    input:
        study=[results(f"{STUDY_SCORES}/{name}.csv") for name in ("jod", "samples")],
        # Our metric table of every task the study showed.
        tables=study_tables,
    output:
        csv=report(
            results("tables/userstudy_kendall_{study}.csv"),
            caption="../report/userstudy_kendall.rst",
            category="User study",
            labels={"table": "Kendall τ, {study}"},
        ),
        md=results("tables/userstudy_kendall_{study}.md"),
    log:
        results("logs/userstudy/kendall_{study}.log"),
    wildcard_constraints:
        study=one_of(OWN_STUDIES),
    conda:
        ENV
    params:
        published=None,
    script:
        "../scripts/userstudy_kendall.py"


# Self-preference: does a metric favour the model trained on it, in JOD (lossbench.userstudy.self_preference)?
rule userstudy_self_preference_thesis:
    input:
        **{
            study: expand(results(f"userstudy/thesis_{study}/{{name}}.csv"), name=["jod", "samples"])
            for study in THESIS_STUDIES
        },
    output:
        csv=report(
            results("tables/userstudy_self_preference_thesis.csv"),
            caption="../report/userstudy_self_preference.rst",
            category="User study",
            labels={"table": "self-preference, thesis"},
        ),
        md=results("tables/userstudy_self_preference_thesis.md"),
        figures=[
            report(
                results("figures/userstudy_self_preference_thesis.png"),
                caption="../report/userstudy_self_preference.rst",
                category="User study",
                labels={"figure": "self-preference, thesis"},
            ),
            results("figures/userstudy_self_preference_thesis.pdf"),
        ],
    log:
        results("logs/userstudy/self_preference_thesis.log"),
    conda:
        ENV
    params:
        published=THESIS_TABLES,
    script:
        "../scripts/userstudy_self_preference.py"


rule userstudy_self_preference_ours:
    input:
        study=[results(f"{STUDY_SCORES}/{name}.csv") for name in ("jod", "samples")],
        tables=study_tables,
    output:
        csv=report(
            results("tables/userstudy_self_preference_{study}.csv"),
            caption="../report/userstudy_self_preference.rst",
            category="User study",
            labels={"table": "self-preference, {study}"},
        ),
        md=results("tables/userstudy_self_preference_{study}.md"),
        figures=[
            results("figures/userstudy_self_preference_{study}.png"),
            results("figures/userstudy_self_preference_{study}.pdf"),
        ],
    log:
        results("logs/userstudy/self_preference_{study}.log"),
    wildcard_constraints:
        study=one_of(OWN_STUDIES),
    conda:
        ENV
    params:
        published=None,
    script:
        "../scripts/userstudy_self_preference.py"


rule userstudy_stimuli:
    input:
        unpack(stimuli_inputs),
    output:
        manifest=results("userstudy/stimuli/{study}/manifest.json"),
    log:
        results("logs/userstudy/stimuli_{study}.log"),
    wildcard_constraints:
        study=one_of(STUDY_TASKS),
    conda:
        ENV
    params:
        tasks=study_tasks_of,
        images=stimulus_images,
        # The study's conditions, in the order of its inputs' models: the losses, or (loss, seed) pairs.
        losses=STUDY_CONDITIONS,
        flicker_ms=USERSTUDY["flicker_ms"],
        viewing=EVALUATION["flip"],
    script:
        "../scripts/userstudy_stimuli.py"


rule userstudy_counts:
    input:
        manifest=results("userstudy/stimuli/{study}/manifest.json"),
        # Every observer file is an input, so that new answers rerun the analysis.
        responses=study_answer_files,
    output:
        counts=results("userstudy/ours_{study}/observer_counts.csv"),
        # The lines of the answer files that are no answers, per file and reason (responses.write_skipped).
        skipped=results("userstudy/ours_{study}/skipped_lines.csv"),
    log:
        results("logs/userstudy/counts_{study}.log"),
    wildcard_constraints:
        study=one_of([study.removeprefix("ours_") for study in OWN_STUDIES]),
    conda:
        ENV
    params:
        folder=responses_folder,
    script:
        "../scripts/userstudy_counts.py"


rule userstudy_ours_studies:
    output:
        csv=results("tables/userstudy_ours_studies.csv"),
        md=results("tables/userstudy_ours_studies.md"),
    log:
        results("logs/userstudy/ours_studies.log"),
    conda:
        ENV
    params:
        # The rows change when a study gets its first answers or new observers, which reruns this rule.
        rows=study_targets.study_status(config),
    script:
        "../scripts/userstudy_studies.py"


for _table, _jod_figure, _triangle_figure in USERSTUDY_OUTPUTS.values():

    rule:
        name:
            _table
        input:
            study_targets.table_files(_table, RESULTS),

    for _figure in (_jod_figure, _triangle_figure):

        rule:
            name:
                _figure
            input:
                study_targets.figure_files(_figure, RESULTS),


# Our studies have per-observer answers: each observer is scored against the others' scale, and the JOD is also
# given without the flagged ones (the JOD tables above keep every observer).
rule userstudy_screening:
    input:
        counts=results("userstudy/{study}/observer_counts.csv"),
    output:
        table=report(
            results("tables/userstudy_{study}_screening.csv"),
            caption="../report/userstudy_table.rst",
            category="User study",
            labels={"table": "userstudy_{study}", "format": "observer screening"},
        ),
        table_md=results("tables/userstudy_{study}_screening.md"),
        jod_table=results("tables/userstudy_{study}_jod_without_flagged.csv"),
        jod_table_md=results("tables/userstudy_{study}_jod_without_flagged.md"),
        jod_table_tex=results("tables/userstudy_{study}_jod_without_flagged.tex"),
    log:
        results("logs/userstudy/screening_{study}.log"),
    wildcard_constraints:
        study=one_of(OWN_STUDIES),
    conda:
        ENV
    params:
        title=lambda wildcards: study_targets.title(wildcards.study, config),
        n_samples=USERSTUDY["bootstrap_samples"],
        seed=USERSTUDY["seed"],
        jod_origin=USERSTUDY["jod_origin"],
    script:
        "../scripts/userstudy_screening.py"


# With every seed's model (userstudy.seeds: all): each loss's JOD over its seeds, their spread, and the between-loss /
# within-loss ratio in JOD (lossbench.userstudy.seed_spread); the metrics' comparisons read the loss means.
rule userstudy_seeds:
    input:
        study=expand(results("userstudy/{{study}}/{name}.csv"), name=["jod", "samples"]),
    output:
        table=report(
            results("tables/userstudy_{study}_seeds.csv"),
            caption="../report/userstudy_table.rst",
            category="User study",
            labels={"table": "userstudy_{study}", "format": "JOD over seeds"},
        ),
        variance=results("tables/userstudy_{study}_seeds_variance.csv"),
        table_md=results("tables/userstudy_{study}_seeds.md"),
        table_tex=results("tables/userstudy_{study}_seeds.tex"),
        scores=[
            results("userstudy/{study}/losses/jod.csv"),
            results("userstudy/{study}/losses/samples.csv"),
            results("userstudy/{study}/losses/p_values.csv"),
        ],
    log:
        results("logs/userstudy/seeds_{study}.log"),
    wildcard_constraints:
        study=one_of(OWN_STUDIES if study_targets.seeds_as_conditions(config) else []),
    conda:
        ENV
    params:
        title=lambda wildcards: study_targets.title(wildcards.study, config),
        jod_origin=USERSTUDY["jod_origin"],
    script:
        "../scripts/userstudy_seeds.py"


rule userstudy:
    input:
        USERSTUDY_TARGETS,
