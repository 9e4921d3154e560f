"""Looking after the store from the terminal: listing, run info, disk usage, retention, clean
and doctor. Standard library only, so the quick commands start fast.
"""
