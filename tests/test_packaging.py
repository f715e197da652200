"""The built-in protocols travel with the installed package, not only the source tree."""

from __future__ import annotations

from pathlib import Path

import labctl
from labctl.runs.protocol import builtin_protocol_dir, load_protocol


def test_builtin_protocol_is_found_and_valid():
    loaded = load_protocol()
    assert loaded.protocol.name == "calibrate"
    assert Path(loaded.source).parent == builtin_protocol_dir()
    assert len(loaded.sha256) == 64


def test_installed_package_carries_its_protocols():
    package = Path(labctl.__file__).resolve().parent
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        assert builtin_protocol_dir() == package / "_protocols"
    assert (builtin_protocol_dir() / "calibrate.toml").is_file()


def test_nothing_with_a_generic_name_is_installed():
    """`sims`, `drivers` and `calibration` would clash with other packages in a lab's environment."""
    from importlib.metadata import distribution

    files = distribution("labctl").files or []
    top = {str(f).split("/")[0] for f in files if not str(f).startswith("..")}
    assert not top & {"sims", "drivers", "calibration"}, top
    modules = {name.removesuffix(".py").removesuffix(".pth") for name in top
               if not name.endswith(".dist-info") and name != "__pycache__"}
    # a wheel: the four packages; an editable install: the import hook and hatch's path file
    assert modules <= {"labctl", "labctl_drivers", "labctl_calibration", "labctl_sims", "_labctl_renamed",
                       "_editable_impl_labctl"}, top


def test_the_renamed_packages_import_under_their_installed_names():
    import labctl_calibration.drift
    import labctl_drivers
    import labctl_sims

    assert labctl_drivers.Board.__module__ == "labctl_drivers.board"
    assert labctl_sims.ChipModel.__module__.startswith("labctl_sims.")
    assert labctl_calibration.drift.DriftParams.__module__ == "labctl_calibration.drift"


def test_tests_and_benches_import_the_installed_names():
    """CI installs a wheel, where `sims`, `drivers` and `calibration` do not exist: an import of
    them passes from the source tree and fails only there."""
    import ast

    root = Path(__file__).resolve().parents[1]
    generic = {"sims", "drivers", "calibration"}
    found = []
    for path in [*root.joinpath("tests").rglob("*.py"), *root.joinpath("bench").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            found += [f"{path.relative_to(root)}:{node.lineno} {name}"
                      for name in names if name.split(".")[0] in generic]
    assert not found, found
