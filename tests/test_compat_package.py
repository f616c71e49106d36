"""The ``compat/`` uvicorn shim and the ``conformance/`` runner's machinery.

The shim is exercised in child interpreters with ``compat/`` on their path, so its import hook never leaks
into this test process.  The runner's pytest plugin runs inside a real child pytest over a small suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from conformance import cli, environment, expectations, report

REPO = Path(__file__).resolve().parent.parent
COMPAT = REPO / "compat"


def run_python(code: str, *, extra_path: list[Path] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    path = [str(p) for p in (extra_path or [])] + [str(COMPAT), str(REPO)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout
    )


def ok(code: str, **kwargs: object) -> str:
    proc = run_python(code, **kwargs)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- compat: the uvicorn import name --------------------------------------------------------------------


def test_uvicorn_modules_are_pounce_modules() -> None:
    out = ok(
        """
        import importlib, sys
        import uvicorn, pounce, pounce.config, pounce.main, pounce.server
        print(uvicorn.__file__)
        assert importlib.import_module("uvicorn.config") is pounce.config
        assert importlib.import_module("uvicorn.main") is sys.modules["pounce.main"]
        assert uvicorn.Config is pounce.config.Config
        assert uvicorn.Server is pounce.server.Server
        assert uvicorn.run is sys.modules["pounce.main"].run
        assert uvicorn.main is sys.modules["pounce.main"].main  # the function, as in Uvicorn's package
        import uvicorn.protocols.http.h11_impl as h11_impl
        import pounce.protocols.http.h11_impl
        assert h11_impl is pounce.protocols.http.h11_impl
        # No module was loaded twice under a uvicorn name: every uvicorn.* entry is a pounce module.
        dupes = [n for n, m in sys.modules.items() if n.startswith("uvicorn.")
                 and getattr(m, "__name__", "").startswith("uvicorn.") and n != "uvicorn._pounce_compat"]
        assert not dupes, dupes
        print("ok")
        """
    )
    assert out.splitlines()[0] == str(COMPAT / "uvicorn" / "__init__.py")
    assert out.splitlines()[-1] == "ok"


def test_renamed_counterparts_are_the_same_objects() -> None:
    ok(
        """
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.protocols.http.zttp_impl import ZttpProtocol
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol
        from uvicorn.loops.auto import auto_loop_factory
        from uvicorn.config import UvicornDeprecationWarning
        from pounce.protocols.http.fast_impl import FastHTTPProtocol
        from pounce.protocols.websockets.wsproto_impl import WSProtocol
        from pounce.loops import auto_loop_factory as pounce_auto_loop_factory
        from pounce.config import PounceDeprecationWarning
        assert HttpToolsProtocol is FastHTTPProtocol and ZttpProtocol is FastHTTPProtocol
        assert WebSocketsSansIOProtocol is WSProtocol and WebSocketProtocol is WSProtocol
        assert auto_loop_factory is pounce_auto_loop_factory
        assert UvicornDeprecationWarning is PounceDeprecationWarning
        assert issubclass(UvicornDeprecationWarning, UserWarning)
        from uvicorn.importer import import_from_string
        assert import_from_string("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol") is FastHTTPProtocol
        """
    )


def test_patching_a_uvicorn_module_reaches_pounce() -> None:
    ok(
        """
        import uvicorn.config, pounce.config
        uvicorn.config.LOGGING_CONFIG["loggers"]["uvicorn"]["propagate"] = True
        assert pounce.config.LOGGING_CONFIG["loggers"]["uvicorn"]["propagate"] is True
        from unittest import mock
        import importlib, sys
        # patch.object on the module: on Python 3.10, mock.patch("uvicorn.main.run") resolves
        # "uvicorn.main" as the package attribute `main` (the CLI command), with real Uvicorn too.
        with mock.patch.object(importlib.import_module("uvicorn.main"), "run") as fake:
            assert sys.modules["pounce.main"].run is fake
        assert sys.modules["pounce.main"].run is not fake
        """
    )


def test_unknown_uvicorn_module_is_a_plain_module_not_found() -> None:
    proc = run_python("import uvicorn.protocols.http.no_such_impl")
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'uvicorn.protocols.http.no_such_impl'" in proc.stderr


def test_refuses_to_import_next_to_real_uvicorn(tmp_path: Path) -> None:
    dist_info = tmp_path / "uvicorn-0.54.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: uvicorn\nVersion: 0.54.0\n")
    proc = run_python("import uvicorn", extra_path=[tmp_path])
    assert proc.returncode == 1
    assert "RealUvicornInstalledError" in proc.stderr
    assert "the real Uvicorn 0.54.0 is also installed" in proc.stderr
    assert "pip uninstall" in proc.stderr


def test_python_dash_m_uvicorn_runs_pounce_cli() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(COMPAT), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--version"], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--no-such-flag"], capture_output=True, text=True, env=env, timeout=30
    )
    assert bad.returncode == 2
    assert "No such option" in bad.stderr


def test_uvicorn_version_line_is_uvicorns_naming_uvicorn_version() -> None:
    # Tools parse Uvicorn's "Running uvicorn %s with %s %s on %s"; the words after it say it is Pounce.
    out = ok(
        """
        import platform, click.testing, uvicorn, pounce
        from pounce.main import gil_state
        result = click.testing.CliRunner().invoke(uvicorn.main, ["--version"])
        assert result.exit_code == 0, result.output
        uvicorn_line = "Running uvicorn %s with %s %s on %s" % (
            uvicorn.__version__, platform.python_implementation(), platform.python_version(), platform.system())
        assert result.output == f"{uvicorn_line} (Pounce {pounce.__version__}, {gil_state()})\\n", result.output
        print(uvicorn.__version__)
        """
    )
    assert out == "0.54.0\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(COMPAT), str(REPO)])}
    for module, first_words in (("uvicorn", "Running uvicorn 0.54.0 with "), ("pounce", "Running pounce ")):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=env, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(first_words), proc.stdout


def test_conformance_venv_requirements_expand_the_renamed_extras() -> None:
    # The fallback install of conformance's venv reads Pounce's extras, which name `pounce-asgi[...]`.
    requirements = environment.pounce_requirements((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    names = {req.split(">")[0].split(";")[0].strip() for req in requirements}
    assert {"click", "h11", "h2", "wsproto", "truststore"} <= names
    assert not [req for req in requirements if "pounce" in req.lower()], requirements


def test_serves_http_through_the_uvicorn_api() -> None:
    out = ok(
        """
        import asyncio, socket
        import httpx
        import uvicorn

        async def app(scope, receive, send):
            assert scope["type"] == "http"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"hello via uvicorn name"})

        async def main():
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/")
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            print(r.status_code, r.headers["server"], r.text)

        asyncio.run(main())
        """
    )
    assert out.strip() == "200 pounce hello via uvicorn name"


# --- conformance: expectations ------------------------------------------------------------------------


EXPECT = """
[tests]
"tests/a.py::test_x[h11]" = { outcome = "fail", category = "bug", reason = "exact" }
"tests/a.py::test_x*" = { outcome = "fail", category = "internal", reason = "pattern" }
"tests/b.py::*" = { outcome = "skip", category = "environment", reason = "no zttp" }
"""


def test_expectations_match_exact_before_pattern_and_brackets_are_literal() -> None:
    exp = expectations.parse(EXPECT)
    first = exp.match("tests/a.py::test_x[h11]")
    assert first is not None and first.reason == "exact"
    second = exp.match("tests/a.py::test_x[zttp]")
    assert second is not None and second.reason == "pattern"
    assert exp.match("tests/a.py::test_y") is None
    # `[h1]` must not act as a character class.
    assert expectations.parse('[tests]\n"t.py::x[h1]" = { outcome = "fail", category = "bug", reason = "r" }\n').match(
        "t.py::xh"
    ) is None


@pytest.mark.parametrize(
    "text",
    [
        '[tests]\n"a" = { outcome = "broken", category = "bug", reason = "r" }\n',
        '[tests]\n"a" = { outcome = "fail", category = "nope", reason = "r" }\n',
        '[tests]\n"a" = "fail"\n',
        "[tests\n",
    ],
)
def test_malformed_expectations_are_rejected(text: str) -> None:
    with pytest.raises(expectations.ExpectationsError):
        expectations.parse(text)


def test_compare_is_strict_both_ways() -> None:
    exp = expectations.parse(EXPECT)
    outcomes = {
        "tests/a.py::test_x[h11]": "failed",  # listed, fails: fine
        "tests/a.py::test_x[zttp]": "passed",  # listed, passes: mismatch
        "tests/b.py::test_z": "failed",  # listed as skip, fails: mismatch
        "tests/c.py::test_new": "error",  # not listed: mismatch
        "tests/c.py::test_ok": "passed",
    }
    problems = {m.nodeid: m.problem for m in expectations.compare(outcomes, exp, full_run=True)}
    assert set(problems) == {"tests/a.py::test_x[zttp]", "tests/b.py::test_z", "tests/c.py::test_new"}
    assert "passes but is listed" in problems["tests/a.py::test_x[zttp]"]
    assert "listed as skip" in problems["tests/b.py::test_z"]
    stale = expectations.compare({"tests/a.py::test_x[h11]": "failed"}, exp, full_run=True)
    assert [m.nodeid for m in stale] == ["tests/a.py::test_x*", "tests/b.py::*"]
    assert expectations.compare({"tests/a.py::test_x[h11]": "failed"}, exp, full_run=False) == []


def test_untriaged_entries_fail_the_comparison() -> None:
    exp = expectations.parse('[tests]\n"t.py::a" = { outcome = "fail", category = "untriaged", reason = "" }\n')
    problems = expectations.compare({"t.py::a": "failed"}, exp, full_run=True)
    assert [m.problem for m in problems] == ["listed without a reason (untriaged)"]


def test_rewrite_keeps_reasons_narrows_patterns_and_adds_untriaged() -> None:
    exp = expectations.parse(EXPECT)
    outcomes = {
        "tests/a.py::test_x[h11]": "failed",
        "tests/a.py::test_x[zttp]": "failed",
        "tests/a.py::test_x[httptools]": "passed",
        "tests/b.py::test_1": "skipped",
        "tests/b.py::test_2": "skipped",
        "tests/c.py::test_new": "failed",
    }
    entries = expectations.rewrite(outcomes, exp)
    by_key = {e.key: e for e in entries}
    assert by_key["tests/a.py::test_x[h11]"].reason == "exact"
    assert by_key["tests/a.py::test_x[zttp]"].reason == "pattern"  # narrowed: one match now passes
    assert "tests/a.py::test_x*" not in by_key
    assert by_key["tests/b.py::*"].reason == "no zttp"  # every match still skips: kept as a pattern
    assert by_key["tests/c.py::test_new"].category == expectations.UNTRIAGED
    rendered = expectations.render(entries, "# header")
    assert expectations.parse(rendered).entries == entries


# --- conformance: environment and pytest command ------------------------------------------------------


UVICORN_PYPROJECT = """
[project]
name = "uvicorn"
[project.optional-dependencies]
standard = ["httptools>=0.8.0", "uvloop>=0.15.1; sys_platform != 'win32'", "websockets>=13.0"]
[dependency-groups]
dev = ["uvicorn[standard]", "ruff>=0.15", "pytest>=9.1.1", "types-click==7.1.8", "coverage>=7", "zttp>=0.0.34",
       "pytest-codspeed>=4", "mypy>=2", "twine==7.0.0", "a2wsgi==1.10.10"]
