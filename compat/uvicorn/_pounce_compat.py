"""The machinery behind the ``uvicorn`` import name: a guard and a meta path finder.

Every ``uvicorn.X`` module is made to *be* the Pounce module ``pounce.X`` (the very same module object sits
in ``sys.modules`` under both names), so a test or an application that monkeypatches
``uvicorn.config.LOGGING_CONFIG`` or ``uvicorn.main.run`` patches the code that actually runs.  Nothing here
re-implements behaviour: what the shim is tested with is what ships.

A short table covers the Uvicorn modules and classes that Pounce names differently (Pounce has one
pure-Python HTTP/1.1 engine where Uvicorn has httptools and zttp, and one WebSocket engine where Uvicorn has
three).  Uvicorn's names are added to the Pounce module as plain aliases of the Pounce objects, so identity
holds: ``uvicorn.workers.UvicornWorker is pounce.workers.PounceWorker``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import platform
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import click

UVICORN = "uvicorn"
POUNCE = "pounce"

# Modules that are real files of this compat package; the finder leaves them to the normal path finder.
_OWN_MODULES = frozenset({"uvicorn.__main__", "uvicorn._pounce_compat"})


@dataclass(frozen=True)
class Mapping_:
    """Where one Uvicorn module lives in Pounce.

    ``target`` is the Pounce module the Uvicorn name aliases; ``None`` makes an empty package (Uvicorn has a
    package where Pounce has a single module, e.g. ``uvicorn.loops``).  ``names`` maps Uvicorn attribute
    names to the Pounce attribute that stands in for them.
    """

    target: str | None
    names: Mapping[str, str] = field(default_factory=dict)
    # Used only while the Pounce module has neither spelling (a stop-gap, listed in compat/README.md).
    fallbacks: Mapping[str, object] = field(default_factory=dict)


RENAMED: dict[str, Mapping_] = {
    # Pounce's own pure-Python parser is the counterpart of both of Uvicorn's optional HTTP/1.1 engines.
    "uvicorn.protocols.http.httptools_impl": Mapping_(
        "pounce.protocols.http.fast_impl", {"HttpToolsProtocol": "FastHTTPProtocol"}
    ),
    "uvicorn.protocols.http.zttp_impl": Mapping_(
        "pounce.protocols.http.fast_impl", {"ZttpProtocol": "FastHTTPProtocol"}
    ),
    # One WebSocket engine (wsproto) stands in for websockets' legacy and sans-I/O implementations.
    "uvicorn.protocols.websockets.websockets_impl": Mapping_(
        "pounce.protocols.websockets.wsproto_impl", {"WebSocketProtocol": "WSProtocol"}
    ),
    "uvicorn.protocols.websockets.websockets_sansio_impl": Mapping_(
        "pounce.protocols.websockets.wsproto_impl", {"WebSocketsSansIOProtocol": "WSProtocol"}
    ),
    # Uvicorn splits loop factories into a package; Pounce keeps them in one module (asyncio only).
    "uvicorn.loops": Mapping_(None),
    # Pounce has no uvloop; like `--loop uvloop` on Pounce's CLI, the uvloop factory gives the asyncio loop.
    "uvicorn.loops.auto": Mapping_("pounce.loops"),
    "uvicorn.loops.asyncio": Mapping_("pounce.loops"),
    "uvicorn.loops.uvloop": Mapping_("pounce.loops", {"uvloop_loop_factory": "asyncio_loop_factory"}),
    # Uvicorn's spawn helpers live with Pounce's supervisors.
    "uvicorn._subprocess": Mapping_("pounce.supervisors.spawn"),
    "uvicorn.config": Mapping_("pounce.config", {"UvicornDeprecationWarning": "PounceDeprecationWarning"}),
    "uvicorn.workers": Mapping_(
        "pounce.workers", {"UvicornWorker": "PounceWorker", "UvicornH11Worker": "PounceH11Worker"}
    ),
}


class RealUvicornInstalledError(ImportError):
    """Raised when the real Uvicorn distribution is installed next to this shim."""


def check_no_real_uvicorn() -> None:
    """Refuse to run next to a real Uvicorn: one of the two would silently shadow the other.

    pip cannot express "conflicts with" (it ignores ``Obsoletes-Dist``/``Provides-Dist``), and both
    distributions write the ``uvicorn/`` directory, so the check has to happen at import time.
    """
    try:
        dist = importlib.metadata.distribution(UVICORN)
    except importlib.metadata.PackageNotFoundError:
        return
    location = getattr(dist, "_path", "?")
    raise RealUvicornInstalledError(
        f"pounce-uvicorn-compat provides the `uvicorn` import name, but the real Uvicorn {dist.version} is "
        f"also installed ({location}). One would shadow the other. Uninstall one of them: "
        "`pip uninstall uvicorn` to run on Pounce, or `pip uninstall pounce-uvicorn-compat` to keep Uvicorn."
    )


def _pounce_name(uvicorn_name: str) -> str:
    return POUNCE + uvicorn_name[len(UVICORN) :]


def add_uvicorn_aliases(
    module: types.ModuleType, names: Mapping[str, str], fallbacks: Mapping[str, object] | None = None
) -> None:
    """Give a Pounce module the Uvicorn spellings of its names, as aliases of the same objects.

    Besides the explicit table, every ``PounceX`` gets a ``UvicornX`` (``PounceDeprecationWarning`` ->
    ``UvicornDeprecationWarning``).  Existing attributes are never overwritten.
    """
    namespace = vars(module)
    for uvicorn_attr, pounce_attr in names.items():
        if uvicorn_attr not in namespace and pounce_attr in namespace:
            setattr(module, uvicorn_attr, namespace[pounce_attr])
    for attr in [a for a in namespace if a.startswith("Pounce")]:
        alias = "Uvicorn" + attr[len("Pounce") :]
        if alias not in namespace:
            setattr(module, alias, namespace[attr])
    for uvicorn_attr, value in (fallbacks or {}).items():
        if uvicorn_attr not in namespace:
            setattr(module, uvicorn_attr, value)


class _AliasLoader(importlib.abc.Loader):
    """Loads ``uvicorn.X`` by importing its Pounce module and putting that object in ``sys.modules``.

    The import system re-reads ``sys.modules`` after ``exec_module`` (a documented contract), so the
    placeholder module it created is dropped and the Pounce module keeps its own ``__name__``/``__spec__``.
    """

    def __init__(self, mapping: Mapping_) -> None:
        self.mapping = mapping

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if self.mapping.target is None:
            return  # an empty package: its children are resolved by the finder
        real = importlib.import_module(self.mapping.target)
        add_uvicorn_aliases(real, self.mapping.names, self.mapping.fallbacks)
        sys.modules[module.__name__] = real


class UvicornAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``uvicorn.X`` to ``pounce.X`` (or to the renamed module in ``RENAMED``)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(UVICORN + ".") or fullname in _OWN_MODULES:
            return None
        mapping = RENAMED.get(fullname)
        if mapping is None:
            pounce_name = _pounce_name(fullname)
            try:
                found = importlib.util.find_spec(pounce_name)
            except (ImportError, ValueError):
                found = None
            if found is None:
                return None  # the import fails with the usual ModuleNotFoundError for the uvicorn name
            mapping = Mapping_(pounce_name)
            is_package = found.submodule_search_locations is not None
        else:
            is_package = mapping.target is None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(mapping), is_package=is_package)


_FINDER = UvicornAliasFinder()


def version_line(uvicorn_version: str) -> str:
    """``uvicorn --version``: Uvicorn's own line, naming ``uvicorn.__version__``, then that it is Pounce.

    Tools parse Uvicorn's ``Running uvicorn %s with %s %s on %s``, so those words come first, unchanged; what
    really runs follows in parentheses.  ``pounce --version`` keeps Pounce's own line.
    """
    from pounce import __version__ as pounce_version
    from pounce.main import gil_state

    return (
        f"Running uvicorn {uvicorn_version} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()} (Pounce {pounce_version}, {gil_state()})"
    )


def _print_uvicorn_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # Read at call time: the version `uvicorn.__version__` reports, even if something changed it.
    click.echo(version_line(importlib.import_module(UVICORN).__version__))
    ctx.exit()


def install_version_line(command: click.Command) -> None:
    """Make the CLI's ``--version`` print :func:`version_line`.

    ``uvicorn.main.main`` *is* Pounce's click command (one object, so patches reach what runs), so its
    ``--version`` callback is swapped in place; that happens only once ``uvicorn`` is imported, which a plain
    ``pounce`` command never does.
    """
    for param in command.params:
        if param.name == "version":
            param.callback = _print_uvicorn_version


def install_finder() -> None:
    """Put the finder first on ``sys.meta_path`` (once), ahead of the path finder.

    It must come first: otherwise the path finder would load Pounce's files a second time under their
    ``uvicorn.`` names, giving two copies of every module and class.
    """
    if not any(isinstance(finder, UvicornAliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)
