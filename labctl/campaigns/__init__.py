"""Campaigns: runs over many chips and hosts, as data, executed on Dask distributed.

``spec`` reads a campaign file into tasks (chip x stage, with their order); ``task`` is
what a worker runs for one of them (start, resume or take a finished run, never a blind
re-run); ``worker`` starts a Dask worker that owns a host's chips; ``runner`` submits a
campaign to a scheduler (or a local cluster) and follows it; ``fleet`` reads the lab's
store back per chip. Dask is imported only by the commands that use it (``labctl[dask]``).
"""
