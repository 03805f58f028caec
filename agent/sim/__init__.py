"""Simulated field: routes, coverage scenarios and simulated devices for demos and tests."""
