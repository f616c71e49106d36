"""Pounce's distribution name, and the import-time refusal to run next to ``bengal-pounce``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pounce._distribution import DISTRIBUTION, find_conflicting_distribution

REPO = Path(__file__).resolve().parent.parent


def test_distribution_name_is_not_the_unrelated_pypi_pounce() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "pounce-asgi"
    assert project["scripts"] == {"pounce": "pounce.main:main"}
    # Extras that name the project itself must use the new name, or pip would fetch PyPI's `pounce`.
    for extra, requirements in project["optional-dependencies"].items():
        assert not [r for r in requirements if r.startswith("pounce[")], extra


def import_pounce_with(extra_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(extra_path), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-c", "import pounce"], capture_output=True, text=True, env=env, timeout=30, cwd=extra_path
    )


def test_import_stops_next_to_bengal_pounce(tmp_path: Path) -> None:
    dist_info = tmp_path / "bengal_pounce-0.4.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: bengal-pounce\nVersion: 0.4.0\n")
    proc = import_pounce_with(tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pounce._distribution.ConflictingDistributionError: pounce-asgi and bengal-pounce ")
    assert str(dist_info) in last
    assert "pip uninstall pounce-asgi bengal-pounce" in last


def test_import_works_without_bengal_pounce(tmp_path: Path) -> None:
    (tmp_path / "bengal_pounce_extras-1.0.dist-info").mkdir()  # another project: not a conflict
    proc = import_pounce_with(tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("name", "conflict"),
    [
        ("bengal_pounce-0.4.0.dist-info", True),
        ("Bengal_Pounce-0.4.0.dist-info", True),
        ("bengal.pounce-1.0.dist-info", True),
        ("bengal_pounce-0.4.0-py3.11.egg-info", True),
        ("bengal_pounce.egg-info", True),
        ("bengal_pounce_extras-1.0.dist-info", False),
        ("bengal_pounce-0.4.0.dist-info.bak", False),
        ("pounce_asgi-0.1.0.dist-info", False),
        ("bengal_pounce", False),  # its package directory, if any, is not its metadata
    ],
)
def test_metadata_directory_names(tmp_path: Path, name: str, conflict: bool) -> None:
    (tmp_path / name).mkdir()
    found = find_conflicting_distribution([str(tmp_path / "missing"), str(tmp_path / "a.zip"), str(tmp_path)])
    assert found == (str(tmp_path / name) if conflict else None)
