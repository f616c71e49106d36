"""A logging config written for Uvicorn, applied where ``uvicorn`` cannot be imported.

Each test runs in a real venv without system site-packages that has only Pounce (this checkout, through a
``.pth``) and the few packages it imports, so ``import uvicorn`` fails there whatever this machine has
installed, and ``compat/`` is not on its path.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# Uvicorn 0.54's own LOGGING_CONFIG, as countless deployments copy it.
UVICORN_LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

UVICORN_INI = """\
[loggers]
keys=root,uvicorn,access

[handlers]
keys=default,access

[formatters]
keys=default,access

[logger_root]
level=WARNING
handlers=

[logger_uvicorn]
level=INFO
handlers=default
propagate=0
qualname=uvicorn

[logger_access]
level=INFO
handlers=access
propagate=0
qualname=uvicorn.access

[handler_default]
class=logging.StreamHandler
formatter=default
args=(sys.stderr,)

[handler_access]
class=logging.StreamHandler
formatter=access
args=(sys.stdout,)

[formatter_default]
class=uvicorn.logging.DefaultFormatter
format=%(levelprefix)s %(message)s

[formatter_access]
class=uvicorn.logging.AccessFormatter
format=%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s
"""

ACCESS_LINE = 'INFO:     127.0.0.1:5000 - "GET /x HTTP/1.1" 200 OK'

# Run first in every child: `uvicorn` must not be importable, and stays out of sys.modules.
PRELUDE = """
import importlib.util, logging, logging.config, sys
assert importlib.util.find_spec("uvicorn") is None, "uvicorn is importable in the bare venv"
def log_access():
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/x", "1.1", 200)
    logging.getLogger("uvicorn.error").info("hello")
def check():
    import pounce.logging as pl
    formatters = {h.name: type(h.formatter) for h in logging.getLogger("uvicorn").handlers}
    formatters.update({h.name: type(h.formatter) for h in logging.getLogger("uvicorn.access").handlers})
    assert set(formatters.values()) == {pl.DefaultFormatter, pl.AccessFormatter}, formatters
    assert not [m for m in sys.modules if m.split(".")[0] == "uvicorn"], "a uvicorn module was installed"
"""


def _link_top_level(module_name: str, into: Path) -> None:
    """Make ``module_name`` (a package or a single-file module of this interpreter) importable from ``into``."""
    module = importlib.import_module(module_name)
    source = Path(module.__file__ or "")
    if source.name == "__init__.py":
        source = source.parent
    (into / source.name).symlink_to(source)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("no-uvicorn")
    venv.EnvBuilder(system_site_packages=False, with_pip=False, symlinks=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    site_dir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # Pounce's own imports, and PyYAML for the YAML config, taken from this interpreter one by one: adding
    # its whole site-packages would also bring whatever `uvicorn` this machine has.
    deps = root / "deps"
    deps.mkdir()
    needed = ["click", "h11", "yaml"] + (["typing_extensions"] if sys.version_info < (3, 11) else [])
    for name in needed:
        _link_top_level(name, deps)
    Path(site_dir, "pounce-checkout.pth").write_text(f"{REPO}\n{deps}\n")
    return python


def run_child(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return subprocess.run(
        [python, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd, env=env, timeout=30
    )


def test_stdlib_alone_cannot_resolve_uvicorns_formatters(bare_python: Path, tmp_path: Path) -> None:
    # What `--log-config` did before: logging.config on its own fails on Uvicorn's names here.
    write_configs(tmp_path)
    proc = run_child(
        bare_python,
        """
        import json
        try:
            logging.config.dictConfig(json.load(open("log.json")))
        except ValueError as exc:
            print(exc, "|", exc.__cause__)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Cannot resolve 'uvicorn.logging.DefaultFormatter'" in proc.stdout


def write_configs(directory: Path) -> None:
    (directory / "log.json").write_text(json.dumps(UVICORN_LOGGING_CONFIG))
    (directory / "log.yaml").write_text(yaml.safe_dump(UVICORN_LOGGING_CONFIG))
    (directory / "log.ini").write_text(UVICORN_INI)


@pytest.mark.parametrize(
    "apply",
    [
        f"pounce.logging.dict_config({UVICORN_LOGGING_CONFIG!r})",
        "import json; pounce.logging.dict_config(json.load(open('log.json')))",
        "import yaml; pounce.logging.dict_config(yaml.safe_load(open('log.yaml')))",
        "pounce.logging.file_config('log.ini', disable_existing_loggers=False)",
    ],
    ids=["dict", "json", "yaml", "ini"],
)
def test_uvicorn_config_resolves_to_pounce(bare_python: Path, tmp_path: Path, apply: str) -> None:
    write_configs(tmp_path)
    proc = run_child(bare_python, f"import pounce.logging\n{apply}\ncheck()\nlog_access()\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ACCESS_LINE + "\n"
    assert proc.stderr == "INFO:     hello\n"


def test_the_callers_dict_is_left_as_it_was(bare_python: Path, tmp_path: Path) -> None:
    code = f"""
        import copy, pounce.logging
        config = {UVICORN_LOGGING_CONFIG!r}
        before = copy.deepcopy(config)
        pounce.logging.dict_config(config)
        assert config == before
        """
    proc = run_child(bare_python, code, tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".ini"])
def test_pounce_cli_serves_with_a_uvicorn_log_config(bare_python: Path, tmp_path: Path, suffix: str) -> None:
    write_configs(tmp_path)
    config = tmp_path / f"log{suffix}"
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = subprocess.Popen(
        [bare_python, "-m", "pounce", "pounce.demo:app", "--fd", str(sock.fileno()), "--log-config", str(config)],
        pass_fds=[sock.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    sock.close()
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                    client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert client.recv(100).startswith(b"HTTP/1.1 200")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert '"GET /health HTTP/1.1" 200 OK' in out, (out, err)
    assert out.startswith("INFO:     127.0.0.1:")
    assert "INFO:     Started server process" in err
