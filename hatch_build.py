"""Build hook: the repository's ``drivers/``, ``calibration/`` and ``sims/`` folders are
installed as ``labctl_drivers``, ``labctl_calibration`` and ``labctl_sims``, names no
other project in a lab's environment uses.

A wheel copies the folders under those names (``force-include`` in pyproject.toml). An
editable install cannot rename a folder, so it gets a small import hook instead, which
finds those names in the live folders: an edit shows at once, as editable installs should.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

RENAMED = {"labctl_drivers": "drivers", "labctl_calibration": "calibration", "labctl_sims": "sims"}

FINDER = '''"""labctl's packages renamed at install time, found in the source checkout (editable install)."""
import importlib.abc
import importlib.util
import os
import sys

ROOT = {root!r}
RENAMED = {renamed!r}


class RenamedPackageFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        folder = RENAMED.get(name)
        if folder is None:
            return None  # submodules are found through the package's __path__
        location = os.path.join(ROOT, folder)
        return importlib.util.spec_from_file_location(
            name, os.path.join(location, "__init__.py"), submodule_search_locations=[location])


if not any(type(f).__name__ == "RenamedPackageFinder" for f in sys.meta_path):
    sys.meta_path.append(RenamedPackageFinder())
'''


class RenamedPackagesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version != "editable":
            return
        directory = tempfile.mkdtemp(prefix="labctl-editable-")
        module = os.path.join(directory, "_labctl_renamed.py")
        with open(module, "w", encoding="utf-8") as handle:
            handle.write(FINDER.format(root=self.root, renamed=RENAMED))
        hook = os.path.join(directory, "_labctl_renamed.pth")
        with open(hook, "w", encoding="utf-8") as handle:
            handle.write("import _labctl_renamed\n")
        build_data["force_include_editable"] = {module: "_labctl_renamed.py", hook: "_labctl_renamed.pth"}
