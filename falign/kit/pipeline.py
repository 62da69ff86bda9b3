"""The notebook pipeline behind ``make reproduce``, ``make test`` and ``make book``.

A chapter is a folder ``notebooks/<chapter>/`` of jupytext percent-format notebooks ``NN_name.py``,
each with a cell tagged ``parameters``. ``reproduce`` executes a chapter's notebooks in order with
papermill into a staging folder; only when every notebook succeeded are the staged tables, figures,
``run.json`` and executed notebooks promoted to ``results/<chapter>/`` and ``book/<chapter>/``. A
failing notebook therefore leaves the previous results exactly as they were, and its partly executed
copy stays in the staging folder for inspection.

Run ``python -m falign.kit.pipeline --help`` for the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from falign.base import atomic_files as atomic, paths
from falign.kit import progress, registry
from falign.kit.report import DEVICES, SCALES

KERNEL = "falign"


@dataclass(frozen=True)
class Params:
    scale: str = "smoke"
    data: str = "synthetic"
    data_root: str = ""
    device: str = "cpu"
    seed: int = 0

    def as_notebook_parameters(self) -> dict:
        return {"SCALE": self.scale, "DATA": self.data, "DATA_ROOT": self.data_root,
                "DEVICE": self.device, "SEED": self.seed}


def chapters(notebooks_dir: Path | None = None) -> list[str]:
    """Chapters whose notebooks exist: the registered ones in book order (:mod:`falign.kit.registry`),
    then any other folder of notebooks (alphabetically), which runs but has no experiment module. With
    ``notebooks_dir``, chapters are looked up there by name instead of in each chapter's own folder."""
    registered = [c.name for c in registry.chapters()
                  if notebooks(notebooks_dir / c.name if notebooks_dir is not None else c.notebooks_dir)]
    root = notebooks_dir if notebooks_dir is not None else paths.NOTEBOOKS_DIR
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and notebooks(p) and p.name not in registered) \
        if root.is_dir() else []
    return registered + others


def chapter_dir(chapter: str, notebooks_dir: Path | None = None) -> Path:
    """The folder of a chapter's notebooks."""
    if notebooks_dir is not None:
        return notebooks_dir / chapter
    known = {c.name: c for c in registry.chapters()}
    return known[chapter].notebooks_dir if chapter in known else paths.NOTEBOOKS_DIR / chapter


def notebooks(chapter_dir: Path) -> list[Path]:
    return sorted(p for p in chapter_dir.glob("[0-9][0-9]_*.py"))


def resolve(paper: str, notebooks_dir: Path | None = None) -> list[str]:
    """``all`` or one chapter name -> the chapters to run; an unknown name is a one-line error."""
    existing = chapters(notebooks_dir)
    if paper == "all":
        return existing
    if paper not in existing:
        raise SystemExit(f"unknown PAPER={paper!r}; valid: {' '.join(existing)} all")
    return [paper]


def supported_data(chapter: str) -> tuple[str, ...]:
    """The DATA values a chapter honours (:attr:`falign.kit.registry.Chapter.datasets`; an unregistered
    folder of notebooks: SynthFace only)."""
    known = {c.name: c for c in registry.chapters()}
    return known[chapter].datasets if chapter in known else ("synthetic",)


def chapters_for(paper: str, data: str, notebooks_dir: Path | None = None) -> list[str]:
    """The chapters ``PAPER`` names that can run on ``DATA``, checked before anything runs: a chapter
    named on its own that cannot use the data is a one-line error listing what it supports;
    ``all`` runs the chapters that can and says which it leaves out."""
    names = resolve(paper, notebooks_dir)
    usable = [c for c in names if data in supported_data(c)]
    if paper != "all" and not usable:
        raise SystemExit(f"PAPER={paper} does not use DATA={data}; it supports: {' '.join(supported_data(paper))}")
    for chapter in sorted(set(names) - set(usable), key=names.index):
        print(f"[{chapter}] skipped: it does not use DATA={data} (supports {' '.join(supported_data(chapter))})")
    if not usable:
        raise SystemExit(f"no chapter uses DATA={data}")
    return usable


