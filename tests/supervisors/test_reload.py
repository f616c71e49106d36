"""Dev reload: change detection (StatReload, and WatchFiles where installed) and a real reloading server."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from pounce.config import Config
from pounce.supervisors.basereload import BaseReload, _display_path
from pounce.supervisors.statreload import StatReload
from tests.supervisors.serving import children, get, is_alive, serve, wait_for

try:
    from pounce.supervisors.watchfilesreload import FileFilter, WatchFilesReload
except ImportError:
    FileFilter = None  # type: ignore[assignment,misc]
    WatchFilesReload = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.timeout(60)


def noop(sockets: list[socket.socket] | None = None) -> None:
    pass


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("main.py", "app/sub/sub.py", "app/js/main.js", ".dotted", "app/src/main.py"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return tmp_path


def bump(path: Path) -> None:
    """Move the mtime clearly forward: coarse file-system clocks must not hide the change."""
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))


def stat_reloader(monkeypatch: pytest.MonkeyPatch, root: Path, **kwargs: Any) -> StatReload:
    monkeypatch.chdir(root)
    config = Config(app="tests.supervisors.apps:app", reload=True, **kwargs)
    config.reload_delay = 0
    return StatReload(config, target=noop, sockets=[])


def test_stat_reload_sees_a_changed_python_file(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reloader = stat_reloader(monkeypatch, tree)
    assert next(reloader) is None  # first pass records the baseline
    bump(tree / "app" / "sub" / "sub.py")
    assert next(reloader) == [(tree / "app" / "sub" / "sub.py").resolve()]


def test_stat_reload_ignores_other_files(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reloader = stat_reloader(monkeypatch, tree)
    assert next(reloader) is None
    bump(tree / ".dotted")
    bump(tree / "app" / "js" / "main.js")
    assert next(reloader) is None


def test_stat_reload_watches_only_the_given_dirs(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reloader = stat_reloader(monkeypatch, tree, reload_dirs=[str(tree / "app")])
    assert next(reloader) is None
    bump(tree / "main.py")
    assert next(reloader) is None
    bump(tree / "app" / "src" / "main.py")
    assert next(reloader) == [(tree / "app" / "src" / "main.py").resolve()]


def test_stat_reload_warns_that_patterns_need_watchfiles(
    tree: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stat_reloader(monkeypatch, tree, reload_includes=["*.js"])
    assert "--reload-include and --reload-exclude have no effect unless watchfiles is installed." in caplog.text


def test_base_reload_run_order(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = iter([None, [tmp_path / "x.py"]])

    class Scripted(BaseReload):
        def startup(self) -> None:
            calls.append("startup")

        def restart(self) -> None:
            calls.append("restart")

        def shutdown(self) -> None:
            calls.append("shutdown")

        def should_restart(self) -> list[Path] | None:
            try:
                return next(steps)
            except StopIteration:
                raise StopIteration() from None

    Scripted(Config(app="tests.supervisors.apps:app", reload=True), target=noop, sockets=[]).run()
    assert calls == ["startup", "restart", "shutdown"]


def test_signal_stops_the_pause() -> None:
    reloader = BaseReload(Config(app="tests.supervisors.apps:app", reload=True), target=noop, sockets=[])
    reloader.pause()
    reloader.signal_handler(signal.SIGINT, None)
    assert reloader.should_exit.is_set()
    with pytest.raises(StopIteration):
        reloader.pause()


def test_display_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _display_path(tmp_path / "app" / "x.py") == "'app/x.py'"
    assert _display_path(Path("/elsewhere/x.py")) == "'/elsewhere/x.py'"


@pytest.mark.skipif(FileFilter is None, reason="watchfiles not installed")
def test_file_filter_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    excluded = tmp_path / "vendor"
    excluded.mkdir()
    monkeypatch.chdir(tmp_path)
    config = Config(app="tests.supervisors.apps:app", reload=True, reload_excludes=[str(excluded), "*.js"],
                    reload_includes=["*.css"])
    file_filter = FileFilter(config)
    assert file_filter(tmp_path / "app.py")
    assert file_filter(tmp_path / "style.css")
    assert not file_filter(excluded / "app.py")
    assert not file_filter(tmp_path / "main.js")
    assert not file_filter(tmp_path / ".hidden.py")


APP_SOURCE = """
VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": VERSION.encode()}})
"""


def write_app(path: Path, version: str, broken: bool = False) -> None:
    source = APP_SOURCE.format(version=version)
    if broken:
        source += "\nthis is not python\n"
    path.write_text(source)
    bump(path)


@pytest.mark.slow
def test_reload_serves_new_code_and_keeps_the_old_when_the_new_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    module = src / "reloadme.py"
    write_app(module, "one")
    with serve(
        "--reload", "--reload-dir", str(src), "--app-dir", str(src), "--reload-delay", "0.1",
        app="reloadme:app", tmp_path=tmp_path,
    ) as server:
        assert get(server.port) == (200, "one")
        assert server.wait_log("Started reloader process")

        write_app(module, "two")
        assert wait_for(lambda: get(server.port)[1] == "two", 20), server.output()
        assert "detected changes in" in server.output() and "Reloading..." in server.output()

        write_app(module, "three", broken=True)
        assert server.wait_log("still serving the previous version", timeout=20), server.output()
        assert get(server.port) == (200, "two")

        write_app(module, "four")
        assert wait_for(lambda: get(server.port)[1] == "four", 20), server.output()

        workers = children(server.pid)
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
        assert wait_for(lambda: not any(is_alive(pid) for pid in workers), 10)
        assert "Stopping reloader process" in server.output()
