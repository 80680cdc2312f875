"""Model loading from every supported source, and the clear errors for bad files (all offline)."""

from __future__ import annotations

import pickle
import random
import re

import pytest
import torch
import torchvision

from engine import ModelLoadError, TargetError, load_model
from engine.models.loading import sha256_of


def test_builtin_model_classifies_the_sample_photos_sensibly(real_model, samples):
    assert real_model.num_classes == 1000 and real_model.input_size == (224, 224)
    assert real_model.weights_path is not None
    assert real_model.weights_sha256 == sha256_of(real_model.weights_path)
    top = {name: real_model.predict(samples[name], k=3) for name in ("coffee", "chelsea", "rocket")}
    assert top["coffee"][0].label == "espresso" and top["coffee"][0].probability > 0.8
    assert {p.label for p in top["chelsea"]} <= {"tiger cat", "Egyptian cat", "tabby", "lynx", "tiger"}
    assert top["rocket"][0].label in {"missile", "projectile", "space shuttle"}


def test_resolve_target_by_index_name_and_part_of_a_name(real_model):
    assert real_model.resolve_target(967) == 967
    assert real_model.resolve_target("967") == 967
    assert real_model.resolve_target("Espresso") == 967
    assert real_model.resolve_target("espresso maker") == 550
    with pytest.raises(TargetError, match=r"out of range"):
        real_model.resolve_target(1000)
    with pytest.raises(TargetError, match=r"several classes"):
        real_model.resolve_target("cat")
    with pytest.raises(TargetError, match=r"no class"):
        real_model.resolve_target("flux capacitor")


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_torchvision_architecture_with_local_state_dict(resnet18_weights):
    model = load_model("resnet18", weights=resnet18_weights)
    assert model.name == "resnet18" and model.num_classes == 1000
    assert model.labels[0] == "tench"
    assert model.weights_sha256 == sha256_of(resnet18_weights)
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(torch.load(resnet18_weights, weights_only=True))
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(model.module(x), reference.eval()(x), atol=1e-5)


def test_wrapped_and_dataparallel_checkpoints_are_unwrapped(tmp_path, resnet18_weights):
    state = torch.load(resnet18_weights, weights_only=True)
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    assert load_model("resnet18", weights=path).num_classes == 1000


def test_wrong_number_of_classes_is_explained(tmp_path):
    path = tmp_path / "ten_classes.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"ten_classes.pth.*fc.weight.*10-class model.*num_classes=10"):
        load_model("resnet18", weights=path)
    model = load_model("resnet18", weights=path, num_classes=10)
    assert model.labels == [f"class {i}" for i in range(10)]
    with pytest.raises(ModelLoadError, match=r"3 labels were given but .* 10 outputs"):
        load_model("resnet18", weights=path, num_classes=10, labels=["a", "b", "c"])


def test_wrong_architecture_names_missing_and_unexpected_keys(resnet18_weights):
    with pytest.raises(ModelLoadError, match=r"resnet18.pth: weights do not fit .*missing keys.*unexpected keys"):
        load_model("alexnet", weights=resnet18_weights)


def test_unknown_architecture_and_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"unknown architecture 'resnet9000'"):
        load_model("resnet9000", weights=tmp_path / "x.pth")
    with pytest.raises(ModelLoadError, match=r"x.pth: no such file \(expected a PyTorch weights file"):
        load_model("resnet18", weights=tmp_path / "x.pth")


def test_truncated_and_non_torch_files(tmp_path, resnet18_weights):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(resnet18_weights.read_bytes()[:100_000])
    garbage = tmp_path / "photo.pth"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 not torch at all" * 10)
    with pytest.raises(ModelLoadError, match=r"truncated.pth is not a PyTorch weights file.*truncated or damaged"):
        load_model("resnet18", weights=truncated)
    with pytest.raises(ModelLoadError, match=r"photo.pth is not a PyTorch weights file.*JPEG picture"):
        load_model("resnet18", weights=garbage)


