"""Development tooling kept apart from the runtime: the bundled sample, synthetic histories,
the benchmark and the demo.
"""
