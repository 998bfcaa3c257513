"""Side-by-side benchmarks of sendblue-lines: ``python -m benchmarks [--quick]``.

See ``benchmarks/README.md`` for what each scenario measures and how.
"""
