"""Regenerate the files under ``resources/`` that come from third-party packages.

Run once by a developer (never at application run time, never in CI)::

    .venv/bin/pip install scikit-image
    .venv/bin/python build_scripts/make_resources.py

It writes

* ``resources/imagenet_classes.txt`` -- the 1000 ImageNet-1k class names in index order, taken from
  torchvision's offline weights metadata, so that the application never needs torchvision for labels;
* ``resources/samples/*.jpg`` -- a few real photographs from scikit-image's data folder whose licences
  allow redistribution (listed with their licence in ``resources/samples/LICENSES.md``).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"

# name in skimage's data folder -> (our file name, licence line)
SAMPLES = {
    "coffee.png": ("coffee.jpg", "CC0, photographer Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    "chelsea.png": ("chelsea.jpg", "CC0, photographer Stefan van der Walt"),
    "rocket.jpg": ("rocket.jpg", "public domain, SpaceX launch photo of DSCOVR on Falcon 9"),
    "astronaut.png": ("astronaut.jpg", "public domain, NASA photograph of astronaut Eileen Collins"),
}


def write_labels() -> None:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    assert len(categories) == 1000
    (RESOURCES / "imagenet_classes.txt").write_text("\n".join(categories) + "\n", encoding="utf-8")


def write_samples() -> None:
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    out_dir = RESOURCES / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Sample photographs",
        "",
        "Copied from scikit-image's `skimage/data` folder by `build_scripts/make_resources.py`",
        "(re-encoded as JPEG, quality 92). Licences as stated in scikit-image's documentation:",
        "",
    ]
    for source, (target, licence) in SAMPLES.items():
        Image.open(data_dir / source).convert("RGB").save(out_dir / target, quality=92)
        lines.append(f"- `{target}`: {licence}.")
    (out_dir / "LICENSES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_labels()
    write_samples()
