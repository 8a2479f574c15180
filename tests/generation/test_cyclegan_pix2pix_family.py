"""The `cyclegan-pix2pix` family in-process: reference .pth files of every layout load strictly and
translate exactly as the reference network does, at any size, whatever the batch.

The reference layouts come from tests/generation/reference_pix2pix.py (a re-statement of the
reference code, independent of the family's own modules) with tiny widths and random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models import families
from models.hf import LoadError
from models.repository import PYTORCH_CHECKPOINT, ModelEntry
from tests.generation.reference_pix2pix import (
    define_g,
    random_picture,
    reference_output,
    reflect_padded_reference,
    save,
)

# (netG, norm, dropout, ngf, a size (h, w) the network takes as it is)
LAYOUTS = [
    ("resnet_9blocks", "instance", False, 4, (48, 64)),  # CycleGAN's default
    ("resnet_6blocks", "instance", True, 3, (40, 32)),
    ("resnet_6blocks", "batch", True, 4, (32, 44)),
    ("resnet_9blocks", "none", False, 2, (16, 20)),
    ("unet_256", "batch", True, 2, (256, 256)),  # pix2pix's default
    ("unet_128", "batch", False, 2, (128, 256)),
    ("unet_128", "instance", True, 2, (128, 128)),
]
IDS = [f"{g}-{n}{'-dropout' if d else ''}" for g, n, d, _, _ in LAYOUTS]
ROUNDING = 0.5 + 1e-3  # served uint8 vs the reference's float grey levels


def entry(path, name="gan", **options) -> ModelEntry:
    return ModelEntry(name, "image-to-image", "cyclegan-pix2pix", path, options=options, origin=f"{name}.model.yaml")


def load(path, name="gan", **options):
    return families.load(entry(path, name, **options), "cpu")


def translate(model, pixels: np.ndarray) -> np.ndarray:
    return model.translate_images([Image.fromarray(pixels)])[0]


@pytest.mark.parametrize("net_g, norm, dropout, ngf, size", LAYOUTS, ids=IDS)
def test_each_layout_is_read_from_its_keys_and_translates_as_the_reference(tmp_path, net_g, norm, dropout, ngf, size):
    net = define_g(net_g, ngf, norm, dropout)
    model = load(save(net, tmp_path / "latest_net_G.pth"))
    expected_norm = "no norm" if norm == "none" else f"{norm} norm"
    resnet_dropout = ", dropout" if dropout and net_g.startswith("resnet") else ""
    assert model.details.architecture == f"{net_g} (ngf {ngf}, {expected_norm}{resnet_dropout}, 3->3 channels)"
    assert model.details.family == "cyclegan-pix2pix" and model.details.backend == PYTORCH_CHECKPOINT
    assert model.details.parameter_count == sum(p.numel() for p in net.parameters())
    assert model.details.source == str(tmp_path / "latest_net_G.pth") and len(model.details.sha256) == 64

    pixels = random_picture(*size)
    served = translate(model, pixels)
    expected = reference_output(net, pixels)
    assert served.dtype == np.uint8 and served.shape == pixels.shape
    assert np.abs(served - expected).max() <= ROUNDING
    assert served.std() > 3  # random weights still draw something, not a flat grey


@pytest.mark.parametrize("net_g, norm, dropout, ngf, size", LAYOUTS[:1] + LAYOUTS[4:5], ids=[IDS[0], IDS[4]])
@pytest.mark.parametrize("height, width", [(37, 53), (1, 1), (5, 300), (257, 130)])
def test_any_size_is_served_at_its_size_reflect_padded_to_the_multiple(tmp_path, net_g, norm, dropout, ngf, size,
                                                                       height, width):
    net = define_g(net_g, ngf, norm, dropout)
    model = load(save(net, tmp_path / "latest_net_G.pth"))
    pixels = random_picture(height, width, seed=3)
    served = translate(model, pixels)
    assert served.shape == (height, width, 3)
    # ResNet: two halvings, and the instance norms after them need more than one value (8 px -> 2x2).
    multiple, minimum = (4, 8) if net_g.startswith("resnet") else (256, 256)
    work = [max(-(-side // multiple) * multiple, minimum) for side in (width, height)]
    assert model.work_size(width, height) == tuple(work)
    assert np.abs(served - reflect_padded_reference(net, pixels, multiple, minimum)).max() <= ROUNDING


def test_batch_mates_and_repeats_never_change_an_output(tmp_path):
    # BatchNorm with running statistics and dropout in the file: eval mode makes each output its own.
    net = define_g("unet_128", 2, "batch", True)
    model = load(save(net, tmp_path / "latest_net_G.pth"))
    pictures = [Image.fromarray(random_picture(h, w, seed)) for seed, (h, w) in enumerate([(64, 64), (128, 128),
                                                                                         (30, 90), (64, 64)])]
    alone = [model.translate_images([p])[0] for p in pictures]
    together = model.translate_images(pictures)
    again = model.translate_images(pictures[::-1])[::-1]
    for a, b, c in zip(alone, together, again):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_grey_one_channel_generators_are_served(tmp_path):
    net = define_g("resnet_6blocks", 2, "instance", input_nc=1, output_nc=1)
    model = load(save(net, tmp_path / "latest_net_G.pth"))
    pixels = random_picture(24, 32)
    served = translate(model, pixels)
    grey = np.asarray(Image.fromarray(pixels).convert("L"))[..., None]
    expected = reference_output(net, grey)
    assert served.shape == (24, 32, 3) and np.array_equal(served[..., 0], served[..., 2])
    assert np.abs(served[..., :1] - expected).max() <= ROUNDING


def test_a_data_parallel_prefix_and_old_instance_norm_buffers_are_dropped_and_nothing_else(tmp_path):
    net = define_g("resnet_6blocks", 3, "instance", True)
    state = net.state_dict()
    # What a pre-0.4 CycleGAN file carries: running statistics on every instance norm.
    old = dict(state)
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            old |= {f"{name}.running_mean": torch.zeros(module.num_features),
                    f"{name}.running_var": torch.ones(module.num_features),
                    f"{name}.num_batches_tracked": torch.tensor(0)}
    assert len(old) > len(state)
    torch.save({f"module.{k}": v for k, v in old.items()}, tmp_path / "old.pth")
    pixels = random_picture(32, 32)
    assert np.abs(translate(load(tmp_path / "old.pth"), pixels) - reference_output(net, pixels)).max() <= ROUNDING

    torch.save({**state, "model.10.conv_block.2.weight_extra": torch.ones(3)}, tmp_path / "extra.pth")
    with pytest.raises(LoadError, match=r"model 'gan'.*unexpected weights: model\.10\.conv_block\.2\.weight_extra"):
        load(tmp_path / "extra.pth")


def test_a_missing_key_a_wrong_shape_or_a_pickled_object_fails_naming_the_model_and_keys(tmp_path):
    net = define_g("unet_128", 2, "batch")
    state = net.state_dict()

    torch.save({k: v for k, v in state.items() if k != "model.model.1.model.2.running_var"}, tmp_path / "missing.pth")
    with pytest.raises(LoadError, match=r"model 'pix'.*missing weights: model\.model\.1\.model\.2\.running_var"):
        load(tmp_path / "missing.pth", "pix")

    torch.save({**state, "model.model.3.bias": torch.zeros(4)}, tmp_path / "shape.pth")
    with pytest.raises(LoadError,
                       match=r"model 'pix'.*mis-shaped weights: model\.model\.3\.bias \(4,\) \(expected \(3,\)\)"):
        load(tmp_path / "shape.pth", "pix")

    torch.save(net, tmp_path / "whole_module.pth")  # the network object, not its state_dict
    with pytest.raises(LoadError, match=r"model 'pix'.*pickled object.*Unsupported global"):
        load(tmp_path / "whole_module.pth", "pix")

    torch.save({"model": state, "epoch": 3}, tmp_path / "nested.pth")
    with pytest.raises(LoadError, match=r"model 'pix'.*not tensors: epoch"):
        load(tmp_path / "nested.pth", "pix")

    torch.save({"model.1.weight": torch.zeros(4, 3, 7, 7)}, tmp_path / "no_blocks.pth")
    with pytest.raises(LoadError, match="no residual blocks"):
        load(tmp_path / "no_blocks.pth", "pix")

    # A few tensors claiming ngf 2048 (a 1-block ResNet of 1.3e9 parameters): refused before it is built.
    torch.save({"model.1.weight": torch.zeros(2048, 3, 7, 7), "model.10.conv_block.1.weight": torch.zeros(1),
                "model.18.weight": torch.zeros(3, 2048, 7, 7)}, tmp_path / "huge.pth")
    with pytest.raises(LoadError, match=r"model 'pix'.*missing weights: model\.10\.conv_block\.5\.weight"):
        load(tmp_path / "huge.pth", "pix")

    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(LoadError, match="neither a reference ResNet generator .* nor a U-Net"):
        load(tmp_path / "other.pth", "pix")


def test_options_net_g_is_checked_and_unknown_options_refused(tmp_path):
    path = save(define_g("resnet_6blocks", 2, "instance"), tmp_path / "latest_net_G_A.pth")
    assert load(path, netG="resnet_6blocks").layout.net_g == "resnet_6blocks"
    with pytest.raises(LoadError, match=r"options\.netG is 'resnet_9blocks' but .* holds a resnet_6blocks"):
        load(path, netG="resnet_9blocks")
    with pytest.raises(LoadError, match="unknown options ngf"):
        load(path, ngf=64)


@pytest.mark.parametrize("net_g, size", [("unet_128", (128, 128)), ("resnet_6blocks", (32, 48))])
def test_per_image_batch_statistics_are_test_py_without_eval_minus_dropout(tmp_path, net_g, size):
    net = define_g(net_g, 2, "batch", True)
    model = load(save(net, tmp_path / "latest_net_G.pth"), batch_statistics="per-image")
    assert "batch norm with per-image statistics" in model.details.architecture
    pixels = random_picture(*size)
    # The reference's test.py without --eval: train mode (BatchNorm on a batch of one image); its dropout,
    # random by design, is the one thing left out.
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    x = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = ((net(x)[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.float64)
    assert np.abs(translate(model, pixels) - expected).max() <= ROUNDING
    assert np.abs(translate(load(tmp_path / "latest_net_G.pth"), pixels) - expected).max() > 2  # running != per-image
    other = Image.fromarray(random_picture(*size, seed=8))
    assert np.array_equal(model.translate_images([other, Image.fromarray(pixels)])[1], translate(model, pixels))

    with pytest.raises(LoadError, match="batch_statistics is 'train'"):
        load(tmp_path / "latest_net_G.pth", batch_statistics="train")
    instance = save(define_g(net_g, 2, "instance"), tmp_path / "instance.pth")
    with pytest.raises(LoadError, match="batch_statistics applies to BatchNorm generators"):
        load(instance, batch_statistics="per-image")
