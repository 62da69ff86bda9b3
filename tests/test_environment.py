"""pyproject.toml and environment.yml must pin the same versions (conda and pip users get one env)."""

import re
import tomllib

from falign import paths


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def _environment_pins() -> dict[str, str]:
    text = (paths.ROOT / "environment.yml").read_text()
    return dict(re.findall(r"^\s*-\s+([A-Za-z0-9_.\-]+)==(\S+)\s*$", text, flags=re.M))


def test_every_dependency_is_pinned_exactly():
    deps = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps and all("==" in d for d in deps), deps


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_environment_yml_pins_python_311():
    assert re.search(r"^\s*-\s+python=3\.11\s*$", (paths.ROOT / "environment.yml").read_text(), re.M)