[tool.pytest.ini_options]
addopts = "-rxXs --strict-config --strict-markers -n 8"
filterwarnings = ["error", "ignore:Uvicorn's native WSGI implementation is deprecated.*:DeprecationWarning"]
"""


def test_test_requirements_drop_uvicorn_tooling_and_uvloop() -> None:
    reqs = environment.test_requirements(UVICORN_PYPROJECT)
    names = {environment.requirement_name(r) for r in reqs}
    assert names == {"httptools", "websockets", "pytest", "zttp", "a2wsgi", "pytest-timeout"}


def test_pytest_command_overrides_only_what_it_must(tmp_path: Path) -> None:
    ini = environment.pytest_config(UVICORN_PYPROJECT)
    cmd = cli.pytest_command(Path("/venv/bin/python"), ini, tmp_path / "o.jsonl", 2, 30, ["-k", "x"])
    assert "addopts=-rxXs --strict-config --strict-markers" in cmd
    assert cmd[cmd.index("-n") + 1] == "2"
    filters = next(a for a in cmd if a.startswith("filterwarnings=")).split("\n")
    assert filters[0] == "filterwarnings=error"
    assert filters[-1] == "ignore:Pounce's native WSGI implementation is deprecated.*:DeprecationWarning"
    assert "--ignore=tests/benchmarks" in cmd and "--timeout=30" in cmd
    assert cmd[-3:] == ["-k", "x", "tests"]
    single = cli.pytest_command(Path("/p"), ini, tmp_path / "o.jsonl", 1, 30, [])
    assert "-n" not in single and "no:xdist" in single


def test_extract_tests_leaves_the_uvicorn_package_out(tmp_path: Path) -> None:
    src = tmp_path / "src" / "uvicorn-9.9.9"
    for rel in ("uvicorn/__init__.py", "tests/__init__.py", "tests/conftest.py", "pyproject.toml", "README.md"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("# " + rel)
    sdist = tmp_path / "uvicorn-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src, arcname="uvicorn-9.9.9")
    dest = environment.extract_tests(sdist, "9.9.9", tmp_path / "out")
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["pyproject.toml", "tests/__init__.py", "tests/conftest.py"]


# --- conformance: the collector plugin in a real pytest -----------------------------------------------


SUITE = {
    "conftest.py": """
        import pytest
        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup boom")
        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown boom")
    """,
    "test_sample.py": """
        import pytest
        def test_pass(): pass
        def test_fail(): assert 1 == 2, "one is not two"
        def test_skip(): pytest.skip("not here")
        @pytest.mark.xfail(reason="known", strict=True)
        def test_xfail(): assert False
        def test_setup_error(broken_setup): pass
        def test_teardown_error(broken_teardown): pass
        @pytest.mark.parametrize("p", ["a[1]", "b"])
        def test_param(p): assert p == "b"
    """,
    "test_broken_import.py": "import does_not_exist_anywhere\n",
}


def run_collector(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, body in SUITE.items():
        (suite / name).write_text(textwrap.dedent(body))
    plugin_dir = environment.install_plugin(tmp_path / "plugin")
    out = tmp_path / "outcomes.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(COMPAT), str(REPO)])}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", environment.PLUGIN_NAME, "-p", "no:cacheprovider", "-q",
         f"--conformance-out={out}", "--rootdir", str(suite), "-c", os.devnull, "--continue-on-collection-errors", *extra, str(suite)],
        capture_output=True, text=True, env=env, timeout=60, cwd=suite,
    )
    return proc, out


def test_collector_records_one_outcome_per_test(tmp_path: Path) -> None:
    proc, out = run_collector(tmp_path, f"--conformance-compat-dir={COMPAT}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcomes = {nodeid.split("::")[-1] if "::" in nodeid else nodeid: r.outcome
                for nodeid, r in report.read_jsonl(out).items()}
    assert outcomes == {
        "test_pass": "passed",
        "test_fail": "failed",
        "test_skip": "skipped",
        "test_xfail": "xfailed",
        "test_setup_error": "error",
        "test_teardown_error": "error",
        "test_param[a[1]]": "failed",
        "test_param[b]": "passed",
        "test_broken_import.py": "error",
    }
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    fail = next(r for r in rows if r["nodeid"].endswith("test_fail"))
    assert "one is not two" in fail["message"]


def test_collector_refuses_a_uvicorn_outside_compat(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, out = run_collector(tmp_path, f"--conformance-compat-dir={elsewhere}")
    assert proc.returncode == 4
    assert "refusing to run: uvicorn.__file__ is" in proc.stdout + proc.stderr
    assert report.read_jsonl(out) == {}


# --- conformance: the command, re-evaluating recorded outcomes ----------------------------------------


def write_outcomes(path: Path, rows: dict[str, str]) -> None:
    path.write_text("".join(json.dumps({"nodeid": n, "outcome": o, "message": "m", "duration": 0.1}) + "\n"
                            for n, o in rows.items()))


def test_cli_reports_counts_per_file_and_the_final_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = tmp_path / "outcomes.jsonl"
    write_outcomes(outcomes, {"tests/a.py::t1": "passed", "tests/a.py::t2": "failed", "tests/b.py::t3": "skipped",
                              "tests/b.py::t4": "xfailed", "tests/b.py::t5": "error"})
    exp = tmp_path / "exp.toml"
    exp.write_text(
        '[tests]\n"tests/a.py::t2" = { outcome = "fail", category = "bug", reason = "needs issue 9" }\n'
        '"tests/b.py::*" = { outcome = "skip", category = "environment", reason = "no x" }\n'
    )
    rc = cli.main(["--results", str(outcomes), "--expectations", str(exp), "--workdir", str(tmp_path / "w")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 1  # t5 errors but its pattern says skip
    assert lines[-1] == "uvicorn 0.54.0 conformance: 1 passed, 2 failed, 2 skipped"
    assert "tests/a.py: 1 passed, 1 failed, 0 skipped" in lines
    assert any(line.startswith("MISMATCH tests/b.py::t5: error but listed as skip") for line in lines)
    data = json.loads((tmp_path / "w" / "results.json").read_text())
    assert data["summary"] == {"passed": 1, "failed": 2, "skipped": 2, "total": 5}
    assert data["tests"]["tests/a.py::t2"]["expected"]["reason"] == "needs issue 9"
    assert "| tests/a.py | 1 | 1 | 0 | 2 | 50.0% |" in (tmp_path / "w" / "report.md").read_text()

    write_outcomes(outcomes, {"tests/a.py::t1": "passed", "tests/a.py::t2": "failed", "tests/b.py::t3": "skipped"})
    rc = cli.main(["--results", str(outcomes), "--expectations", str(exp), "--workdir", str(tmp_path / "w")])
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-2] == "expectations: OK (exp.toml)"


def test_cli_rejects_a_malformed_expectations_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text('[tests]\n"a" = { outcome = "maybe", category = "bug", reason = "r" }\n')
    rc = cli.main(["--results", str(tmp_path / "none.jsonl"), "--expectations", str(exp), "--workdir", str(tmp_path)])
    assert rc == 2
    assert "outcome must be one of" in capsys.readouterr().err
