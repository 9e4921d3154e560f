"""Exports built on ``History``'s public surface: the Parquet dataset, the Prometheus textfile
and the weekly CSV report.
"""
