"""``make lab``: JupyterLab starts the way the Makefile starts it (as root too) and serves each jupytext
``.py`` under notebooks/ as a notebook paired with an ``.ipynb``, opened with the Jupytext viewer.

One server for the module, on a free port with a token and a throw-away Jupyter config and runtime
folder; it is shut down, and killed if it does not stop, whatever the tests did.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from falign.tools import lab
from falign.base import paths

START_TIMEOUT_S = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, token: str, log) -> None:
        self.proc, self.url, self.token, self.log = proc, url, token, log

    def request(self, path: str, method: str = "GET", timeout: float = 10) -> dict:
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]


def _stop(proc: subprocess.Popen, server: Server) -> None:
    if proc.poll() is None:
        try:
            server.request("/api/shutdown", method="POST", timeout=3)
            proc.wait(timeout=10)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):  # its own process group: the server and anything it spawned
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    ipynb_before = set(paths.NOTEBOOKS_DIR.rglob("*.ipynb"))
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTER_DATA_DIR": str(tmp / "data"), "JUPYTER_PLATFORM_DIRS": "1"}
    lab.ensure_default_viewer()  # what `python -m falign.tools.lab` does before it starts JupyterLab
    cmd = lab.command(extra=["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}"])
    log = open(tmp / "lab.log", "w+", encoding="utf-8")
    proc = subprocess.Popen(cmd, cwd=paths.ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(proc, f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{srv.output()}")
            try:
                srv.request("/api/status", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{srv.output()}")
                time.sleep(0.2)
        yield srv
    finally:
        _stop(proc, srv)
        log.close()
        created = set(paths.NOTEBOOKS_DIR.rglob("*.ipynb")) - ipynb_before
        for path in created:
            path.unlink(missing_ok=True)
        assert not created, f"opening notebooks wrote {sorted(map(str, created))}"


def test_lab_command_adds_allow_root_exactly_as_root(monkeypatch):
    monkeypatch.setattr(lab, "running_as_root", lambda: True)
    assert "--allow-root" in lab.command()
    monkeypatch.setattr(lab, "running_as_root", lambda: False)
    cmd = lab.command(extra=["--no-browser"])
    assert "--allow-root" not in cmd and cmd[-1] == "--no-browser"
    assert f"--notebook-dir={paths.NOTEBOOKS_DIR}" in cmd


def test_make_lab_runs_falign_lab():
    """One source of truth: the Makefile's lab recipe is `python -m falign.tools.lab`, no flags of its own."""
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (paths.ROOT / "Makefile").read_text(), re.M)
    assert recipe and recipe.group(1).strip() == "$(PY) -m falign.tools.lab", recipe and recipe.group(1)


def test_notebooks_pair_py_percent_with_ipynb():
    text = (paths.NOTEBOOKS_DIR / "jupytext.toml").read_text()
    assert re.search(r'^formats\s*=\s*"ipynb,py:percent"\s*$', text, re.M), text


def test_every_notebook_is_paired_with_an_ipynb():
    """What jupytext's contents manager pairs on save: a notebook's own header wins over jupytext.toml."""
    import jupytext
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file, notebook_formats

    unpaired = {}
    for py in sorted(paths.NOTEBOOKS_DIR.glob("*/[0-9][0-9]_*.py")):
        config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(py.parent)))
        formats = notebook_formats(jupytext.read(py), config, str(py))
        if {"percent"} != {f.get("format_name") for f in formats if f["extension"] == ".py"} or \
                ".ipynb" not in {f["extension"] for f in formats}:
            unpaired[str(py.relative_to(paths.ROOT))] = jupytext.read(py).metadata.get("jupytext", {}).get("formats")
    assert not unpaired, f"not paired with .ipynb (header `formats:`, want ipynb,py:percent or none): {unpaired}"


def test_ensure_default_viewer_keeps_other_settings(tmp_path):
    path = tmp_path / "settings" / "overrides.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"x": 1, lab.DOCMANAGER: {"defaultViewers": {"markdown": "Editor"}}}))
    lab.ensure_default_viewer(path)
    assert json.loads(path.read_text()) == {
        "x": 1, lab.DOCMANAGER: {"defaultViewers": {"markdown": "Editor", "python": "Jupytext Notebook"}}}


def test_lab_serves_a_py_notebook_as_a_paired_notebook(server):
    py = sorted(paths.NOTEBOOKS_DIR.glob("*/[0-9][0-9]_*.py"))[0]
    rel = urllib.parse.quote(py.relative_to(paths.NOTEBOOKS_DIR).as_posix())
    model = server.request(f"/api/contents/{rel}?content=1")
    assert model["type"] == "notebook", f"{rel} served as {model['type']!r}: jupytext's contents manager is off"
    cells = model["content"]["cells"]
    assert cells and any(c["cell_type"] == "code" for c in cells)
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


def test_lab_opens_py_files_with_the_jupytext_viewer(server):
    settings = server.request(f"/lab/api/settings/{lab.DOCMANAGER}")
    default = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default.get("python") == "Jupytext Notebook", default
