"""Benchmarks: indexing, queries in process and over HTTP, cold start, writes under load, and scale to a million
vectors, side by side with txtai. Run ``python -m bench`` (all) or ``python -m bench NAME``; see ``__main__``."""
