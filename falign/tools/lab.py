"""``make lab``: JupyterLab on ``notebooks/``, where each jupytext ``.py`` opens as a notebook.

The one place that says how JupyterLab is started: the Makefile runs ``python -m falign.tools.lab`` and
``tests/test_lab.py`` starts :func:`command` with the same flags. What it relies on:

* jupytext's Jupyter server extension (``jupyterlab_jupytext``, enabled in the environment when jupytext
  is installed; ``jupyter server extension list`` shows it) serves a ``.py`` as a notebook, and
  ``notebooks/jupytext.toml`` (``formats = "ipynb,py:percent"``) pairs it with an ``.ipynb`` beside it,
  written on the first save and ignored by git. The ``.py`` stays the source of truth.
* A double click opens a ``.py`` with jupytext's "Jupytext Notebook" viewer rather than the text
  editor: :func:`ensure_default_viewer` sets that default in this environment's JupyterLab
  ``settings/overrides.json`` (a setting the user chose there is kept).
* Jupyter refuses to start as root ("Running as root is not recommended. Use --allow-root to
  bypass."); containers and our machines run as root, so ``--allow-root`` is added exactly when the
  effective user id is 0.

Extra arguments go to JupyterLab: ``python -m falign.tools.lab --no-browser --port 8899``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

from falign.base import atomic_files as atomic, paths

DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
DEFAULT_VIEWERS = {"python": "Jupytext Notebook"}


def running_as_root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


def command(notebook_dir: str | os.PathLike = paths.NOTEBOOKS_DIR, extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line of ``make lab`` (this interpreter, so the environment's Jupyter)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={notebook_dir}"]
    if running_as_root():
        cmd.append("--allow-root")
    return cmd + list(extra)


def overrides_file() -> Path:
    """JupyterLab's settings overrides of this environment (``$JUPYTERLAB_DIR`` respected)."""
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "settings" / "overrides.json"


def ensure_default_viewer(path: Path | None = None) -> Path:
    """Make "Jupytext Notebook" the default viewer of ``.py`` files, keeping any other override."""
    path = overrides_file() if path is None else path
    try:
        overrides = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as err:
        print(f"falign.tools.lab: {path} left as it is ({err}); open a .py with Open With > Jupytext Notebook",
              file=sys.stderr)
        return path
    viewers = overrides.setdefault(DOCMANAGER, {}).setdefault("defaultViewers", {})
    if all(viewers.get(k) for k in DEFAULT_VIEWERS):
        return path
    for kind, viewer in DEFAULT_VIEWERS.items():
        viewers.setdefault(kind, viewer)
    try:
        atomic.write_text(path, json.dumps(overrides, indent=2) + "\n")
    except OSError as err:  # a read-only environment: the right-click menu still works
        print(f"falign.tools.lab: cannot write {path} ({err}); open a .py with Open With > Jupytext Notebook",
              file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    cmd = command(extra=sys.argv[1:] if argv is None else argv)
    ensure_default_viewer()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
