"""Recording while things run: the Recorder API (sync and asyncio), the ``exec`` shim and
``run start``/``run end``. Standard library only, so recording costs microseconds.
"""
