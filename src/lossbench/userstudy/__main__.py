"""Command line of the user study.

    python -m lossbench.userstudy serve --stimuli results/userstudy/stimuli/denoise \\
        --responses responses/denoise --observer alice --observer bob [--host 127.0.0.1] [--port 8000] [--allowed-host
        NAME] [--config CONFIG] [--seed S] [--sampling full|active] [--trials-per-observer T]
        [--practice-trials K]
        [--ppd P | --distance-m D --monitor-width-m W --monitor-pixels N]
    python -m lossbench.userstudy stimuli --task denoise --valset results/data/denoise/val.h5 \\
        --output l1=results/outputs/denoise/l1/seed0.h5 --output l2=... --image astronaut --folder DIR
        [--ppd P | --distance-m D --monitor-width-m W --monitor-pixels N]
    python -m lossbench.userstudy analyse --counts COUNTS.csv [--observers K] --out DIR [--jod-origin
    lowest_is_1|mean0|LOSS]
    python -m lossbench.userstudy analyse --manifest DIR/manifest.json --responses responses/denoise --out DIR
        (also writes DIR/skipped_lines.csv: the answer-file lines skipped, per file and reason)
    python -m lossbench.userstudy plan (--counts PILOT.csv | --manifest M --responses DIR | --jod 0,0.5,1.2 | --jod
        jod.csv) --precision 0.3 [--trials-per-observer 120] [--studies 100] [--max-observers 30] [--seed 0]
        [--out DIR]

The viewing options are ``evaluation.flip``'s keys: the conditions the stimuli are meant to be seen
under, from which the start page tells observers how far to sit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Each command imports only what it needs, so that `serve` starts without the analysis's plotting stack.


def _port(text: str) -> int:
    """``--port``: a TCP port number, 0 for a free one."""
    if not (text.isdigit() and 0 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (expected 0–65535; 0 picks a free one)")
    return int(text)


def _viewing(args: argparse.Namespace) -> dict | None:
    """The viewing options given, as ``evaluation.flip``'s keys; None if none is given."""
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.viewing import GEOMETRY

    geometry = {key: getattr(args, key) for key in GEOMETRY if getattr(args, key) is not None}
    if args.ppd is not None and geometry:
        raise ValueError(
            "--ppd replaces the viewing geometry: give it or"
            f" --{', --'.join(key.replace('_', '-') for key in geometry)}, not both"
        )
    if args.ppd is not None:
        return {"ppd": args.ppd}
    return geometry or None


def _viewing_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``evaluation.flip``'s keys as options of ``parser``; ``default`` says what applies without them."""
    group = parser.add_argument_group(
        "viewing conditions",
        "evaluation.flip's keys, the conditions observers are told to view the stimuli under: pixels per degree, or a"
        f" viewing geometry (keys not given at evaluation.flip's defaults). Without them: {default}",
    )
    group.add_argument("--ppd", type=float, help="pixels per degree of visual angle (replaces the geometry)")
    group.add_argument("--distance-m", dest="distance_m", type=float, help="viewing distance in metres")
    group.add_argument("--monitor-width-m", dest="monitor_width_m", type=float, help="monitor width in metres")
    group.add_argument(
        "--monitor-pixels", dest="monitor_pixels", type=int, help="monitor's horizontal resolution in pixels"
    )


def _from_config(args: argparse.Namespace) -> None:
    """Fill ``serve``'s --seed, --sampling and --trials-per-observer not given from --config's ``userstudy`` (in
    place), else the defaults: seed 0, full sampling, all trials."""
    userstudy = {}
    if args.config:
        # Deferred: the configuration's validation only where one is given.
        from lossbench.pipeline.config import load

        userstudy = load(args.config, require_data=False)["userstudy"]
    for key, default in (("seed", 0), ("sampling", "full"), ("trials_per_observer", None)):
        if getattr(args, key) is None:
            setattr(args, key, userstudy.get(key, default))


