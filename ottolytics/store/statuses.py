"""The statuses of runs and tasks, and their order: defined here once.

The schema's CHECK constraints, the read path's categoricals (in this order),
the CLI's ``--status`` choices and its task counts, the MCP server and the
importers all take them from here; a test holds that no other module restates
a list of statuses.
"""

# Every status a run can have, in the order frames and listings show them.
RUN_STATUSES = ("running", "success", "failed", "interrupted")
# Every status a task can have, in the order of the frames' categoricals.
TASK_STATUSES = ("pending", "running", "success", "failed", "skipped", "interrupted")

# The statuses a run can be ended with (``run end --status``): all but running.
RUN_END_STATUSES = tuple(s for s in RUN_STATUSES if s != "running")
# Finished with an outcome: what success rates and durations count.
OUTCOMES = ("success", "failed")
# A task in one of these is done for good: a later word about it changes nothing.
TERMINAL_TASK = OUTCOMES + ("skipped",)
# The statuses a task reaches from running in one step without a status_log row
# (the plain path that the transitions view derives).
PLAIN_PATH = ("running",) + OUTCOMES
# Not finished yet: a task in one of these has no finished_at and may still write.
UNFINISHED = ("pending", "running")
# The order in which listings count a run's tasks (``5 ✓3 ✗1 ...``): outcomes
# first, still running last.
TASK_COUNT_ORDER = ("success", "failed", "skipped", "interrupted", "running")


def sql_in(statuses) -> str:
    """``('a','b')``: *statuses* as an SQL list for ``IN``."""
    return "(" + ",".join(f"'{s}'" for s in statuses) + ")"


def success_rate(successes, failures):
    """The success rate: successes / (successes + failures), None when neither.
    The one definition of it; ``analyze.analytics.success_rate_sql`` is its SQL
    twin (a test holds that they agree)."""
    finished = successes + failures
    return successes / finished if finished else None
