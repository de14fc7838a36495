"""The concurrency benchmark suite: ``python -m benchmarks`` (``make bench``).

- ``suite``: what a scenario, a case and a measurement are;
- ``runner``: warm-up, repetitions in rotating order, failures;
- ``stats``: medians with their range, ratios pair by pair;
- ``report``, ``plots``, ``compare``: report.md, PNGs, ``--compare``;
- ``machine``, ``progress``: the machine's facts, the live display;
- ``scenarios/``: the workloads; ``baselines/``: the designs compared with.
"""
