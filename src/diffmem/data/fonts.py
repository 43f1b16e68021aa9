"""Typeset digits: the digits 0..9 rendered from TrueType fonts, 8x8 grayscale like ``digits``.

Fonts: the TTF files that matplotlib ships (``mpl-data/fonts/ttf``, the 21 with standard digit
glyphs: DejaVu, STIX, Computer Modern), or the ``*.ttf`` files in ``path``. Each class has
``FONT_IMAGES_PER_CLASS`` images: fonts taken in turn at three glyph heights, with seeded jitter in
stroke width, rotation and offset, white ink on black. It is the second real source for the
CPU-scale intra-class diversity experiment (digits class k blended with typeset digit k, as the
paper blends CIFAR-10 dogs with ImageNet dogs). Fixed seeds; pixels may differ between
FreeType/Pillow versions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffmem.data.sources import FONT_IMAGES_PER_CLASS

FONT_RESOLUTION = 8  # side of a fonts image, as digits
FONT_SEED = 20231004  # seed of the fonts jitter
_FONT_CANVAS = 64  # side of the canvas a glyph is drawn on before area downsampling
_FONT_HEIGHTS = (0.78, 0.88, 0.98)  # glyph height as a fraction of the canvas
_DIGIT_GLYPHS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def font_files(path: str | os.PathLike | None = None) -> list[Path]:
    """TTF fonts (matplotlib's, or those in ``path``) whose '0'..'9' are standard digit glyphs."""
    from fontTools.ttLib import TTFont

    if path is None:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    else:
        folder = Path(path)
    keep = []
    for f in sorted(folder.glob("*.ttf")):
        try:
            with TTFont(f, lazy=True) as font:
                cmap = font.getBestCmap() or {}
        except Exception:  # noqa: BLE001 - an unreadable font is skipped
            continue
        if all(cmap.get(ord(str(d))) == g for d, g in enumerate(_DIGIT_GLYPHS)):
            keep.append(f)
    return keep


def render_fonts(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_files(path)
    if not fonts:
        where = path or "matplotlib's mpl-data/fonts/ttf"
        raise ValueError(f"no TTF font with digit glyphs in {where}")
    canvas = _FONT_CANVAS
    faces = {f: ImageFont.truetype(str(f), size=int(canvas * 0.8)) for f in fonts}
    n = FONT_IMAGES_PER_CLASS
    images = np.zeros((10 * n, 1, FONT_RESOLUTION, FONT_RESOLUTION), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.int64), n)
    for digit in range(10):
        for i in range(n):
            rng = np.random.default_rng([FONT_SEED, digit, i])
            face = faces[fonts[i % len(fonts)]]
            height = _FONT_HEIGHTS[(i // len(fonts)) % len(_FONT_HEIGHTS)] * canvas
            stroke = int(rng.integers(1, 4))
            angle = float(rng.uniform(-8.0, 8.0))
            # draw the glyph large, then rotate and crop it to its ink
            big = Image.new("L", (2 * canvas, 2 * canvas), 0)
            ImageDraw.Draw(big).text(
                (canvas, canvas),
                str(digit),
                fill=255,
                font=face,
                anchor="mm",
                stroke_width=stroke,
                stroke_fill=255,
            )
            big = big.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
            glyph = big.crop(big.getbbox())
            # scale to the target height (width capped at the canvas), paste with a jittered offset
            gw, gh = glyph.size
            scale = min(height / gh, 0.95 * canvas / gw)
            tw, th = max(1, round(gw * scale)), max(1, round(gh * scale))
            glyph = glyph.resize((tw, th), Image.Resampling.LANCZOS)
            dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
            x = min(max((canvas - tw) // 2 + dx, 0), canvas - tw)
            y = min(max((canvas - th) // 2 + dy, 0), canvas - th)
            img = Image.new("L", (canvas, canvas), 0)
            img.paste(glyph, (x, y))
            small = np.asarray(img.reduce(canvas // FONT_RESOLUTION), dtype=np.float64)
            small = np.floor(small * (255.0 / max(small.max(), 1.0)) + 0.5)  # full contrast, as digits
            images[digit * n + i, 0] = small.astype(np.uint8)
    return images, labels
