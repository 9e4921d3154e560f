"""The read engine: its sources (``sources/``: the SQLite stores, a Parquet dataset),
``History`` with its frames and analytics over one source, the Parquet dataset's
writer, the weekly report's frame, and plots. The first layer that may import
pandas, DuckDB, pyarrow or matplotlib.
"""
