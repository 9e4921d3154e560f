"""Exports built on ``History``'s public surface: the Prometheus textfile and the
weekly CSV report. (The Parquet dataset is written by ``History.to_parquet``: it
is a backend of the read engine, ``analyze/dataset.py``.)
"""
