"""``farm worker`` whose simulated renderer draws 8x8 pictures instead of bucket-size ones.

The control-plane benchmark measures claims, messages, uploads and bookkeeping; a
1024² PNG encode (~115 ms) would measure Pillow instead. Run as
``python -m bench._tiny_worker worker --model simulated``.
"""

from __future__ import annotations

from PIL import Image

from farm.cli import app
from worker.renderer import SimulatedRenderer


def _tiny(seed: int, width: int, height: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (seed % 256, (seed // 256) % 256, 128))


SimulatedRenderer._draw = staticmethod(_tiny)  # type: ignore[method-assign]

if __name__ == "__main__":
    app()
