"""Draw the application icon and write it in every format the packaged builds need:
``resources/icons/fgvis-studio.png`` (256 px, Linux and the window), ``.ico`` (Windows) and ``.icns``
(macOS). Run from the repository root: ``python build_scripts/make_icons.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.colormaps import lookup_table

SIZE = 512


def draw_icon() -> Image.Image:
    """A rounded dark tile with an inferno heat spot and a white 'keep' mask outline: evidence on an image."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([16, 16, SIZE - 16, SIZE - 16], radius=96, fill=(28, 30, 40, 255))
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    distance = np.hypot(x - SIZE * 0.56, y - SIZE * 0.46) / (SIZE * 0.36)
    heat = np.clip(1.0 - distance, 0.0, 1.0)
    colours = lookup_table("inferno")[np.round(heat * 255).astype(int)]
    alpha = (np.clip(heat * 3.0, 0.0, 1.0) * 255).astype(np.uint8)
    spot = Image.fromarray(np.dstack([colours, alpha]).astype(np.uint8), "RGBA")
    tile_mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(tile_mask).rounded_rectangle([16, 16, SIZE - 16, SIZE - 16], radius=96, fill=255)
    spot.putalpha(Image.fromarray(np.minimum(np.asarray(spot)[..., 3], np.asarray(tile_mask))))
    image.alpha_composite(spot)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([120, 110, 400, 380], radius=40, outline=(255, 255, 255, 235), width=18)
    return image


def main(folder: Path = Path("resources/icons")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    icon = draw_icon()
    icon.resize((256, 256), Image.LANCZOS).save(folder / "fgvis-studio.png")
    icon.save(folder / "fgvis-studio.ico", sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    icon.save(folder / "fgvis-studio.icns")
    print("wrote", ", ".join(sorted(p.name for p in folder.iterdir())))


if __name__ == "__main__":
    main()