def _serve(args: argparse.Namespace) -> None:
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.server import Study, StudyServer
    from lossbench.userstudy.viewing import conditions

    _from_config(args)
    observers = list(args.observer)
    if args.observers_file:
        observers += [line.strip() for line in Path(args.observers_file).read_text().splitlines() if line.strip()]
    viewing = _viewing(args)
    study = Study(
        args.stimuli,
        args.responses,
        observers,
        args.seed,
        viewing=None if viewing is None else conditions(viewing, "viewing options"),
        sampling=args.sampling,
        trials_per_observer=args.trials_per_observer,
        practice_trials=args.practice_trials,
    )
    try:
        server = StudyServer(study, args.host, args.port, allowed_hosts=tuple(args.allowed_host))
    except OSError as error:
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    host, port = server.server_address[:2]
    print(
        f"serving {args.stimuli} for {len(observers)} observers on http://{host}:{port}/ (answers in {args.responses});"
        " Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _stimuli(args: argparse.Namespace) -> None:
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.stimuli import make_stimuli

    outputs = {}
    for item in args.output:
        loss, separator, path = item.partition("=")
        if not separator:
            raise ValueError(f"--output {item!r}: expected LOSS=PATH")
        outputs[loss] = path
    # Without options, evaluation.flip's defaults, as the workflow's stimuli without a configured evaluation.flip.
    viewing = _viewing(args) or {}
    print(f"wrote {make_stimuli(args.task, args.valset, outputs, args.image, args.folder, args.flicker_ms, viewing)}")


def _analyse(args: argparse.Namespace) -> None:
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.counts import observer_names, read_counts, write_counts
    from lossbench.userstudy.report import (
        JOD_ORIGINS,
        anchored,
        jod_plot,
        observer_note,
        ranking_triangle,
        write_jod_table,
        write_probability_table,
        write_summary,
    )
    from lossbench.userstudy.responses import observer_counts, read_folder, skip_note, write_skipped
    from lossbench.userstudy.scaling import summarize
    from lossbench.userstudy.seed_spread import loss_summary, write_seed_table
    from lossbench.userstudy.seeds import seeded, split
    from lossbench.userstudy.stimuli import load_manifest

    out = Path(args.out)
    skipped = ""  # what our answer files held besides answers, for the log and the JOD table's caption
    if args.counts:
        conditions, counts = read_counts(args.counts)
        if counts.ndim == 2 and args.observers is None:
            raise ValueError(
                f"--counts {args.counts}: pooled counts (no observer column) need --observers K, how many observers"
                " gave them"
            )
    else:
        files = read_folder(args.responses)
        observers, conditions, counts = observer_counts(load_manifest(args.manifest), files)
        write_counts(conditions, counts, out / "observer_counts.csv", observers)
        skipped = skip_note(write_skipped(files, out / "skipped_lines.csv"))
        print(skipped)
    losses = list(dict.fromkeys(split(name)[0] for name in conditions))
    if args.jod_origin not in (*JOD_ORIGINS, *conditions, *losses):
        raise ValueError(
            f"--jod-origin: expected {', '.join(JOD_ORIGINS)} or one of the study's losses ({', '.join(losses)}),"
            f" got {args.jod_origin!r}"
        )
    summary = summarize(conditions, counts, args.samples, args.seed, observers=args.observers)
    write_summary(summary, out)
    print(observer_note(summary))
    if counts.ndim == 3:
        _screen(args, conditions, counts, observer_names(args.counts) if args.counts else observers)
    pooled = counts.sum(axis=0) if counts.ndim == 3 else counts
    write_probability_table(
        conditions, pooled, out / "probabilities", "P(column chosen over row); the winner of each comparison in bold."
    )
    # One origin for the table and both figures, named in the caption and on the JOD axes, as in the workflow.
    words = anchored(summary, args.jod_origin)[1]
    write_jod_table(
        summary, out / "jod_table", f"JOD scores ({words}; 1 JOD = 75 % preference). {skipped}".strip(), args.jod_origin
    )
    jod_plot(summary, [out / "jod.png", out / "jod.pdf"], "JOD scores", args.jod_origin)
    ranking_triangle(summary, [out / "triangle.png", out / "triangle.pdf"], "Ranking triangle", args.jod_origin)
    if seeded(conditions):  # every seed's model: each loss over its seeds, and losses against seeds
        write_seed_table(summary, out / "seeds", "JOD by loss and seed", args.jod_origin)
        write_summary(loss_summary(summary), out / "losses")
    print(f"wrote the analysis to {out}")


def _screen(args: argparse.Namespace, conditions: list[str], counts, names: list[str]) -> None:
    """Observer screening of per-observer counts: the table, and the JOD without the flagged observers beside the JOD
    of all (which stays the study's result: nobody is dropped silently)."""
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.report import write_jod_table, write_summary
    from lossbench.userstudy.scaling import summarize
    from lossbench.userstudy.screening import FLAG_Z, MIN_SCREENED, screen_study, write_screening

    out = Path(args.out)
    threshold = FLAG_Z if args.flag_z is None else args.flag_z
    fits, kept, kept_counts, left_out = screen_study(names, counts, threshold)
    write_screening(fits, out / "screening", threshold, len(names))
    if not fits:
        print(f"{len(names)} observers: too few to screen one against the others ({MIN_SCREENED} or more needed)")
        return
    if not left_out:
        print(f"screening: no observer flagged (z < -{threshold:g}); table in {out / 'screening.md'}")
        return
    print(
        f"screening: flagged {', '.join(left_out)} (z < -{threshold:g}; {out / 'screening.md'}); the JOD of all"
        f" observers is the result, the JOD without them is in {out / 'without_flagged'}"
    )
    reduced = summarize(conditions, kept_counts, args.samples, args.seed)
    write_summary(reduced, out / "without_flagged")
    write_jod_table(
        reduced,
        out / "without_flagged" / "jod_table",
        f"JOD scores without the flagged observers {', '.join(left_out)} (screening.md; the study's result is the JOD"
        " of all observers).",
        args.jod_origin,
    )


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the collection app")
    serve.add_argument("--stimuli", required=True, help="folder with manifest.json (rule userstudy_stimuli)")
    serve.add_argument("--responses", required=True, help="folder for the observers' answer files")
    serve.add_argument("--observer", action="append", default=[], help="a registered observer id (repeatable)")
    serve.add_argument("--observers-file", help="file with one observer id per line")
    serve.add_argument(
        "--config",
        help="lossbench configuration whose userstudy.seed, .sampling and .trials_per_observer to use (options given"
        " here win)",
    )
    serve.add_argument(
        "--seed", type=int, help="seed of the trial order, sides and ties (default: --config's userstudy.seed, else 0)"
    )
    serve.add_argument(
        "--sampling",
        choices=("full", "active"),
        help="full: every trial in each observer's seeded order; active: each next trial by expected information gain"
        " from all observers' answers so far (default: --config's userstudy.sampling, else full)",
    )
    serve.add_argument(
        "--trials-per-observer",
        dest="trials_per_observer",
        type=int,
        help="how many trials each observer answers (default: --config's userstudy.trials_per_observer, else all of"
        " the manifest's)",
    )
    serve.add_argument(
        "--practice-trials",
        dest="practice_trials",
        type=int,
        default=1,
        help="practice trials each observer answers first, labelled as such and never counted (default 1; 0: none)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="0 picks a free port (printed at start)")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help=(
            "another name observers reach this server by, besides --host, localhost, the machine's host name and IP"
            " addresses (repeatable)"
        ),
    )
    _viewing_options(serve, "those of the manifest (evaluation.flip when the workflow made the stimuli).")
    serve.set_defaults(run=_serve)


