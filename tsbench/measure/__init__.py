"""Measurements: latency, memory, FLOPs and the environment they ran in."""
