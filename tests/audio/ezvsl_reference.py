"""EZ-VSL as its reference code builds, saves and runs it, written here independently of
models/audio/ezvsl.py: the network of its model.py, best.pth as its train.py saves it, the test
time front end of its datasets.py and the map of its test.py. Random weights stand in for the
released ones (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import signal
from torch import nn
from torchvision import transforms
from torchvision.models import resnet18


class ReferenceEZVSL(nn.Module):
    """model.py's EZVSL: same attributes, same forward up to the (diagonal) map."""

    def __init__(self, tau: float = 0.03, dim: int = 512) -> None:
        super().__init__()
        self.tau = tau
        self.imgnet = resnet18()
        self.imgnet.avgpool = nn.Identity()
        self.imgnet.fc = nn.Identity()
        self.img_proj = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.audnet = resnet18()
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        self.audnet.fc = nn.Identity()
        self.aud_proj = nn.Linear(512, dim)

    def forward(self, image, audio):
        img = nn.functional.normalize(self.img_proj(self.imgnet(image).unflatten(1, (512, 7, 7))), dim=1)
        aud = nn.functional.normalize(self.aud_proj(self.audnet(audio)), dim=1)
        logits = torch.einsum("nchw,mc->nmhw", img, aud) / self.tau
        batch = img.shape[0]
        return logits[torch.arange(batch), torch.arange(batch)]


def random_model(seed: int = 0, dim: int = 512) -> ReferenceEZVSL:
    """Random weights, with BatchNorm statistics that are not the identity, in eval mode."""
    torch.manual_seed(seed)
    model = ReferenceEZVSL(dim=dim)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.1)
            module.bias.data.normal_(0, 0.1)
    return model.eval()


def save_best(model: ReferenceEZVSL, path: Path, **extra) -> Path:
    """best.pth as train.py writes it: the DataParallel-wrapped state dict ("module." keys), the
    optimizer's state, the epoch and numpy float64 metrics (np.mean and sklearn's auc give those)."""
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-4)
    checkpoint = {"model": wrapped.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 12,
                  "best_cIoU": np.mean(np.array([True, False, True, True])), "best_Auc": np.float64(0.625), **extra}
    torch.save(checkpoint, path)
    return path


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """get_test_dataset's image_transform."""
    transform = transforms.Compose([
        transforms.Resize((224, 224), Image.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return transform(Image.fromarray(image))


def spectrogram_tensor(samples: np.ndarray, samplerate: int = 16000, dur: float = 3.0) -> torch.Tensor:
    """load_spectrogram on decoded mono samples (its window starts at duration / 2 - dur / 2), then
    get_test_dataset's audio_transform."""
    start = max(float(len(samples) / samplerate) / 2 - dur / 2, 0)
    audio = np.asarray(samples, np.float64)[int(start * samplerate):][:int(dur * samplerate)]
    audio = np.clip(audio, -1.0, 1.0)
    if audio.shape[0] < samplerate * dur:
        n = int(samplerate * dur / audio.shape[0]) + 1
        audio = np.tile(audio, n)
    audio = audio[:int(samplerate * dur)]
    _, _, spectrogram = signal.spectrogram(audio, samplerate, nperseg=512, noverlap=274)
    spectrogram = np.log(spectrogram + 1e-7)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=[0.0], std=[12.0])])
    return transform(spectrogram)


def normalize_img(value: np.ndarray) -> np.ndarray:
    """utils.normalize_img."""
    vmin, vmax = value.min(), value.max()
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


class NormReducer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.abs().mean(self.dim)


class Unsqueeze(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.unsqueeze(self.dim)


def save_imagenet_resnet18(path: Path, seed: int = 7) -> Path:
    """What torchvision downloads for resnet18(pretrained=True): a plain state dict, fc included."""
    torch.manual_seed(seed)
    torch.save(resnet18().state_dict(), path)
    return path


def object_saliency_model(path: Path) -> nn.Module:
    """test.py's object_saliency_model, from the weights at `path`."""
    model = resnet18()
    model.load_state_dict(torch.load(path, weights_only=True))
    model.avgpool = nn.Identity()
    model.fc = nn.Sequential(nn.Unflatten(1, (512, 7, 7)), NormReducer(dim=1), Unsqueeze(1))
    return model.eval()


@torch.no_grad()
def reference_heatmap(model: ReferenceEZVSL, image: np.ndarray, samples: np.ndarray,
                      saliency: nn.Module | None = None, alpha: float = 0.4) -> np.ndarray:
    """test.py's map for one pair (pred_av, or pred_av_obj with the object saliency model),
    upsampled to the image's own size instead of 224 x 224."""
    pixels = image_tensor(image)[None].float()
    avl = model(pixels, spectrogram_tensor(samples)[None].float()).unsqueeze(1)
    avl = F.interpolate(avl, size=image.shape[:2], mode="bilinear", align_corners=True)
    pred_av = normalize_img(avl.numpy()[0, 0])
    if saliency is None:
        return pred_av
    obj = F.interpolate(saliency(pixels), size=image.shape[:2], mode="bilinear", align_corners=True)
    pred_obj = normalize_img(obj.numpy()[0, 0])
    return normalize_img(pred_av * alpha + pred_obj * (1 - alpha))
