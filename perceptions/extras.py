"""Optional extras: what not every user needs (`pip install "perceptions[geo]"`), imported only where used.

The extras are declared in pyproject.toml ([project.optional-dependencies]). Code that needs one calls
`require("h3", "geo")` where it would import the module: it returns the module, or raises a PerceptionsError
whose one line names the extra and the pip command that installs it.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from perceptions.errors import PerceptionsError


def require(module: str, extra: str) -> ModuleType:
    """Import `module` (e.g. "geopandas") and return it; when it is not installed, a PerceptionsError naming the
    extra that provides it and the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing is None or module == missing or module.startswith(f"{missing}."):
            why = f"{module} is not installed"
        else:  # installed, but something it needs is not: installing the extra again brings it
            why = f"{module} could not be imported: {str(exc).splitlines()[0] if str(exc) else missing}"
        raise PerceptionsError(f"this needs the optional '{extra}' extra ({why}): "
                               f'pip install "perceptions[{extra}]"') from None
