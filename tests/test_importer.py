from __future__ import annotations

import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pounce.importer import ImportFromStringError, import_from_string


@pytest.fixture
def pkg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway package on sys.path, so the fixture modules are real importable files."""
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = tmp_path / "h1_importer_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "raise_import_error.py").write_text("myattr = 123\nimport does_not_exist_h1  # noqa\n")
    (pkg / "circular_a.py").write_text("from .circular_b import foo  # noqa\nbar = 123\n")
    (pkg / "circular_b.py").write_text("from .circular_a import bar  # noqa\nfoo = 123\n")
    (pkg / "nested.py").write_text(
        textwrap.dedent(
            """
            class Outer:
                class Inner:
                    value = 42

            def factory():
                return "made"
            """
        )
    )
    yield pkg
    for name in [m for m in sys.modules if m.startswith("h1_importer_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("import_str", ["example:", ":attr", "example", "", "example.attr"])
def test_invalid_format(import_str: str) -> None:
    with pytest.raises(ImportFromStringError) as exc_info:
        import_from_string(import_str)
    assert str(exc_info.value) == f'Import string "{import_str}" must be in format "<module>:<attribute>".'


def test_invalid_module() -> None:
    with pytest.raises(ImportFromStringError) as exc_info:
        import_from_string("module_does_not_exist_h1:myattr")
    assert str(exc_info.value) == 'Could not import module "module_does_not_exist_h1".'


def test_invalid_attr() -> None:
    with pytest.raises(ImportFromStringError) as exc_info:
        import_from_string("tempfile:attr_does_not_exist")
    assert str(exc_info.value) == 'Attribute "attr_does_not_exist" not found in module "tempfile".'


def test_invalid_nested_attr_names_whole_path() -> None:
    with pytest.raises(ImportFromStringError) as exc_info:
        import_from_string("tempfile:TemporaryFile.nope")
    assert str(exc_info.value) == 'Attribute "TemporaryFile.nope" not found in module "tempfile".'


def test_internal_import_error_is_not_hidden(pkg_dir: Path) -> None:
    with pytest.raises(ModuleNotFoundError) as exc_info:
        import_from_string("h1_importer_pkg.raise_import_error:myattr")
    assert not isinstance(exc_info.value, ImportFromStringError)
    assert exc_info.value.name == "does_not_exist_h1"


def test_circular_import_error(pkg_dir: Path) -> None:
    with pytest.raises(ImportError) as exc_info:
        import_from_string("h1_importer_pkg.circular_a:bar")
    assert "partially initialized module 'h1_importer_pkg.circular_a'" in str(exc_info.value)


def test_valid_import() -> None:
    assert import_from_string("tempfile:TemporaryFile") is tempfile.TemporaryFile


def test_nested_attribute(pkg_dir: Path) -> None:
    assert import_from_string("h1_importer_pkg.nested:Outer.Inner.value") == 42
    assert import_from_string("h1_importer_pkg.nested:factory")() == "made"


def test_no_import_needed() -> None:
    assert import_from_string(tempfile.TemporaryFile) is tempfile.TemporaryFile
    obj = object()
    assert import_from_string(obj) is obj
