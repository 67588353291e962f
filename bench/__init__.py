"""Benchmarks and the homework's experiment matrix (``python bench/run_all.py``)."""
