"""Build the packaged app: ``python build_scripts/build.py [--dist DIR] [--work DIR] [--no-archive]``.

1. PyInstaller one-folder bundle from the installed environment (``build_scripts/fgvis_studio.spec``):
   ``DIST/fgvis-studio/fgvis-studio`` (``.exe`` on Windows; ``FGVis Studio.app`` too on macOS).
2. Linux: a ``.desktop`` file and the icon beside the executable, and the folder packed as
   ``DIST/fgvis-studio-VERSION-linux-x86_64.tar.gz``.
Prints the build time and the bundle's size. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build_scripts" / "fgvis_studio.spec"
NAME = "fgvis-studio"

DESKTOP_ENTRY = """[Desktop Entry]
Type=Application
Name=FGVis Studio
Comment=Why did the classifier decide that? Fine-grained, defended visual explanations
Exec=fgvis-studio %F
Icon=fgvis-studio
Terminal=false
Categories=Science;Graphics;Education;
MimeType=image/png;image/jpeg;image/tiff;image/bmp;image/webp;
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    parser.add_argument("--no-archive", action="store_true", help="skip the .tar.gz (Linux)")
    args = parser.parse_args(argv)
    import PyInstaller.__main__

    started = time.perf_counter()
    PyInstaller.__main__.run(
        [str(SPEC), "--noconfirm", "--clean", "--distpath", str(args.dist), "--workpath", str(args.work)]
    )
    built = time.perf_counter() - started
    bundle = args.dist / NAME
    print(f"bundle: {bundle} ({_size(bundle) / 2**30:.2f} GiB), PyInstaller took {built:.0f} s")
    if sys.platform.startswith("linux"):
        (bundle / f"{NAME}.desktop").write_text(DESKTOP_ENTRY, encoding="utf-8")
        (bundle / f"{NAME}.png").write_bytes((ROOT / "resources" / "icons" / f"{NAME}.png").read_bytes())
        if not args.no_archive:
            packed = time.perf_counter()
            archive = args.dist / f"{NAME}-{_version()}-linux-{platform.machine()}.tar.gz"
            with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
                tar.add(bundle, arcname=NAME)
            print(
                f"archive: {archive} ({archive.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - packed:.0f} s"
            )
    return 0


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _version() -> str:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


if __name__ == "__main__":
    sys.exit(main())
