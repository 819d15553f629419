"""The task kinds, one module each (two for fastMRI's challenges, which differ only in their files); see
:mod:`lossbench.data.taskspec`."""