class _Payload:
    """Unpickling this object would run code: the loader must never do it without opt-in."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_pickled_objects_are_refused_unless_the_user_opts_in(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(ModelLoadError, match=r"unpickling can run code"):
        load_model("resnet18", weights=path)
    assert not _Payload.ran


def test_full_pickled_module_loads_only_with_allow_pickle(tmp_path):
    path = tmp_path / "full_model.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7), path)
    with pytest.raises(ModelLoadError, match=r"not opened because unpickling can run code"):
        load_model("resnet18", weights=path)
    model = load_model("resnet18", weights=path, allow_pickle=True)
    assert model.num_classes == 7 and "pickled" in model.name


def test_torchscript_model_and_its_errors(tmp_path):
    scripted = torch.jit.script(torchvision.models.resnet18(weights=None, num_classes=4).eval())
    path = tmp_path / "model.ts"
    scripted.save(str(path))
    model = load_model(torchscript=path)
    assert model.num_classes == 4 and "TorchScript" in model.name
    with pytest.raises(ModelLoadError, match=r"is a TorchScript model, not a state_dict"):
        load_model("resnet18", weights=path)
    with pytest.raises(ModelLoadError, match=r"nothing.pt: no such file \(expected a TorchScript file"):
        load_model(torchscript=tmp_path / "nothing.pt")
    broken = tmp_path / "broken.ts"
    broken.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"broken.ts is not a TorchScript file.*truncated or damaged"):
        load_model(torchscript=broken)


def test_torchscript_that_is_not_a_classifier(tmp_path):
    path = tmp_path / "features.ts"
    torch.jit.script(torch.nn.Conv2d(3, 2, 3)).save(str(path))
    with pytest.raises(ModelLoadError, match=r"not a classifier"):
        load_model(torchscript=path)


def test_torchvision_cache_is_used_when_present_and_never_downloaded(tmp_path, monkeypatch, resnet18_weights):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = r"no weights for resnet18: .*resnet18-f37072fd.pth.*nothing is downloaded"
    with pytest.raises(ModelLoadError, match=expected):
        load_model("resnet18")
    (tmp_path / "checkpoints").mkdir()
    cached = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    cached.write_bytes(resnet18_weights.read_bytes())
    assert load_model("resnet18").weights_path == cached


def test_random_weights_for_sanity_checks():
    model = load_model("alexnet", random_weights=True)
    assert model.weights_path is None and model.weights_sha256 is None and model.num_classes == 1000


# --- Every bad file gives the engine's own error, in words a reviewer can act on (issue 15, item 10) ---

ARCH = "squeezenet1_1"  # small and quick to build


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return path


def _zip_of_notes(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "not a model")


def _other_architecture(path):
    torch.save(torchvision.models.shufflenet_v2_x0_5(weights=None).state_dict(), path)


def _torchscript(path):
    torch.jit.script(torch.nn.Linear(4, 2)).save(str(path))


BAD_FILES = {
    # id: (file name, how to write it, load_model keywords (the file as "FILE"), what the message must say)
    "empty weights": ("empty.pth", lambda p, sd: p.write_bytes(b""), {"weights": "FILE"}, "is empty"),
    "random bytes": (
        "noise.pth",
        lambda p, sd: p.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(4096)).replace(b"\x80", b"")),
        {"weights": "FILE"},
        "not in any format PyTorch saves",
    ),
    "text file": ("notes.pth", lambda p, sd: p.write_text("0 apple\n1 banana\n"), {"weights": "FILE"}, "text file"),
    "text starting like a pickle": ("pop.pth", lambda p, sd: p.write_text("0\n"), {"weights": "FILE"}, "text file"),
    "html page": (
        "download.pth",
        lambda p, sd: p.write_text("<!DOCTYPE html><html>404</html>"),
        {"weights": "FILE"},
        "web page",
    ),
    "git lfs pointer": (
        "lfs.pth",
        lambda p, sd: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 5\n"),
        {"weights": "FILE"},
        "Git LFS pointer",
    ),
    "zip of other files": ("archive.pth", lambda p, sd: _zip_of_notes(p), {"weights": "FILE"}, "zip archive of other"),
    "truncated state_dict": (
        "cut.pth",
        lambda p, sd: p.write_bytes(sd.read_bytes()[:200_000]),
        {"weights": "FILE"},
        "truncated or damaged",
    ),
    "truncated to a few bytes": (
        "stub.pth",
        lambda p, sd: p.write_bytes(sd.read_bytes()[:40]),
        {"weights": "FILE"},
        "truncated or damaged",
    ),
    "list instead of a state_dict": (
        "list.pth",
        lambda p, sd: torch.save([1, 2], p),
        {"weights": "FILE"},
        "holds a list",
    ),
    "single tensor": ("tensor.pth", lambda p, sd: torch.save(torch.zeros(3), p), {"weights": "FILE"}, "single tensor"),
    "other architecture": (
        "shufflenet.pth",
        lambda p, sd: _other_architecture(p),
        {"weights": "FILE"},
        r"do not fit SqueezeNet: \d+ missing keys \(features",
    ),
    "torchscript as weights": (
        "scripted.pt",
        lambda p, sd: _torchscript(p),
        {"weights": "FILE"},
        "is a TorchScript model, not a state_dict",
    ),
    "weights as torchscript": (
        "weights.pt",
        lambda p, sd: p.write_bytes(sd.read_bytes()),
        {"torchscript": "FILE"},
        "is not a TorchScript file.*is a PyTorch weights file",
    ),
    "text as torchscript": (
        "model.ts",
        lambda p, sd: p.write_text("hello"),
        {"torchscript": "FILE"},
        "is not a TorchScript file.*text file",
    ),
    "zip as torchscript": (
        "model.zip",
        lambda p, sd: _zip_of_notes(p),
        {"torchscript": "FILE"},
        "is not a TorchScript file.*zip archive",
    ),
    "missing weights": (
        "absent.pth",
        lambda p, sd: None,
        {"weights": "FILE"},
        "no such file .expected a PyTorch weights",
    ),
    "folder as weights": (
        "folder.pth",
        lambda p, sd: p.mkdir(),
        {"weights": "FILE"},
        "not a regular file but a folder",
    ),
    "binary labels": (
        "labels.txt",
        lambda p, sd: p.write_bytes(bytes(range(256))),
        {"labels": "FILE"},
        "not a text file of class names.*binary",
    ),
    "labels with NUL bytes": ("nul.txt", lambda p, sd: p.write_bytes(b"cat\x00\ndog\n"), {"labels": "FILE"}, "binary"),
    "empty labels": ("blank.txt", lambda p, sd: p.write_text("\n\n"), {"labels": "FILE"}, "holds no class names"),
    "too few labels": (
        "three.txt",
        lambda p, sd: p.write_text("a\nb\nc\n"),
        {"labels": "FILE"},
        "has 3 class names but .*squeezenet.pth holds a 1000-class model: expected 1000",
    ),
    "too few labels, classes given": (
        "three_given.txt",
        lambda p, sd: p.write_text("a\nb\nc\n"),
        {"labels": "FILE", "num_classes": 1000},
        "has 3 class names but squeezenet1_1 has 1000 outputs: expected",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_every_bad_model_file_says_what_it_is_not_in_plain_words(case, tmp_path, small_weights):
    file_name, write, keywords, expected = BAD_FILES[case]
    path = tmp_path / file_name
    write(path, small_weights)
    kwargs = {key: (path if value == "FILE" else value) for key, value in keywords.items()}
    if "torchscript" not in kwargs:
        kwargs.setdefault("weights", small_weights)
    with pytest.raises(ModelLoadError) as caught:
        load_model(ARCH, **kwargs)
    message = str(caught.value)
    assert file_name in message
    assert re.search(expected, message), message
    assert not re.search(r"[A-Z]\w*(Error|Exception)\b|miniz|Traceback|PytorchStreamReader|enforce fail", message)
    assert not re.search(r"(^|[\s(])--\w", message), message
    assert len(message) < 600


def test_a_wrong_class_count_points_at_the_setting_and_the_cli_adds_its_flag(tmp_path, photo, capsys):
    from engine.cli import main

    path = tmp_path / "ten.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(ModelLoadError) as caught:
        load_model(ARCH, weights=path)
    assert caught.value.option == "num_classes" and "--" not in str(caught.value)
    assert main(["predict", str(photo), "--model", ARCH, "--weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ten.pth" in err and "10-class model" in err and "--num-classes 10" in err
    assert main(["predict", str(photo), "--model", ARCH, "--weights", str(path), "--num-classes", "10"]) == 0
