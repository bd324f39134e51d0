"""A tiny scorer built offline and saved like a Hub model: its score is the image's
mean brightness, so a test can predict every image's rank.

A ResNet (one basic block) with a one-output regression head, loaded by the same code
that loads a Hub scorer (worker/scorer.py). Its image processor box-resizes the image to
one pixel (the mean colour, rounded to 8 bits by Pillow) and rescales it to 0..1; the
stem's centre tap averages the three channels into channel 0, the batch norms are the
identity (running mean 0, variance 1 - eps, weight 1, bias 0), the block's second norm
is zero so the residual passes its input through, ReLU and pooling change nothing for a
non-negative value on one pixel, and the head reads channel 0: score = mean brightness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def build_tiny_scorer(folder: Path) -> Path:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessorPil

    config = ResNetConfig(
        num_channels=3,
        embedding_size=4,
        hidden_sizes=[4],
        depths=[1],
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=1,
        problem_type="regression",
        id2label={0: "brightness"},
        label2id={"brightness": 0},
    )
    model = ResNetForImageClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.zero_()
            if "normalization.weight" in name and "layer.1." not in name:
                parameter.fill_(1.0)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.fill_(1.0 - 1e-5)  # (x - 0) / sqrt(var + eps) = x
            elif name.endswith("running_mean"):
                buffer.zero_()
        model.resnet.embedder.embedder.convolution.weight[0, :, 3, 3] = 1.0 / 3
        model.classifier[1].weight[0, 0] = 1.0
    processor = ViTImageProcessorPil(
        size={"height": 1, "width": 1},
        resample=Image.Resampling.BOX,
        image_mean=[0.0] * 3,
        image_std=[1.0] * 3,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def brightness(image: Image.Image) -> float:
    """What the tiny scorer says of ``image``: its mean colour's mean channel, 0..1."""
    pixel = np.asarray(image.convert("RGB").resize((1, 1), Image.Resampling.BOX), dtype=float)
    return float(pixel.mean() / 255)
