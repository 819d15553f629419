"""The user study: pairwise-comparison stimuli, a collection app, and JOD scaling of the answers."""

from lossbench.userstudy.scaling import Summary, bootstrap, scale, summarize

__all__ = ["Summary", "bootstrap", "scale", "summarize"]
