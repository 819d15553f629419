"""``python -m lossbench.infer``: see :mod:`lossbench.infer.cli`."""

from lossbench.infer.cli import main

if __name__ == "__main__":
    main()
