"""PerceptionNet: backbone + multi-study head, freezing, feature caching and optimizer groups."""
import pytest
import torch

from perceptions.errors import PerceptionsError
from perceptions.nets.perception_net import HEAD_BIAS_INIT, build_net


@pytest.fixture()
def net():
    torch.manual_seed(0)
    net, _ = build_net("efficientnet_lite0", ["beautiful", "safety"], weights="none")
    return net


def test_build_net_outputs_one_column_per_study_starting_mid_scale():
    net, pre = build_net("efficientnet_lite0", "safe,lively,wealthy".split(","))
    assert net.studies == ["safe", "lively", "wealthy"]
    assert pre.input_size == 224 and pre.mean == (0.5, 0.5, 0.5)
    assert net.backbone_name == "efficientnet_lite0" and net.weights == "packaged"
    out = net.eval()(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 3)
    assert (out - HEAD_BIAS_INIT).abs().max() < 1.0       # starts near the middle of the 1..10 scale


def test_studies_are_canonical_names_and_must_be_distinct(net):
    assert net.studies == ["beautiful", "safe"]           # caller's order kept, aliases resolved
    with pytest.raises(PerceptionsError):
        build_net("efficientnet_lite0", ["safe", "safer"], weights="none")
    with pytest.raises(PerceptionsError):
        build_net("efficientnet_lite0", ["prettiness"], weights="none")


def test_features_then_head_equals_forward(net):
    net.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        assert torch.allclose(net.head(net.features(x)), net(x))
        assert net.features(x).shape == (2, net.num_features)


def test_frozen_backbone_has_no_gradients_and_fixed_batchnorm(net):
    net.set_backbone_trainable(False)
    net.train()
    assert not net.backbone.training and net.head.training
    stats = {k: v.clone() for k, v in net.backbone.state_dict().items() if "running" in k}
    net(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    assert all(torch.equal(stats[k], v) for k, v in net.backbone.state_dict().items() if k in stats)
    groups = net.param_groups(lr=1e-3)
    assert [g["name"] for g in groups] == ["head"]

    net.set_backbone_trainable(True)
    assert net.backbone.training
    groups = {g["name"]: g for g in net.param_groups(lr=1e-3, backbone_lr_mult=0.1)}
    assert groups["head"]["lr"] == 1e-3 and groups["backbone"]["lr"] == pytest.approx(1e-4)
    total = sum(p.numel() for g in groups.values() for p in g["params"])
    assert total == sum(p.numel() for p in net.parameters())


def test_param_groups_with_weight_decay_spare_biases_and_norms(net):
    groups = {g["name"]: g for g in net.param_groups(lr=1e-3, weight_decay=0.05)}
    assert set(groups) == {"head", "head_no_decay", "backbone", "backbone_no_decay"}
    assert groups["head_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 0.05
    assert all(p.ndim <= 1 for p in groups["backbone_no_decay"]["params"])
    optimizer = torch.optim.AdamW(list(groups.values()))
    net(torch.randn(2, 3, 32, 32)).mean().backward()
    optimizer.step()
