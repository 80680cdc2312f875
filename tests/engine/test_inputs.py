"""engine.models.inputs: only regular files are opened; declared sizes are bounded."""

from __future__ import annotations

import os

import pytest

from engine.errors import ImageLoadError
from engine.models.inputs import check_count, regular_file


def test_only_a_regular_file_passes(tmp_path):
    good = tmp_path / "photo.png"
    good.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(good)
    assert regular_file(good, "an image file", ImageLoadError) == good
    assert regular_file(tmp_path / "link.png", "an image file", ImageLoadError) == tmp_path / "link.png"
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    cases = {
        "pipe.png": "named pipe (FIFO)",
        "dangling.png": "broken symbolic link",
        "loop.png": "cannot be read",
        "missing.png": "no such file",
        "": "a folder",
    }
    for name, words in cases.items():
        with pytest.raises(ImageLoadError) as caught:
            regular_file(tmp_path / name, "an image file", ImageLoadError)
        assert words in str(caught.value) and "expected an image file" in str(caught.value)
    with pytest.raises(ImageLoadError, match="is not a regular file but a device"):
        regular_file("/dev/null", "an image file", ImageLoadError)


def test_counts_are_bounded():
    assert check_count(3, 3, "the number of results", "s.fgvis", ImageLoadError) == 3
    with pytest.raises(ImageLoadError, match=r"s\.fgvis: the number of results is 4, more than the limit of 3"):
        check_count(4, 3, "the number of results", "s.fgvis", ImageLoadError)
