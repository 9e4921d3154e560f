"""The read engine: DuckDB over the stores (or a Parquet dataset), ``History`` with its frames and
analytics, and plots. The first layer that may import pandas, DuckDB, pyarrow or matplotlib.
"""
