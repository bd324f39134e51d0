"""PNG encoding with the A1111 ``parameters`` text chunk."""

from __future__ import annotations

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def encode_png(image: Image.Image, *, parameters: str, compress_level: int) -> bytes:
    info = PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()
