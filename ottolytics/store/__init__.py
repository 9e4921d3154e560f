"""The SQLite store: schema and migrations, the Store connection, the spool that keeps events
while the store is locked, liveness of recording processes. Standard library only.
"""
