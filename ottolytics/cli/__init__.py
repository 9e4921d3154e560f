"""The ``ottolytics`` command line: a thin mirror of the library, one call per command.
"""
