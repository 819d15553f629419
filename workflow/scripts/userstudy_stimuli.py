"""Snakemake adapter: flicker stimuli and the manifest of our own study for one task."""

from pathlib import Path

from lossbench.config import flip_ppd
from lossbench.logs import log_to
from lossbench.userstudy.stimuli import make_stimuli

with log_to(snakemake.log[0]):
    params = snakemake.params
    outputs = dict(zip(params.losses, snakemake.input.outputs))
    viewing = {**params.viewing, "ppd": flip_ppd({"flip": params.viewing})}
    path = make_stimuli(snakemake.wildcards.task, snakemake.input.valset, outputs, params.images, Path(snakemake.output.manifest).parent, params.flicker_ms, viewing)
    print(f"wrote {path}")
