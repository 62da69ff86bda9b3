"""The Supervised Descent Method (Xiong and De la Torre, CVPR 2013) on HOG features: the classic
cascaded-regression baseline of RCSR's Table 4 (row 1), MSRRN's Fig. 3 and the comparison chapter.

It answers ``predict(images (B,1,H,W), init_shapes (B,N,2)) -> shapes per stage (T+1, B, N, 2)``
like the recurrent models, and is fit in closed form with :meth:`SDM.fit` (no gradient descent).
"""

from __future__ import annotations

import torch
from torch import nn

from falign.measure.landmarks import get_scheme
from falign.baselines.hog import HOGFeatures


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression y ~ x R + b, in float64. The penalty is ``alpha`` times the mean
    eigenvalue of the centred Gram matrix (trace / min(n, D)), so ``alpha`` does not depend on the
    feature scale or count; the smaller of the primal (D x D) and dual (n x n) systems is solved."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    lam = alpha * xc.pow(2).sum() / min(n, d)
    if n >= d:
        R = torch.linalg.solve(xc.T @ xc + lam * torch.eye(d, dtype=x.dtype, device=x.device), xc.T @ yc)
    else:
        R = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(n, dtype=x.dtype, device=x.device), yc)
    return R.float(), (y_mean - x_mean @ R).float()


class SDM(nn.Module):
    """Supervised Descent Method [3], Table 4 row 1 ("Linear Regressor + HOG").

    A cascade of ``stages`` linear regressors on the HOG of patches around the current landmarks:
    h_t = h_{t-1} + R_t F(h_{t-1}) + b_t (Eq. 12, with the sign folded into R_t). Each stage is fit
    independently, in closed form, to the residuals the previous stages leave (Eq. 13) -- the
    independence that RCSR's joint training removes. Uses the same HOG as "traditional GRU + HOG",
    so that the two differ only in the regressor (Sec. 5.1). Like RCSR, the buffer ``mean_shape``
    keeps S-bar (box units) with the regressors.
    """

    def __init__(self, scheme: str = "ibug68", stages: int = 5, alpha: float = 0.1,
                 patch_size: int = 16, cells: int = 4, block: int = 4, orientations: int = 8):
        super().__init__()
        self.scheme = get_scheme(scheme)
        self.steps, self.alpha, self.n_points = stages, alpha, self.scheme.n_points
        self.config = dict(scheme=scheme, stages=stages, alpha=alpha, patch_size=patch_size, cells=cells,
                           block=block, orientations=orientations)
        self.features = HOGFeatures(self.n_points, patch_size, cells, block, orientations)
        d = self.features.out_shape[0]
        self.register_buffer("R", torch.zeros(stages, d, 2 * self.n_points))
        self.register_buffer("b", torch.zeros(stages, 2 * self.n_points))
        self.register_buffer("mean_shape", torch.zeros(self.n_points, 2))

    def _hog(self, images: torch.Tensor, shapes: torch.Tensor, chunk: int) -> torch.Tensor:
        return torch.cat([self.features(self.features.prepare(images[i:i + chunk]), shapes[i:i + chunk])
                          for i in range(0, len(images), chunk)])

    @torch.no_grad()
    def fit(self, images: torch.Tensor, init_shapes: torch.Tensor, targets: torch.Tensor,
            chunk: int = 128) -> list[float]:
        """Fit the stages one after the other; returns the mean point error (pixels) on the training
        set before stage 1 and after every stage. Several jittered initial shapes per face (as rows
        of ``init_shapes`` with repeated images) play the Monte Carlo role of Sec. 3.3."""
        device = self.R.device
        images, shapes, targets = images.to(device), init_shapes.to(device), targets.to(device)
        # The training error comes back as Python floats, one read of the device per stage, by design:
        # the fit is closed form, a stage at a time, and the caller reports the curve.
        errors = [float((shapes - targets).norm(dim=-1).mean())]
        for t in range(self.steps):
            phi = self._hog(images, shapes, chunk)
            self.R[t], self.b[t] = ridge(phi, (targets - shapes).flatten(1), self.alpha)
            shapes = shapes + (phi @ self.R[t] + self.b[t]).view_as(shapes)
            errors.append(float((shapes - targets).norm(dim=-1).mean()))
        return errors

    def forward(self, images: torch.Tensor, init: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        out, cells = [init], self.features.prepare(images)
        for t in range(self.steps if steps is None else min(steps, self.steps)):
            phi = self.features(cells, out[-1])
            out.append(out[-1] + (phi @ self.R[t] + self.b[t]).view_as(init))
        return torch.stack(out)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, init_shapes: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Shapes after every stage, (stages+1, B, N, 2); a cascade cannot run past its last stage."""
        return self(images, init_shapes, steps)
