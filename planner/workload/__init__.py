"""Workload sources: inline requests, the synthetic generator, trace readers."""
