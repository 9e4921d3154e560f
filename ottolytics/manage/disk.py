"""Measuring OTTO_HOME: one parallel walk that sizes every run directory, each
project's script cache, and everything else, for ``usage`` and ``clean``.

Sizes follow the one definition of ``paths.dir_size``: the apparent size of
every file and symlink, a link counting as itself and never followed;
directories count 0 (``du -sb`` would add their own sizes, which differ from
one filesystem to the next). The walk also
notes which cache files each run's ``script.*`` symlinks point at, which is
what tells a referenced cache file from an orphan. Standard library only.
"""

import os
import re
from dataclasses import dataclass, field

# otto's project directories: <basename of cwd>-<8 hex> (or otto-<8 hex>).
PROJECT_DIR = re.compile(r"^(?P<name>.+)-(?P<hash>[0-9a-f]{8})$")
OTTOLYTICS_RUNS = os.path.join("ottolytics", "runs")


@dataclass
class Tree:
    """What one walk below a directory found."""
    bytes: int = 0
    entries: int = 0
    cache_refs: set = field(default_factory=set)  # cache file names linked from scripts
    errors: list = field(default_factory=list)    # (path, message)
    files: dict = None                            # with walk(files=True): top-level files

    def as_tuple(self):
        return (self.bytes, self.entries, tuple(self.cache_refs), self.errors, self.files)

    @classmethod
    def from_tuple(cls, t):
        return cls(t[0], t[1], set(t[2]), [tuple(e) for e in t[3]], t[4])


@dataclass
class RunDir:
    path: str
    project_dir: str   # the project directory's name, or "ottolytics" for exec runs
    name: str          # otto's unix timestamp, or the run id
    tree: Tree


@dataclass
class ProjectDir:
    name: str
    path: str
    runs: list = field(default_factory=list)      # RunDir
    cache: dict = field(default_factory=dict)     # cache file name -> bytes
    other_bytes: int = 0                          # the directory itself and loose files

    @property
    def cache_bytes(self):
        return sum(self.cache.values())

    def orphans(self, kept_refs=None):
        """Cache file names that no run (or none of *kept_refs*' runs) links to."""
        refs = set().union(*(r.tree.cache_refs for r in self.runs)) if kept_refs is None \
            else kept_refs
        return sorted(name for name in self.cache if name not in refs)


@dataclass
class HomeScan:
    home: str
    total_bytes: int = 0
    entries: int = 0
    projects: dict = field(default_factory=dict)  # project dir name -> ProjectDir
    errors: list = field(default_factory=list)

    def run_dirs(self):
        for p in self.projects.values():
            yield from p.runs


def walk(path, files=False):
    """Size everything below *path* (not *path* itself), without following links;
    with *files*, also note the sizes of the files directly in *path*. Names are
    listed and lstat'ed relative to an open directory descriptor: the cheapest
    walk Python offers, and most of ``usage``'s time."""
    tree = Tree(files={} if files else None)
    stack = [path]
    lstat, readlink = os.stat, os.readlink
    while stack:
        top = stack.pop()
        try:
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            tree.errors.append((top, exc.strerror or str(exc)))
            continue
        here = tree.files if top is path else None
        try:
            for name in os.listdir(fd):
                try:
                    st = lstat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    tree.errors.append((f"{top}/{name}", exc.strerror or str(exc)))
                    continue
                tree.entries += 1
                kind = st.st_mode & 0o170000
                if kind == 0o040000:
                    stack.append(f"{top}/{name}")
                    continue
                tree.bytes += st.st_size
                if here is not None:
                    here[name] = st.st_size
                if kind == 0o120000 and name.startswith("script."):
                    try:
                        target = readlink(name, dir_fd=fd)
                    except OSError:
                        continue
                    if ".cache" in target.split("/"):
                        tree.cache_refs.add(os.path.basename(target))
        except OSError as exc:
            tree.errors.append((top, exc.strerror or str(exc)))
        finally:
            os.close(fd)
    return tree


