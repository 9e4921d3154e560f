"""The read engine's backends: one ``Source`` per kind of history (``base`` is
the interface; ``sqlite`` the stores, ``parquet`` a Parquet dataset), with the
column types derived from the store's schema (``types``)."""
