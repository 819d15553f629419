"""The user study: pairwise-comparison stimuli, a collection app, and JOD scaling of the answers."""

from lossbench.userstudy.scaling import MIN_OBSERVERS, Summary, bootstrap, scale, summarize

__all__ = ["MIN_OBSERVERS", "Summary", "bootstrap", "scale", "summarize"]
