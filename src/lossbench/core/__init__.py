"""The bottom layer: specs and their registries (:mod:`.specs`), input checks of tensors (:mod:`.checks`), the files
lossbench writes and reads (:mod:`.io`: CSV, Markdown and LaTeX tables, figures), seeds, logging and the float32 scope.

Everything else in lossbench may import from here; nothing here imports from the rest of lossbench.
"""
