"""The layers of docs/internals.md, enforced: import-linter checks the contracts
of pyproject.toml ([tool.importlinter]): nothing imports upward, nothing below
analyze/ imports pandas, duckdb, pyarrow or matplotlib, the write path no rich,
and no two sibling modules or packages import each other."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


def _lint(*args):
    done = subprocess.run([sys.executable, "-c", LINT, "--no-cache", *args], cwd=ROOT,
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_import_contracts_are_kept():
    code, out = _lint()
    assert code == 0, out


def test_the_contracts_cover_every_layer_and_rule():
    contracts = {c["type"]: c for c in _config()["contracts"]}
    layers = contracts["layers"]
    assert layers["exhaustive"] is True     # a new package must be given its place
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    packages = {p.name for p in (ROOT / "ottolytics").iterdir()
                if (p / "__init__.py").exists()}
    assert packages <= named, packages - named
    below_analyze = {f"ottolytics.{p}" for p in ("core", "store", "record", "sources", "manage")}
    assert any(set(c["source_modules"]) >= below_analyze
               and set(c["forbidden_modules"]) >= {"pandas", "duckdb", "pyarrow", "matplotlib"}
               for c in _config()["contracts"] if c["type"] == "forbidden")
    assert contracts["acyclic_siblings"]["ancestors"] == ["ottolytics"]


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check sees the package's imports: the same layers turned upside down
    (core on top) must fail, naming an import it found."""
    config = _config()
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    lines = ["[importlinter]", f"root_package = {config['root_package']}",
             "[importlinter:contract:upside-down]", "name = upside down", "type = layers",
             "containers = ottolytics", "layers ="]
    lines += [f"    {layer}" for layer in reversed(layers["layers"])]
    ini = tmp_path / "upside-down.ini"
    ini.write_text("\n".join(lines) + "\n")
    code, out = _lint("--config", str(ini))
    assert code != 0 and "BROKEN" in out, out
    assert "ottolytics.store is not allowed to import ottolytics.core" in out, out
