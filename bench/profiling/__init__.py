"""Measuring networks: parameter and MAC counts, latency and peak memory."""
