"""Reporting: the result tables, comparison figures, statistics and the summary, and the thesis's published numbers
(:mod:`.paper`)."""
