"""Builds the conformance environment: Uvicorn's sdist, its tests, and a venv with Pounce but no Uvicorn."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

REPO = Path(__file__).resolve().parent.parent
COMPAT_DIR = REPO / "compat"
PLUGIN_NAME = "pounce_conformance_collector"

# Dev-group packages Uvicorn's tests never import: linters, type checkers, coverage, packaging, benchmarks
# (the codspeed benchmarks are not part of the suite we count), and Uvicorn itself.
EXCLUDED_DEV = re.compile(r"^(uvicorn|ruff|mypy|types-.*|coverage.*|twine|pytest-codspeed)$")
# uvloop: Pounce runs on the standard asyncio loop only, and with uvloop importable Uvicorn's tests expect
# a uvloop loop from `loop="auto"`.
EXCLUDED_STANDARD = re.compile(r"^(uvloop)$")
# Ours: a per-test time limit, so one hung test costs seconds, not the run.
EXTRA_TEST_DEPS = ("pytest-timeout>=2.3",)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return normalize(match.group(1))


def test_requirements(pyproject_text: str) -> list[str]:
    """The packages Uvicorn's tests need, read from its pyproject: its ``standard`` extra plus its ``dev``
    dependency group, less Uvicorn itself, its lint/coverage/release tooling, and uvloop.

    The ``standard`` extra brings httptools, whose presence is the skip switch for Uvicorn's
    ``httptools``-parametrized tests; through the compat mapping those tests run Pounce's FastHTTPProtocol.
    Pounce itself never imports httptools.  Likewise zttp (dev group) un-skips the ``zttp`` parameters and
    is the HTTP/2 client library of test_http2.py.
    """
    data = tomllib.loads(pyproject_text)
    standard = data.get("project", {}).get("optional-dependencies", {}).get("standard", [])
    dev = data.get("dependency-groups", {}).get("dev", [])
    wanted: list[str] = []
    for req in standard:
        if not EXCLUDED_STANDARD.match(requirement_name(req)):
            wanted.append(req)
    for req in dev:
        if isinstance(req, str) and not EXCLUDED_DEV.match(requirement_name(req)):
            wanted.append(req)
    wanted.extend(EXTRA_TEST_DEPS)
    seen: set[str] = set()
    unique = []
    for req in wanted:
        if req not in seen:
            seen.add(req)
            unique.append(req)
    return unique


def run(cmd: Sequence[str], *, cwd: Path | None = None, log: Path | None = None) -> None:
    """Run a setup command; on failure show its output and stop with a clear message."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if log is not None:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise SetupError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


class SetupError(RuntimeError):
    """Building the environment failed (network, pip, a bad sdist)."""


def download_sdist(version: str, downloads: Path, log: Path) -> Path:
    """Fetch ``uvicorn-<version>.tar.gz`` from the package index (cached under ``downloads``)."""
    downloads.mkdir(parents=True, exist_ok=True)
    existing = downloads / f"uvicorn-{version}.tar.gz"
    if not existing.exists():
        run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"uvicorn=={version}", "-d", str(downloads)],
            log=log,
        )
    if not existing.exists():
        raise SetupError(f"pip download did not produce {existing}")
    return existing


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_tests(sdist: Path, version: str, dest: Path) -> Path:
    """Unpack only ``tests/`` and ``pyproject.toml`` (its pytest configuration) into ``dest``.

    The ``uvicorn/`` source package is deliberately left out: with it beside the tests, ``import uvicorn``
    would pick it up from the rootdir instead of the compat package.
    """
    prefix = f"uvicorn-{version}/"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix):
                continue
            rel = member.name[len(prefix) :]
            if rel == "pyproject.toml" or rel.startswith("tests/"):
                member.name = rel
                members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Pythons without extraction filters
            tar.extractall(dest, members=members)  # noqa: S202 - names were filtered above
    if not (dest / "tests" / "conftest.py").exists():
        raise SetupError(f"{sdist.name} has no tests/conftest.py")
    return dest


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / ("Scripts" if os.name == "nt" else "bin") / "python"


def build_venv(root: Path, requirements: Iterable[str], log: Path, *, fresh: bool) -> Venv:
    """A venv with Pounce (editable, ``[full]``), the compat package (editable) and the test deps.

    Reused while the requirement list is unchanged; Pounce and compat are editable, so code changes need
    no reinstall.  Never installs Uvicorn (the compat guard and the collector both check).
    """
    reqs = list(requirements)
    stamp_value = json.dumps({"reqs": reqs, "repo": str(REPO), "python": sys.version}, sort_keys=True)
    stamp = root / ".pounce-conformance-stamp"
    env = Venv(root)
    if fresh and root.exists():
        shutil.rmtree(root)
    if env.python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == stamp_value:
        return env
    if root.exists():
        shutil.rmtree(root)
    print(f"creating {root}", file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    pip = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    try:
        run([*pip, "-e", f"{REPO}[full]"], log=log)
    except SetupError as exc:
        # Pounce's own packaging is broken (e.g. a file its metadata names is missing): still test the code,
        # by putting the checkout on the venv's path and installing its declared dependencies directly.
        print(f"warning: `pip install -e .[full]` failed; using a .pth to the checkout instead.\n{exc}",
              file=sys.stderr)
        run([*pip, *pounce_requirements((REPO / "pyproject.toml").read_text(encoding="utf-8"))], log=log)
        site = subprocess.run(
            [str(env.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        Path(site, "pounce-checkout.pth").write_text(str(REPO) + "\n", encoding="utf-8")
    # --no-deps: its one dependency, pounce, is the checkout installed above, never a package of that name
    # from the index.
    run([*pip, "--no-deps", "-e", str(COMPAT_DIR)], log=log)
    run([*pip, *reqs], log=log)
    stamp.write_text(stamp_value, encoding="utf-8")
    return env


def pounce_requirements(pyproject_text: str, extra: str = "full") -> list[str]:
    """Pounce's runtime requirements with ``extra``, self-references (``pounce-asgi[h2,ws]``) expanded."""
    project = tomllib.loads(pyproject_text).get("project", {})
    # Extras name the project itself by its distribution name (`pounce-asgi[h2,ws]`).
    self_reference = re.compile(rf"\s*{re.escape(project.get('name', 'pounce'))}\[([^\]]+)\]", re.IGNORECASE)
    optional = project.get("optional-dependencies", {})
    out = list(project.get("dependencies", []))
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in optional.get(name, []):
            match = self_reference.match(req)
            if match:
                todo.extend(part.strip() for part in match.group(1).split(","))
            else:
                out.append(req)
    return out


def install_plugin(dest_dir: Path) -> Path:
    """Copy the collector plugin to where the venv's pytest can import it by its plugin name."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{PLUGIN_NAME}.py"
    shutil.copyfile(Path(__file__).with_name("collector.py"), target)
    return dest_dir


def pip_freeze(env: Venv) -> list[str]:
    proc = subprocess.run(
        [str(env.python), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=120,
    )
    return [line for line in proc.stdout.splitlines() if line.strip()]


def pytest_config(pyproject_text: str) -> dict[str, object]:
    data = tomllib.loads(pyproject_text)
    ini = data.get("tool", {}).get("pytest", {}).get("ini_options", {})
    return dict(ini) if isinstance(ini, dict) else {}
