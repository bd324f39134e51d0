"""A tiny image classifier built offline and saved like a Hub model: screening in tests.

A one-layer ViT (hidden size 2, one 32×32 patch) whose weights are set by hand so that
its ``nsfw`` probability is high exactly when the image's mean red channel is above the
middle (128): a classifier "fixed to flag a given image". The folder it is saved to is
loaded by the same code that loads a Hub model (worker/classifier.py).

How: the patch embedding puts the mean red (normalised to [-1, 1]) in dimension 0;
with query and key weights zero, attention is uniform and the value and output
projections are the identity, so the class token takes the mean of the normalised
tokens, whose sign is the sign of the red level; the layer norms keep only that sign,
and the classifier maps it to a logit of ±4 (probabilities 0.982 / 0.018).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FLAGGED_SCORE = 0.982
CLEAN_SCORE = 0.018


def build_tiny_classifier(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = ViTConfig(
        image_size=32,
        patch_size=32,
        num_channels=3,
        hidden_size=2,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=2,
        layer_norm_eps=1e-6,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.zero_()
            if "layernorm" in name and name.endswith("weight"):
                parameter.fill_(1.0)
            if name.endswith(("v_proj.weight", "o_proj.weight")):
                parameter.copy_(torch.eye(2))
        model.vit.embeddings.patch_embeddings.projection.weight[0, 0] = 1.0 / (32 * 32)
        model.classifier.weight[1, 0] = 4.0
    processor = ViTImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def mean_red(image: Image.Image) -> float:
    """The mean red level of the image as the classifier sees it (resized to 32×32)."""
    small = image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    return float(np.asarray(small)[:, :, 0].mean())
