"""``ottolytics demo``: what the library does, on the bundled sample history.

It copies the sample (``data/sample``, or one generated on the spot when there
is none) into an output directory, so the committed copy is never modified, then
prints a stats table and the highlights, and writes the weekly CSV, the
Prometheus textfile and two PNG plots there, printing their paths.
"""

import os
import shutil
import subprocess
import sys
from datetime import timedelta

DEFAULT_SAMPLE = os.path.join("data", "sample")


def _say(text=""):
    print(text, flush=True)


def run_demo(sample=None, out=None):
    import pandas as pd

    from ottolytics.core.formatting import shorten
    from ottolytics.tools.sample import generate
    out = os.path.abspath(out or "demo-output")
    home = os.path.join(out, "home")
    if os.path.exists(home):
        shutil.rmtree(home)
    os.makedirs(out, exist_ok=True)
    sample = sample or (DEFAULT_SAMPLE if os.path.isdir(DEFAULT_SAMPLE) else None)
    if sample:
        if not os.path.isfile(os.path.join(sample, "ottolytics.db")):
            print(f"ottolytics: error: {sample}: no ottolytics.db here; pass --sample DIR "
                  "(a directory written by 'ottolytics sample')", file=sys.stderr)
            return 1
        shutil.copytree(sample, home, symlinks=True)
        origin = sample
    else:
        generate(home)
        origin = "a sample generated just now (no data/sample here)"
    db = os.path.join(home, "ottolytics.db")
    from ottolytics.analyze.history import open as open_history
    from ottolytics.analyze.plots import duration_trend, success_heatmap
    from ottolytics.export.prometheus import write_metrics
    from ottolytics.export.report import week_label, write_csv
    h = open_history(db)
    runs = h.runs()
    _say(f"Sample history from {origin}: {len(runs)} runs of "
         f"{runs['project'].nunique()} projects, {runs['started_at'].min():%Y-%m-%d} to "
         f"{runs['started_at'].max():%Y-%m-%d}. Working copy: {home}\n")
    _say("$ ottolytics stats --since '' -n 8")
    _run_cli(["--db", db, "stats", "--since", "", "-n", "8"])

    _say("\nHighlights, from the Python API (h = ottolytics.open(db)):")
    flaky = h.flaky().head(2)
    for r in flaky.itertuples():
        _say(f"  h.flaky():          {r.project}/{r.task}: score {r.score:.2f} "
             f"({r.flips} flips, {r.retry_passes} passed on retry in its last {r.runs} runs)")
    for r in h.regressions().head(1).itertuples():
        _say(f"  h.regressions():    {r.project}/{r.task} got {r.ratio:.2f}x {r.direction} "
             f"from {r.changed_at:%Y-%m-%d} (run {r.run_id}, p={r.p_value:.1g})")
    for r in h.failure_groups().head(3).itertuples():
        _say(f"  h.failure_groups(): {r.count:>3}x in {r.tasks}: {shorten(r.message, 72)}")

    # Windows end where the history shown ends, not today: a finished sample
    # would otherwise have empty duration and ratio families.
    end = runs["finished_at"].max()
    end = runs["started_at"].max() if pd.isna(end) else end
    monday = (end - timedelta(days=end.weekday() + 7)).date()  # its last full week
    week = week_label(monday)
    csv_path = os.path.join(out, f"weekly-{week}.csv")
    write_csv(h.weekly_report(week), csv_path)
    prom_path = os.path.join(out, "ottolytics.prom")
    write_metrics(h, prom_path, now=end.timestamp())
    trend_path = os.path.join(out, "api-build-duration.png")
    fig = duration_trend(h.with_filters(project=["api"]), "build")
    fig.savefig(trend_path, dpi=110)
    heat_path = os.path.join(out, "success-heatmap.png")
    success_heatmap(h).savefig(heat_path, dpi=110)
    h.close()
    _say(f"\nWeekly report ({week}, CSV):   {csv_path}")
    _say(f"Prometheus textfile:          {prom_path}")
    _say(f"Plots (PNG):                  {trend_path}")
    _say(f"                              {heat_path}")
    _say(f"\nNext: ottolytics --db {db} history -n 10"
         f"\n      ottolytics --db {db} info latest"
         f"\n      {_notebooks_hint(sample, db)}")
    return 0


def _run_cli(argv):
    """Run ``ottolytics ARGV`` as the user would, its output as part of the demo's.

    A child process, not ``cli.main``: the CLI sits above ``tools`` in the layers
    (it offers ``demo`` as a command), so the demo does not import it. On a
    terminal the child writes to it directly (rich tables); otherwise its output
    goes through ``sys.stdout``, so a redirect or a test's capture sees it.
    """
    from ottolytics.core.formatting import fancy
    command = [sys.executable, "-m", "ottolytics", *argv]
    if fancy():
        sys.stdout.flush()
        subprocess.run(command, check=False)
        return
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    sys.stdout.flush()


def _notebooks_hint(sample, db):
    """Where the notebooks are: a checkout has them; pip does not install them."""
    places = [os.getcwd()]
    if sample:   # data/sample of a checkout, run from elsewhere
        places.append(os.path.dirname(os.path.dirname(os.path.abspath(sample))))
    for place in places:
        path = os.path.join(place, "notebooks", "failure_investigation.ipynb")
        if os.path.isfile(path):
            shown = os.path.relpath(path) if place == os.getcwd() else path
            return f"jupyter lab {shown}"
    return ("the notebooks are not installed with the package: they are in notebooks/ of "
            f"ottolytics's source (a git checkout); to read this copy, set\n      "
            f"STORE = \"{db}\" in their first cell")
