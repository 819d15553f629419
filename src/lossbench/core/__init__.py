"""The bottom layer: specs and their registries, input checks, seeds, logging and the float32 scope.

Everything else in lossbench may import from here; nothing here imports from the rest of lossbench.
"""
