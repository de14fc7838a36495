"""Programs a scenario runs in a fresh process (``python -m benchmarks.probes.NAME``)."""
