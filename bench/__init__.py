"""Benchmarks for the bot core against local stand-ins (`python -m bench.run`)."""
