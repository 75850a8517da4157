"""The run machinery, below everything that knows about models or tasks.

The run folder and its lock, checkpoints, metric sinks and plots of a run's files, stop
signals, processes and ranks, full disks, the registries and plugins, paths to shared assets
and dependency warnings.

Imports nothing from seqmarl but :mod:`seqmarl.errors`, :mod:`seqmarl.schema` and its own modules.
"""
