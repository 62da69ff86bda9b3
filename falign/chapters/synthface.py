"""The SynthFace chapter: what the book's default data look like, what each preset draws, and the
morphable model behind it.

Nothing here trains: the chapter renders every split of every preset (:data:`falign.synthface.dataset.PRESETS`)
at one size and describes them in tables and figures. The notebook ``notebooks/synthface/01_synthface``
calls these functions and explains them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from falign.kit import chapter, plots
from falign.synthface import morphable
from falign.synthface.dataset import PRESETS, render_shapes, synthface_arrays


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale(chapter.Scale):
    """One scale of the chapter: faces per split for the statistics (at smoke the numbers are rough,
    the figures still show every ingredient)."""

    faces: int


SCALES = {"smoke": Scale(faces=64), "small": Scale(faces=2000), "gpu": Scale(faces=2000),
          "full": Scale(faces=2000)}

SIZE = 128                                 # render size of every split (pixels)
# The splits the distribution figure compares, (preset, split).
SHOWN = (("300w-like", "train"), ("300w-like", "common"), ("300w-like", "challenging"),
         ("aflw-pifa-like", "test"), ("afw-like", "test"), ("lfpw5-like", "test"))


def preset_table() -> pd.DataFrame:
    """The knobs that differ between presets, one row per split; a composite split (300-W's "full")
    lists its parts and their weights in the yaw column."""
    rows = []
    for name, preset in PRESETS.items():
        for split, cfg in preset.splits.items():
            rows.append({"preset": name, "split": split, "scheme": preset.scheme,
                         "standard size": preset.sizes[split], "yaw": cfg.yaw, "yaw std": cfg.yaw_std,
                         "pitch": cfg.pitch, "roll": cfg.roll, "expression": cfg.expression,
                         "occluder prob.": cfg.occlusion, "ambient": cfg.ambient})
        for split, parts in preset.composite.items():
            rows.append({"preset": name, "split": split, "scheme": preset.scheme,
                         "standard size": preset.sizes[split],
                         "yaw": " + ".join(f"{s} ({w})" for s, w in parts)})
    return pd.DataFrame(rows)


REALISM = "photo-like"       # the realism preset, trained on by the photo aligner (falign.chapters.photo)


def realism_table() -> pd.DataFrame:
    """The realism knobs of :data:`REALISM`'s training split beside the plain 300-W-like training split's:
    the fields in which the two differ."""
    real, plain = PRESETS[REALISM].splits["train"], PRESETS["300w-like"].splits["train"]
    return pd.DataFrame([{"knob": f.name, "300w-like train": str(getattr(plain, f.name)),
                          f"{REALISM} train": str(getattr(real, f.name))}
                         for f in dataclasses.fields(real) if getattr(real, f.name) != getattr(plain, f.name)])


def realism_figure(faces: dict, n: int = 12):
    """The first ``n`` faces of a split's arrays with their landmarks (hidden ones in the second colour)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, -(-n // 2), figsize=(1.9 * -(-n // 2), 4.0))
    for ax, i in zip(axes.flat, range(n)):
        plots.landmarks(ax, faces["images"][i], faces["landmarks68"][i], faces["visible68"][i], size=2, legend=False)
    fig.tight_layout()
    return fig


def splits(run, cfg: Scale, size: int = SIZE) -> dict[tuple[str, str], dict]:
    """(preset, split) -> the arrays of ``cfg.faces`` faces of every split of every preset
    (:func:`falign.synthface.dataset.synthface_arrays`) at the run's seed and device; each split's
    fingerprint is recorded in the run's provenance."""
    out = {}
    for name, preset in PRESETS.items():
        for split in preset.split_names:
            out[name, split] = synthface_arrays(name, split, cfg.faces, size=size, seed=run.seed, device=run.device)
            run.dataset(f"synthface:{name}/{split}", out[name, split]["fingerprint"])
    return out


def faces_by_yaw_figure(faces: dict, yaws=tuple(np.linspace(-90, 90, 7)), per_yaw: int = 3):
    """``per_yaw`` faces closest to each yaw (columns), landmarks visible in green and hidden in red, the
    tight 68-point box solid and the jittered detector box dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(per_yaw, len(yaws), figsize=(2.1 * len(yaws), 2.2 * per_yaw), squeeze=False)
    for col, yaw in enumerate(yaws):
        for row, i in enumerate(np.argsort(np.abs(faces["pose"][:, 0] - yaw))[:per_yaw]):
            ax = axes[row, col]
            plots.landmarks(ax, faces["images"][i], faces["landmarks68"][i], faces["visible68"][i], size=4,
                            legend=False, title=f"yaw {faces['pose'][i, 0]:.0f}°")
            plots.box(ax, faces["boxes"][i])
            plots.box(ax, faces["detector_boxes"][i], ls="--")
    fig.tight_layout()
    return fig


def distributions_figure(stats: dict, shown=SHOWN):
    """Histograms of yaw, pitch and roll and of the hidden share of each face's 68 landmarks, one
    curve per split of ``shown``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for key in shown:
        a, label = stats[key], "/".join(key)
        for k in range(3):
            axes[k].hist(a["pose"][:, k], bins=np.arange(-90, 91, 10), histtype="step", density=True, label=label)
        axes[3].hist(1 - a["visible68"].mean(1), bins=np.linspace(0, 1, 21), histtype="step", density=True,
                     label=label)
    for ax, what in zip(axes, ("yaw (°)", "pitch (°)", "roll (°)", "hidden share of the 68 landmarks")):
        ax.set(xlabel=what, yticks=[])
    axes[0].set_ylabel("density")
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    return fig


def statistics(stats: dict, size: int = SIZE) -> pd.DataFrame:
    """Per split: faces, mean |yaw|, share beyond 45°, hidden share of the 68 points and of the preset's
    scheme (a derived point is hidden if any of its sources is), and the box width over the image's."""
    return pd.DataFrame([{
        "preset": preset, "split": split, "faces": len(a["pose"]),
        "mean |yaw| (°)": np.abs(a["pose"][:, 0]).mean(),
        "|yaw| > 45° (%)": 100 * (np.abs(a["pose"][:, 0]) > 45).mean(),
        "hidden of 68 (%)": 100 * (1 - a["visible68"].mean()),
        "scheme": PRESETS[preset].scheme,
        "hidden of the scheme (%)": 100 * (1 - a["visible"].mean()),
        "box width / image": ((a["boxes"][:, 2] - a["boxes"][:, 0]) / size).mean(),
    } for (preset, split), a in stats.items()])


def modes_figure(n: int = 3, sigmas=(-3, 0, 3), yaw: float = 30.0, size: int = SIZE):
    """The model's first ``n`` identity and ``n`` expression modes at each of ``sigmas`` (rows; the
    mean at 0), rendered at ``yaw`` so that depth changes show (:func:`falign.synthface.dataset.render_shapes`)."""
    import matplotlib.pyplot as plt

    model = morphable.builtin_model()
    modes = [("identity", k, model.id_names[k], float(model.id_sigma[k])) for k in range(n)] + \
            [("expression", k, model.exp_names[k], float(model.exp_sigma[k])) for k in range(n)]
    p = np.zeros((len(modes), len(sigmas), model.n_params), np.float32)
    for col, (kind, k, _, sigma) in enumerate(modes):
        p[col, :, k if kind == "identity" else model.n_id + k] = np.array(sigmas) * sigma
    renders = render_shapes(p.reshape(-1, model.n_params), yaw=yaw, size=size, width=0.45)["images"]
    labels = [f"{s:+d}σ".replace("-", "−") if s else "mean" for s in sigmas]
    fig, axes = plt.subplots(len(sigmas), len(modes), figsize=(2.2 * len(modes), 6.8 * len(sigmas) / 3),
                             squeeze=False)
    for col, (kind, k, name, _) in enumerate(modes):
        for j, label in enumerate(labels):
            ax = axes[j, col]
            ax.imshow(renders[len(sigmas) * col + j])
            ax.set_title(f"{kind} {k}: {name}\n{label}" if j == 0 else label, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig
