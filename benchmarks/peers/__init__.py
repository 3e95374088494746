"""Helpers of ``benchmarks/compare_peers.py``: the peer tools (reproject baseline, SWarp, Siril),
the shared output grid, process-tree memory monitoring and the results table."""
