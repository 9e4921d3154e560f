"""Rules shared by every layer, standard library only: paths and containment, time parsing,
formatting and terminal output, and the error types.
"""