def _add_stimuli(commands: argparse._SubParsersAction) -> None:
    # Deferred: each subcommand imports what it needs, so that --help and serve start without torch.
    from lossbench.userstudy.viewing import default_geometry

    stimuli = commands.add_parser("stimuli", help="write flicker stimuli and the manifest")
    stimuli.add_argument("--task", required=True)
    stimuli.add_argument("--valset", required=True)
    stimuli.add_argument("--output", action="append", required=True, help="LOSS=PATH of a model's outputs (repeatable)")
    stimuli.add_argument("--image", action="append", required=True, help="validation image id (repeatable)")
    stimuli.add_argument("--folder", required=True)
    stimuli.add_argument("--flicker-ms", type=int, default=500)
    defaults = (
        "evaluation.flip's defaults ({distance_m} m from a {monitor_width_m} m wide {monitor_pixels}-pixel monitor)."
    )
    _viewing_options(stimuli, defaults.format_map(default_geometry()))
    stimuli.set_defaults(run=_stimuli)


def _add_analyse(commands: argparse._SubParsersAction) -> None:
    analyse = commands.add_parser("analyse", help="JOD scaling, tables and plots of a study")
    source = analyse.add_mutually_exclusive_group(required=True)
    source.add_argument("--counts", help="count matrix CSV (chosen,<conditions>...)")
    source.add_argument("--manifest", help="the study's manifest.json (with --responses)")
    analyse.add_argument("--responses", help="folder of <observer>.jsonl answer files")
    analyse.add_argument(
        "--observers",
        type=int,
        help="how many observers gave --counts (needed for pooled counts; per-observer counts give it)",
    )
    analyse.add_argument("--out", required=True)
    analyse.add_argument("--samples", type=int, default=1000)
    analyse.add_argument("--seed", type=int, default=0)
    analyse.add_argument(
        "--jod-origin",
        default="lowest_is_1",
        help=(
            "where the table and figures put JOD 0 or 1: lowest_is_1 (the thesis's figures), mean0, or a loss's name"
            " (at 0)"
        ),
    )
    analyse.add_argument(
        "--flag-z",
        type=float,
        default=None,
        help="screening: flag an observer whose answers' log-likelihood under the others' scale lies this many"
        " standard deviations below its expectation (default: lossbench.userstudy.screening.FLAG_Z)",
    )
    analyse.set_defaults(run=_analyse)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.userstudy",
        description="Pairwise-comparison user study: stimuli, collection app, analysis.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_stimuli(commands)
    _add_analyse(commands)
    # Deferred like the other commands' imports: the planner's simulation is not needed to serve.
    from lossbench.userstudy.planner import add_command

    add_command(commands)
    args = parser.parse_args(argv)
    if getattr(args, "manifest", None) and not args.responses:
        parser.error("--manifest needs --responses")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