def walk_all(jobs, workers=None, progress=None):
    """walk() each (path, files) of *jobs*, split between this process and
    forked children, one per further core: the walk is Python-bound, so threads
    would only take turns. A child's results come back through a pipe
    (marshal); if a child fails, this process walks its share itself. A process
    running other threads walks everything itself."""
    import threading
    workers = workers or os.cpu_count() or 1
    # Fork only a single-threaded process (the command line): a child of a process
    # with other threads (a Jupyter kernel, a server) may inherit a held lock.
    if workers < 2 or len(jobs) < 64 or threading.active_count() > 1:
        workers = 1
    shares = [list(range(k, len(jobs), workers)) for k in range(workers)]
    children = []
    for share in shares[1:]:
        children.append((share, *_fork_walker([jobs[i] for i in share])))
    trees = [None] * len(jobs)
    for i in shares[0]:
        trees[i] = walk(*jobs[i])
        if progress:
            progress(1)
    for share, pid, fd in children:
        done = _collect(pid, fd)
        for i, t in zip(share, done if done is not None and len(done) == len(share) else ()):
            trees[i] = Tree.from_tuple(t)
        for i in share:
            if trees[i] is None:
                trees[i] = walk(*jobs[i])
        if progress:
            progress(len(share))
    return trees


def _fork_walker(jobs):
    import marshal
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: walk, send, leave without any cleanup of the parent's state
        code = 1
        try:
            os.close(r)
            data = marshal.dumps([walk(*j).as_tuple() for j in jobs])
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid, fd):
    import marshal
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    _pid, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        return marshal.loads(b"".join(chunks))
    except (EOFError, ValueError, TypeError):
        return None


def _listing(path, result):
    """(entry, lstat, is_dir) for each entry of *path*; errors go to *result*."""
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        result.errors.append((path, exc.strerror or str(exc)))
        return
    for entry in entries:
        try:
            yield entry, entry.stat(follow_symlinks=False), entry.is_dir(follow_symlinks=False)
        except OSError as exc:
            result.errors.append((entry.path, exc.strerror or str(exc)))


class _Scanner:
    """Classifies the top levels of OTTO_HOME itself and queues every directory
    below them for walk_all, which does the bulk of the work in parallel."""

    def __init__(self, result):
        self.result = result
        self.jobs = []  # (kind, owner, path, size of the directory itself)

    def count(self, st, owner=None):
        """An entry sized here rather than walked: a file, or a directory (size 0)."""
        size = 0 if st.st_mode & 0o170000 == 0o040000 else st.st_size
        self.result.total_bytes += size
        self.result.entries += 1
        if owner is not None:
            owner.other_bytes += size

    def queue(self, kind, owner, path, st):
        self.jobs.append((kind, owner, path, st.st_size))

    def project(self, entry, st):
        pd = self.result.projects.setdefault(entry.name, ProjectDir(entry.name, entry.path))
        self.count(st, pd)
        for child, cst, is_dir in _listing(entry.path, self.result):
            if not is_dir:
                self.count(cst, pd)
            elif pd.name == "ottolytics" and child.name == "runs":
                self.count(cst, pd)
                for run, rst, run_is_dir in _listing(child.path, self.result):
                    if run_is_dir:
                        self.queue("run", pd, run.path, rst)
                    else:
                        self.count(rst, pd)
            elif pd.name != "ottolytics" and child.name.isdigit():
                self.queue("run", pd, child.path, cst)
            elif pd.name != "ottolytics" and child.name == ".cache":
                self.queue("cache", pd, child.path, cst)
            else:
                self.queue("project-other", pd, child.path, cst)


def scan(home, workers=None, progress=None, only_projects=None):
    """Walk *home* in parallel; returns a HomeScan. *progress(done, total)* is called
    as directories finish; *only_projects* limits which project directories
    are walked (the total then covers only what was walked)."""
    home = os.path.abspath(home)
    result = HomeScan(home=home, total_bytes=0, entries=0)
    scanner = _Scanner(result)
    for entry, st, is_dir in _listing(home, result):
        project = is_dir and (PROJECT_DIR.match(entry.name) or entry.name == "ottolytics")
        if not is_dir:
            scanner.count(st)
        elif not project:
            scanner.queue("other", None, entry.path, st)
        elif only_projects is None or entry.name in only_projects:
            scanner.project(entry, st)
    jobs = scanner.jobs
    trees = walk_all([(j[2], j[0] == "cache") for j in jobs], workers,
                     (lambda n: progress(n, len(jobs))) if progress else None)
    for (kind, owner, path, _size), tree in zip(jobs, trees):
        tree.entries += 1  # the directory itself (0 bytes)
        result.total_bytes += tree.bytes
        result.entries += tree.entries
        result.errors.extend(tree.errors)
        if kind == "run":
            owner.runs.append(RunDir(path, owner.name, os.path.basename(path), tree))
        elif kind == "project-other":
            owner.other_bytes += tree.bytes
        elif kind == "cache":  # otto's cache is flat: content-addressed script files
            owner.cache = tree.files
            owner.other_bytes += tree.bytes - sum(tree.files.values())
    for pd in result.projects.values():
        pd.runs.sort(key=lambda r: r.name)
    return result

