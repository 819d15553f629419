"""Training: the loop (:mod:`.loop`), its command line (``python -m lossbench.train``), checkpoints,
devices and the GPU pool, stop signals, the live view, and the run settings a job is trained from."""
