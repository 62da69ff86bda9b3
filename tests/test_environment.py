"""The pins: pyproject.toml and environment.yml agree, `make` installs every extra, the runtime
dependencies cover what the library imports (conda and pip users get one env)."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from falign.base import paths


def _project() -> dict:
    return tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]


def _groups() -> dict[str, list[str]]:
    """The runtime dependencies (key ``""``) and each extra, as pyproject lists them."""
    return {"": _project()["dependencies"], **_project().get("optional-dependencies", {})}


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_pins() -> dict[str, str]:
    return {_name(d): d.split("==")[1] for deps in _groups().values() for d in deps}


def _environment_pins() -> dict[str, str]:
    text = (paths.ROOT / "environment.yml").read_text()
    return {_name(n): v for n, v in re.findall(r"^\s*-\s+([A-Za-z0-9_.\-]+)==(\S+)\s*$", text, flags=re.M)}


def test_every_dependency_is_pinned_exactly():
    groups = _groups()
    assert groups[""], "no runtime dependencies"
    for group, deps in groups.items():
        assert deps and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", d) for d in deps), (group, deps)


def test_no_package_is_listed_twice():
    names = [_name(d) for deps in _groups().values() for d in deps]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_environment_yml_matches_pyproject():
    """environment.yml is the whole development env: the runtime pins and every extra's."""
    assert _environment_pins() == _pyproject_pins()


def test_environment_yml_pins_python_311():
    assert re.search(r"^\s*-\s+python=3\.11\s*$", (paths.ROOT / "environment.yml").read_text(), re.M)


def test_makefile_installs_every_extra():
    makefile = (paths.ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install[^\n]*-e \"?\.\[([A-Za-z0-9_,\-]+)\]", makefile)
    assert installs, "the Makefile does not pip install -e \".[extras]\""
    assert {e for line in installs for e in line.split(",")} == set(_project().get("optional-dependencies", {}))


class _ImportsAtImportTime(ast.NodeVisitor):
    """Top-level module names imported while a module loads (not inside functions, not TYPE_CHECKING)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_FunctionDef(self, node):  # lazy imports run only when called: extras may provide them
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node):
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node):
        self.names.update(alias.name.split(".")[0] for alias in node.names)

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module:
            self.names.add(node.module.split(".")[0])


def test_runtime_dependencies_cover_what_the_library_imports():
    """A package imported when a falign module loads must be a runtime dependency, not an extra."""
    runtime = {_name(d) for d in _groups()[""]}
    distributions = packages_distributions()
    missing = {}
    for module in sorted((paths.ROOT / "falign").rglob("*.py")):
        visitor = _ImportsAtImportTime()
        visitor.visit(ast.parse(module.read_text(), str(module)))
        for name in visitor.names - set(sys.stdlib_module_names) - {"falign", "__future__"}:
            dists = {_name(d) for d in distributions.get(name, [name])}
            if not dists & runtime:
                missing.setdefault(name, []).append(str(module.relative_to(paths.ROOT)))
    assert not missing, f"imported at module level but not in pyproject's runtime dependencies: {missing}"