def check_device(params: Params) -> None:
    """Refuse, in one line and before anything runs, a device this run cannot use: ``SCALE=gpu`` is
    sized for one GPU (minutes there, days on a CPU), and ``DEVICE=cuda`` needs a CUDA device."""
    if params.scale == "gpu" and params.device != "cuda":
        raise SystemExit(f"SCALE=gpu is sized for one GPU; run it with DEVICE=cuda (not DEVICE={params.device})")
    if params.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("DEVICE=cuda was asked for but torch sees no CUDA device here; "
                             "use DEVICE=cpu with SCALE=smoke or small")


def kept_scale(results: Path) -> str | None:
    """The scale of the run a results folder holds (its ``run.json``), or None without one."""
    try:
        scale = json.loads((results / "run.json").read_text()).get("scale")
    except (OSError, ValueError):
        return None
    return scale if scale in SCALES else None


def budget_checked(results: Path) -> bool:
    """Whether a run's claims pass the budget check: its claims ledger judged every claim at half the
    budget too and none changed class. A chapter without a claims ledger has nothing to check (True)."""
    import pandas as pd

    from falign.kit import ledger

    path = results / "claims.csv"
    if not path.is_file():
        return True
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    if not ledger.is_ledger(df):
        return False
    return bool((df["class at half budget"] != "not run").all() and (df["budget-sensitive"].astype(str) != "True").all())


def shows_new_run(kept: str | None, kept_passes: bool, scale: str, passes: bool) -> bool:
    """The rule, declared before any result is seen, that picks the run ``results/<chapter>`` shows: a
    run whose claims pass the budget check (:func:`budget_checked`) over one whose do not; between
    two that both pass, or both fail, the larger scale (a tie: the newer run). Never a less converged
    run because its scale is larger, and never a run picked for its verdicts. A ``smoke`` run (numbers
    that mean nothing, whatever its budget check says) replaces only another smoke run."""
    if kept is None:
        return True
    if "smoke" in (scale, kept) and scale != kept:
        return kept == "smoke"
    if passes != kept_passes:
        return passes
    return SCALES.index(scale) >= SCALES.index(kept)


def destination(chapter: str, scale: str, results_dir: Path, book_dir: Path, side_root: Path,
                staged: Path | None = None) -> tuple[Path, Path]:
    """Where a finished run (its tables staged in ``staged``) goes: ``results/<chapter>`` and
    ``book/<chapter>`` when :func:`shows_new_run` picks it over the run they hold, else
    ``<side_root>/<scale>/``, and the run says so."""
    kept = kept_scale(results_dir / chapter)
    passes = budget_checked(staged) if staged is not None else True
    if shows_new_run(kept, budget_checked(results_dir / chapter), scale, passes):
        return results_dir / chapter, book_dir / chapter
    side = side_root / scale
    print(f"[{chapter}] results/{chapter} holds the run the book shows (SCALE={kept}; the rule: the largest scale "
          f"whose claims pass the budget check), which stays; this SCALE={scale} run goes to "
          f"{side}/results/{chapter} and {side}/book/{chapter}")
    return side / "results" / chapter, side / "book" / chapter


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:
        raise argparse.ArgumentTypeError(f"SEED={text} must be an integer from 0 to {2**32 - 1}")
    return seed


