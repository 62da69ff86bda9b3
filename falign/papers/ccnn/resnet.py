"""ResNet-18 and ResNet-34 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) as
landmark regressors: the deep networks CCNN's Table 3 compares sizes and speeds with (the chapter counts
and times them; it does not train them, the ``ccnn.resnet`` decision).

Written out here (no torchvision) so the book shows what is being compared: the ImageNet stem (7x7/2
convolution, batch norm, ReLU, 3x3/2 max pooling), four stages of :class:`BasicBlock` residual units
(two 3x3 convolutions with batch norm; a 1x1/2 projection on the shortcut where the shape changes),
global average pooling and one fully connected layer. ResNet-18 has [2, 2, 2, 2] blocks per stage,
ResNet-34 [3, 4, 6, 3] (He et al., Table 1). With a 1,000-class head they hold 11,689,512 and
21,797,672 parameters, the counts behind the MB of CCNN's Table 3; as landmark regressors the head
has 2 x 5 outputs.

:class:`FaceBoxRegressor` is how the CCNN chapter uses them: it takes images and face boxes exactly as
:class:`falign.papers.ccnn.model.CCNN` does, cuts the face box out and resizes it to ``input_size`` (39x39,
CCNN's stage-1 input), standardises it like CCNN's inputs and regresses the five points in box units.
"""

from __future__ import annotations

import torch
from torch import nn

from falign.papers.ccnn import model as ccnn

LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """He et al.'s basic residual unit: relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:      # option B of the paper: a 1x1 projection
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks: ``layers`` blocks in each of the four stages (64, 128, 256, 512
    channels; stages 2-4 halve the resolution), then global average pooling and a linear layer to
    ``n_outputs``. Input (B, in_channels, H, W), any H, W >= 1 (at 39x39 the stages run at 10, 5, 3
    and 2 pixels)."""

    def __init__(self, layers=(2, 2, 2, 2), n_outputs: int = 10, in_channels: int = 3):
        super().__init__()
        self.layers = tuple(int(n) for n in layers)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, c = [], 64
        for i, n in enumerate(self.layers):
            width = 64 * 2**i
            blocks = [BasicBlock(c, width, 1 if i == 0 else 2)] + [BasicBlock(width, width) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_outputs)
        for m in self.modules():                          # He et al.'s initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet(name: str, n_outputs: int = 10, in_channels: int = 3) -> ResNet:
    """``"resnet18"`` or ``"resnet34"``."""
    if name not in LAYERS:
        raise ValueError(f"unknown ResNet {name!r}; known: {', '.join(LAYERS)}")
    return ResNet(LAYERS[name], n_outputs, in_channels)


def imagenet_parameters(name: str) -> int:
    """Parameters of the 1,000-class ImageNet network (the count Table 3's MB are computed from),
    built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in resnet(name, 1000).parameters())


class FaceBoxRegressor(nn.Module):
    """A ResNet reading the face box as CCNN's stage 1 does: images (B, C, H, W) and boxes (B, 4)
    (x1, y1, x2, y2 pixel edges; None: the whole image) -> the five points in box units (B, 5, 2),
    (0, 0) the box's top-left and (1, 1) its bottom-right corner. :meth:`predict` returns pixels."""

    def __init__(self, name: str = "resnet18", n_points: int = ccnn.N_POINTS, in_channels: int = 3,
                 input_size: int = ccnn.STAGE1_SIZE):
        super().__init__()
        self.config = dict(name=name, n_points=n_points, in_channels=in_channels, input_size=input_size)
        self.name, self.n_points, self.input_size = name, n_points, input_size
        self.net = resnet(name, 2 * n_points, in_channels).to(memory_format=torch.channels_last)
        self.register_buffer("whole", torch.tensor([[0.0, 0.0, 1.0, 1.0]]), persistent=False)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        boxes = ccnn.default_boxes(images, boxes)
        x = ccnn.crop_windows(images.float(), boxes, self.whole.expand(images.shape[0], 1, 4), self.input_size)
        x = ccnn.standardise(x[:, 0]).contiguous(memory_format=torch.channels_last)
        return self.net(x).float().view(-1, self.n_points, 2)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, boxes: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
        """(B, 5, 2) image pixels, eval mode, in batches."""
        was = self.training
        self.eval()
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].float()
            b = ccnn.default_boxes(x, None if boxes is None else boxes[i:i + batch_size])
            out.append(ccnn.box_to_pixels(self(x, b), b))
        self.train(was)
        return torch.cat(out)

