"""Model loading from every supported source, and the clear errors for bad files (all offline)."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from engine import ModelLoadError, TargetError, load_model
from engine.models import sha256_of


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
    with pytest.raises(ModelLoadError, match=r"x.pth: no such weights file"):
        load_model("resnet18", weights=tmp_path / "x.pth")


def test_truncated_and_non_torch_files(tmp_path, resnet18_weights):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(resnet18_weights.read_bytes()[:100_000])
    garbage = tmp_path / "photo.pth"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 not torch at all" * 10)
    with pytest.raises(ModelLoadError, match=r"truncated.pth: not a PyTorch weights file, or truncated"):
        load_model("resnet18", weights=truncated)
    with pytest.raises(ModelLoadError, match=r"photo.pth: not a PyTorch weights file"):
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
    with pytest.raises(ModelLoadError, match=r"nothing.pt: no such TorchScript file"):
        load_model(torchscript=tmp_path / "nothing.pt")
    broken = tmp_path / "broken.ts"
    broken.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"broken.ts: not a TorchScript model"):
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