def _to_ipynb(py: Path, dest: Path) -> Path:
    import jupytext

    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "falign", "language": "python"}
    dest.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def execute(py: Path, out: Path, params: Params, env: dict[str, str], prepare_only: bool = False) -> None:
    """Execute one notebook with papermill (or only inject its parameters) into ``out``."""
    import papermill

    src = _to_ipynb(py, out.with_name(f".{out.stem}.src.ipynb"))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        papermill.execute_notebook(
            str(src), str(out), parameters=params.as_notebook_parameters(),
            kernel_name=_kernel_name(), cwd=str(py.parent), prepare_only=prepare_only,
            progress_bar=sys.stderr.isatty(), log_output=False,
            # The kernel's own log would reach the terminal: a TCP warning at every start and a
            # traceback when Ctrl-C stops it mid-cell. The notebook's errors come back through papermill.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    finally:
        src.unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Progress bars (a notebook run by hand) and the trainings' live lines (falign.kit.progress, printed by the
# pipeline) are for the person watching a run, not for the book: the chapters show the loss curve instead.
_PROGRESS = re.compile(r"\d+%\|.*\||\d+/\d+ \[|IProgress not found|import tqdm as notebook_tqdm|epoch \d+/\d+: loss ")
# A warning's location is a path on the machine that ran it (the kernel's temporary cell file, the checkout):
# the book keeps "Warning: message" and drops the path.
_WARNING_AT = re.compile(r"^\S*\.py:\d+: (?=\w*Warning: )")
# A cell's value that is a path into the staging folder (e.g. what aligner.save returns) is not a result.
_STAGED_PATH = re.compile(r"^PosixPath\('[^']*/build/stage/[^']*'\)$")


def strip_progress(notebook: Path) -> list[str]:
    """Drop progress-bar lines from the stderr of an executed notebook, keeping any other message (a
    warning without the path of the machine that ran it); returns the warnings kept, so that the terminal
    shows them too (not only the book). Paths into the staging folder, as a cell's value or papermill's
    metadata, go. The book shows the parameters once: the defaults cell is hidden (Jupyter Book's
    ``remove-cell``) where papermill injected the run's own."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for key in ("input_path", "output_path"):          # the staging folder's paths: not for the book
        nb.metadata.get("papermill", {}).pop(key, None)
    tagged = [set(c.get("metadata", {}).get("tags", [])) for c in nb.cells]
    if any("injected-parameters" in t for t in tagged):
        for cell, tags in zip(nb.cells, tagged):
            if "parameters" in tags and "remove-cell" not in tags:
                cell.metadata["tags"] = [*cell.metadata.get("tags", []), "remove-cell"]
    warned = []
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "execute_result" and \
                    _STAGED_PATH.match(str(output.get("data", {}).get("text/plain", ""))):
                continue
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [_WARNING_AT.sub("", line.rsplit("\r", 1)[-1]) for line in output["text"].split("\n")]
                output["text"] = "\n".join(line for line in lines if line.strip() and not _PROGRESS.search(line))
                warned += [line.strip() for line in output["text"].split("\n") if "Warning" in line]
                if not output["text"]:
                    continue
            kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept
    nbformat.write(nb, notebook)
    return warned


def _promote(pairs: list[tuple[Path, Path]]) -> None:
    """Replace every ``dst`` by its staged ``src`` (results and book together), or none of them: on
    any failure the folders already swapped go back, so results/ and book/ never show two runs."""
    swapped: list[tuple[Path, Path, Path | None]] = []
    try:
        for src, dst in pairs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            had = dst.exists()
            if had:
                dst.rename(old)
            swapped.append((src, dst, old if had else None))
            src.rename(dst)
    except OSError:
        for src, dst, old in reversed(swapped):
            if dst.exists() and not src.exists():
                dst.rename(src)                  # the new run back to its stage
            if old is not None:
                old.rename(dst)
        raise
    for _, _, old in swapped:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(text: str) -> str:
    """Error text for the terminal: no colour codes, first line only."""
    lines = [line for line in _ANSI.sub("", str(text)).splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _clean_stages(stage_root: Path, chapter: str) -> None:
    """Failed runs leave their stage for inspection; keep only the latest failure of a chapter."""
    stages = sorted(stage_root.glob(f"{chapter}-*"), key=lambda p: p.stat().st_mtime)
    for old in stages[:-1]:
        shutil.rmtree(old, ignore_errors=True)


def reproduce_chapter(
    chapter: str, params: Params, *, notebooks_dir: Path | None = None,
    results_dir: Path = paths.RESULTS_DIR, book_dir: Path = paths.BOOK_DIR,
    stage_root: Path = paths.ROOT / "build" / "stage",
) -> bool:
    """Run one chapter; promote its outputs only if every notebook succeeded. Returns success."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    stage_root = stage_root.resolve()
    stage_root.mkdir(parents=True, exist_ok=True)
    _clean_stages(stage_root, chapter)
    stage = Path(tempfile.mkdtemp(prefix=f"{chapter}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=stage_root))
    staged_results, staged_book = stage / "results", stage / "book" / chapter
    live = stage / "progress.jsonl"           # the trainings' progress lines, printed here as they come
    env = {"FALIGN_RESULTS": str(staged_results), progress.ENV: str(live)}
    for py in notebooks(chapter_dir(chapter, notebooks_dir)):
        out = staged_book / f"{py.stem}.ipynb"
        print(f"[{chapter}] {py.stem} (SCALE={params.scale}, DATA={params.data}, DEVICE={params.device}, "
              f"SEED={params.seed})", flush=True)
        t0 = time.time()
        try:
            with progress.Tail(live, f"[{chapter}] {py.stem}"):
                execute(py, out, params, env)
            for warning in strip_progress(out):
                print(f"[{chapter}] {py.stem}: {_one_line(warning)}", file=sys.stderr)
        except PapermillExecutionError as err:
            print(f"[{chapter}] {py.name} failed in cell {err.exec_count}: {err.ename}: {_one_line(err.evalue)} "
                  f"(results/{chapter} and book/{chapter} untouched; full traceback in {out})", file=sys.stderr)
            return False
        except DeadKernelError:
            print(f"[{chapter}] {py.name}: the notebook's kernel died (killed, or out of memory); results/{chapter} "
                  f"and book/{chapter} untouched; run the same command again to resume (finished trainings are "
                  "kept in build/work)", file=sys.stderr)
            return False
        print(f"[{chapter}] {py.stem} done in {time.time() - t0:.0f} s", flush=True)
    # A chapter without tables (none written) still gets an empty results folder with no run.json.
    (staged_results / chapter).mkdir(parents=True, exist_ok=True)
    results, book = destination(chapter, params.scale, results_dir, book_dir, side_root=stage_root.parent / "runs",
                                staged=staged_results / chapter)
    try:
        _promote([(staged_results / chapter, results), (staged_book, book)])
    except OSError as err:
        print(f"[{chapter}] could not promote the run ({err}); results/{chapter} and book/{chapter} are as "
              f"they were, the new outputs stay in {stage}", file=sys.stderr)
        return False
    shutil.rmtree(stage, ignore_errors=True)
    return True


def write_scorecard(book_dir: Path = paths.BOOK_DIR, results_dir: Path = paths.RESULTS_DIR) -> Path:
    """Write ``scorecard.md`` and its forest plot: every claim of every chapter's claims ledger
    (results/<chapter>/claims.csv) with its effect, interval, the paper's effect, class, seeds, floor
    and scale, linked to the notebook that shows it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from falign.kit import effects, ledger

    card = ledger.scorecard(results_dir)
    lines = ["# Scorecard: the papers' claims", "",
             "Every claim the paper chapters test, gathered from their claims ledgers. Each claim's *effect* is "
             "the relative advantage of the arm the paper says is better, in the paper's direction (a fraction of "
             "the beaten arm's error, so that our SynthFace numbers and the paper's real-data numbers can be set "
             "side by side), with a "
             f"{effects.LEVEL:.1%} t-interval, paired by seed where the arms share seeds. The two planned looks "
             "(the scale's seeds, then a second stage of seeds declared with the scale for claims left undecided) "
             "are each judged at that level, 95 % over both.", "",
             "What each class means:", ""]
    lines += [f"- **{c}**: {effects.MEANING[c]}." for c in effects.CLASSES]
    lines += ["", "A class is followed by *budget-sensitive* when the same arms, evaluated from their weights at half "
              "the training budget, fall in another class, and the table says when a compared arm had not "
              "converged (its validation curve still falling over the last quarter of the budget).", ""]
    if card.empty:
        lines.append("No chapter has a claims ledger in this format yet.")
    else:
        overview = ledger.counts(card)
        lines += [ledger.chance_note(len(card)), "",
                  "| chapter | " + " | ".join(overview.columns) + " |", "|---|" + "---|" * len(overview.columns)]
        lines += [f"| {chapter} | " + " | ".join(str(v) for v in row) + " |" for chapter, row in overview.iterrows()]
        lines += ["", "Each chapter's Discussion names its claims class by class and says where the paper's method lost.",
                  ""]
        fig = ledger.forest(card)
        with atomic.atomic_path(book_dir / "scorecard_forest.png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        lines += ["![Every claim's effect with its interval, the paper's effect marked](scorecard_forest.png)", ""]
        shown = ledger.table(card).drop(columns="source")    # each chapter's own table cites the paper
        shown["chapter"] = [_ledger_link(c, book_dir) for c in card["chapter"]]
        lines += ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
        for row in shown.astype(str).itertuples(index=False):
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    skipped = card.attrs.get("skipped", [])
    if skipped:
        lines += ["", "Not in the ledger's format (an older run, judged by an older rule): "
                  + ", ".join(f"`{Path(p).parent.name}`" for p in skipped) + "."]
    path = book_dir / "scorecard.md"
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def _ledger_link(chapter: str, book_dir: Path) -> str:
    """A short link to the chapter's notebook that shows its claims ledger (the last one that draws it)."""
    pages = [nb for nb in sorted((book_dir / chapter).glob("*.ipynb"))
             if "ledger.table(" in nb.read_text(encoding="utf-8")]
    return f"{{doc}}`{chapter} <{chapter}/{pages[-1].stem}>`" if pages else chapter


def write_toc(book_dir: Path = paths.BOOK_DIR) -> Path:
    """Write ``_toc.yml`` listing the intro, the real-data page and every executed chapter."""
    lines = ["# Generated by `python -m falign.kit.pipeline toc`: lists only chapters that exist.",
             "format: jb-book", "root: intro", "parts:", "  - caption: Using this book", "    chapters:",
             "      - file: real_data", "      - file: adding_a_paper", "      - file: scorecard"]
    registered = [(c.name, c.title) for c in registry.chapters()]
    others = sorted(p.name for p in book_dir.iterdir() if p.is_dir() and p.name not in dict(registered)
                    and any(p.glob("[0-9][0-9]_*.ipynb"))) if book_dir.is_dir() else []
    for chapter, title in registered + [(name, name) for name in others]:
        executed = sorted((book_dir / chapter).glob("[0-9][0-9]_*.ipynb"))
        if executed:
            lines += [f"  - caption: \"{title}\"", "    chapters:"]
            lines += [f"      - file: {chapter}/{nb.stem}" for nb in executed]
    path = book_dir / "_toc.yml"
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def prepare_nbval(out_dir: Path, chapter_names: list[str]) -> None:
    """Execute every notebook at smoke scale into ``out_dir`` as nbval's reference outputs."""
    params, out_dir = Params(), out_dir.resolve()  # kernels run in the notebook's folder
    for chapter in chapter_names:
        env = {"FALIGN_RESULTS": str(out_dir / "_results"), "FALIGN_WORK": str(out_dir / "_work")}
        for py in notebooks(chapter_dir(chapter)):
            print(f"[nbval reference] {chapter}/{py.stem}", flush=True)
            execute(py, out_dir / chapter / f"{py.stem}.ipynb", params, env)


def reproduce(
    paper: str, params: Params, *, notebooks_dir: Path | None = None, results_dir: Path = paths.RESULTS_DIR,
    book_dir: Path = paths.BOOK_DIR, stage_root: Path = paths.ROOT / "build" / "stage",
) -> int:
    """``make reproduce``: run the chapters ``paper`` names on ``params.data`` and promote each; returns
    the exit status (the folders are parameters so that the fault tests run it on tiny trees)."""
    folders = dict(notebooks_dir=notebooks_dir, results_dir=results_dir, book_dir=book_dir, stage_root=stage_root)
    try:
        check_device(params)
        for chapter in chapters_for(paper, params.data, notebooks_dir):
            if not reproduce_chapter(chapter, params, **folders):
                return 1
    except SystemExit as refused:  # DEVICE, or PAPER x DATA, refused before anything ran: its one line
        print(refused.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: results/ and book/ are as they were; run the same command again to resume "
              "(finished trainings are kept in build/work)", file=sys.stderr)
        return 130
    write_scorecard(book_dir, results_dir)
    write_toc(book_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falign.kit.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="execute chapters and promote their results")
    rep.add_argument("--paper", default="all")
    rep.add_argument("--scale", default="small", choices=SCALES)
    rep.add_argument("--data", default="synthetic")
    rep.add_argument("--data-root", default="")
    rep.add_argument("--device", default="cpu", choices=DEVICES)
    rep.add_argument("--seed", type=_seed, default=0)
    sub.add_parser("toc", help="write book/_toc.yml from the executed chapters")
    sub.add_parser("chapters", help="print the chapters that exist")
    nbv = sub.add_parser("nbval-prepare", help="execute every notebook at smoke scale for nbval")
    nbv.add_argument("--out", type=Path, required=True)
    nbv.add_argument("--paper", default="all")
    args = parser.parse_args(argv)

    if args.command == "chapters":
        print(" ".join(chapters()))
    elif args.command == "toc":
        write_scorecard()
        print(write_toc())
    elif args.command == "nbval-prepare":
        if args.out.exists():
            shutil.rmtree(args.out)
        prepare_nbval(args.out, resolve(args.paper))
    else:
        # A relative DATA_ROOT means the folder where make runs, not the kernel's (notebooks/<chapter>/).
        root = str(Path(args.data_root).expanduser().resolve()) if args.data_root else ""
        return reproduce(args.paper, Params(args.scale, args.data, root, args.device, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
