"""Measurements: signal, latency, throughput and the data they cost."""
