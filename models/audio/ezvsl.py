"""EZ-VSL (Mo & Morgado, "Localizing Visual Sounds the Easy Way", 2022): its released `best.pth`
served as a SoundLocalizer (family `ezvsl`).

The file is what the reference training script saves: `{'model': state_dict, 'optimizer': ...,
'epoch': int, 'best_cIoU': numpy.float64, 'best_Auc': numpy.float64}`, the state dict with
DistributedDataParallel's `module.` prefix:

* `imgnet.*`: a torchvision ResNet-18 whose avgpool and fc are identities, so it returns the
  flattened 512 x 7 x 7 map of a 224 px image;
* `img_proj`: a 1x1 convolution 512 -> D;
* `audnet.*`: a ResNet-18 whose conv1 takes 1 channel (a spectrogram) and whose pooling is a
  global max (no weights), fc an identity;
* `aud_proj`: a linear layer 512 -> D.

D (512 in every released model) is read from the tensors. The front end is the reference's test
time one (its datasets.py): the image resized to 224 x 224 (bicubic) with ImageNet normalisation;
the middle 3 s of the clip at 16 kHz (a shorter clip repeated until it is 3 s long), clipped to
+-1, `scipy.signal.spectrogram(nperseg=512, noverlap=274)`, `log(S + 1e-7) / 12`. The map is
the cosine between the normalised audio vector and each cell of the normalised 7 x 7 image map,
upsampled bilinearly (align_corners, as test.py) to the image's own size and min-max normalised.
The box and peak statistics come from that map exactly as for the built-in (localize.py).

Entry options: `sample_rate_hz` (16000: the rate the released models were trained at; clips are
resampled to it) and `clip_seconds` (3.0). `object_saliency` (a path to torchvision's ImageNet
ResNet-18 weights) and `alpha` (0.4) serve test.py's "EZ-VSL + OGL" map instead:
min_max(alpha * map + (1 - alpha) * object saliency), the saliency being the mean absolute
activation of each cell of that network's 7 x 7 map, upsampled and min-max normalised the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import signal
from torch import nn

from models.audio.localize import Localization, summarise
from models.explain.targets import Target
from models.hf import LoadError
from models.repository import PYTORCH_CHECKPOINT, ModelDetails, ModelEntry, RepositoryError
from models.state_dicts import load_exactly, numpy_float64_globals, read_pth, require, state_dict_at

IMAGE_SIZE = 224
MAP_SIZE = 7  # the ResNet-18's stride-32 map of a 224 px image; the reference unflattens to exactly this
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLE_RATE_HZ = 16000
CLIP_SECONDS = 3.0
NPERSEG = 512
NOVERLAP = 274
LOG_FLOOR = 1e-7
LOG_SCALE = 12.0  # the reference's Normalize(mean=0, std=12) on the log spectrogram
FEATURES = 512  # a ResNet-18's last block
OGL_ALPHA = 0.4  # test.py's --alpha: the audio-visual map's weight against object saliency


class EZVSLNetwork(nn.Module):
    """The reference EZVSL module's layout (its attribute names are the state dict's keys)."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.imgnet = resnet18(weights=None)
        self.imgnet.avgpool = nn.Identity()
        self.imgnet.fc = nn.Identity()
        self.img_proj = nn.Conv2d(FEATURES, dim, kernel_size=(1, 1))
        self.audnet = resnet18(weights=None)
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        self.audnet.fc = nn.Identity()
        self.aud_proj = nn.Linear(FEATURES, dim)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 224, 224] normalised -> [B, D, 7, 7], unit length along D."""
        grid = self.imgnet(images).unflatten(1, (FEATURES, MAP_SIZE, MAP_SIZE))
        return nn.functional.normalize(self.img_proj(grid), dim=1)

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] scaled log spectrograms -> [B, D], unit length."""
        return nn.functional.normalize(self.aud_proj(self.audnet(spectrograms)), dim=1)


def resized_pixels(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, 224, 224] in [0, 1]: PIL bicubic resize (torchvision's Resize on
    a PIL image), then ToTensor."""
    resized = Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)


def imagenet_normalised(pixels: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] in [0, 1] -> the ImageNet Normalize."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


def image_input(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, 224, 224]: the reference's test-time image transform."""
    return imagenet_normalised(resized_pixels(image))


def clip_window(samples: np.ndarray, sample_rate: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """The reference's 3 s: the window centred in a longer clip, a shorter one repeated until it is
    long enough then cut, every sample clipped to +-1 (float64, as the reference computes)."""
    length = int(sample_rate * seconds)
    # load_spectrogram's start, in seconds and floored to a sample as its decoder trims.
    start_s = max(samples.shape[0] / sample_rate / 2 - seconds / 2, 0)
    audio = np.clip(np.asarray(samples, dtype=np.float64)[int(start_s * sample_rate):][:length], -1.0, 1.0)
    if audio.shape[0] < length:
        audio = np.tile(audio, int(length / audio.shape[0]) + 1)
    return audio[:length]


def spectrogram_input(samples: np.ndarray, sample_rate: int, seconds: float = CLIP_SECONDS) -> torch.Tensor:
    """Mono samples -> float32 [1, 257, T] (T = 200 for 3 s at 16 kHz), the reference's features."""
    _, _, power = signal.spectrogram(clip_window(samples, sample_rate, seconds), sample_rate,
                                     nperseg=NPERSEG, noverlap=NOVERLAP)
    return torch.from_numpy(np.log(power + LOG_FLOOR) / LOG_SCALE).float()[None]


def cosine_maps(network: EZVSLNetwork, images: torch.Tensor, spectrograms: torch.Tensor) -> torch.Tensor:
    """[B, 7, 7]: the cosine between each pair's audio vector and every cell of its image map."""
    return torch.einsum("bdhw,bd->bhw", network.embed_images(images), network.embed_audio(spectrograms))


def upsampled(cells: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[7, 7] -> [height, width], bilinear with align_corners as test.py."""
    return nn.functional.interpolate(cells[None, None].float(), size=(height, width), mode="bilinear",
                                     align_corners=True)[0, 0]


def min_max(values: torch.Tensor) -> torch.Tensor:
    """utils.normalize_img, except that a flat map (no location) becomes zeros, not left unscaled."""
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else torch.zeros_like(values)


def heatmap(cosine: torch.Tensor, height: int, width: int, saliency: torch.Tensor | None = None,
            alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """One [7, 7] cosine map -> ([height, width] in [0, 1], its largest upsampled cosine). With an
    object saliency map: test.py's pred_av_obj, min_max(alpha * av + (1 - alpha) * obj)."""
    up = upsampled(cosine, height, width)
    heat = min_max(up)
    if saliency is not None:
        heat = min_max(alpha * heat + (1 - alpha) * min_max(upsampled(saliency, height, width)))
    return heat.cpu().numpy(), float(up.max())


@dataclass
class EZVSLSoundTarget(Target):
    """ExplainLocalization's score for EZ-VSL: the peak cosine between the clip's vector and the cells of
    the image map, which is Localize's `peak_score` (the align_corners upsampling's maximum is a cell's).
    Images [N, 3, 224, 224] in [0, 1], ImageNet-normalised here, so that input gradients and occlusion
    act on pixels; Grad-CAM reads the image ResNet's last block (`imgnet.layer4`, 7 x 7)."""

    audio_embedding: torch.Tensor | None = None  # [D], unit length

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        cells = self.model.embed_images(imagenet_normalised(images))
        return torch.einsum("bdhw,d->bhw", cells, self.audio_embedding).flatten(1).amax(1)


def object_saliency_network(entry: ModelEntry) -> nn.Module:
    """test.py's object-guided localisation (OGL) network: torchvision's ImageNet ResNet-18 (the
    plain state dict torchvision downloads, resnet18-f37072fd.pth, loaded strictly with its fc), its
    avgpool and fc then dropped; [B, 3, 224, 224] -> [B, 7, 7], the mean |activation| per cell."""
    from torchvision.models import resnet18

    path = entry.path_option("object_saliency")
    network = load_exactly(entry.name, path, resnet18(weights=None),
                           state_dict_at(entry.name, path, read_pth(entry.name, path)))
    network.avgpool = nn.Identity()
    network.fc = nn.Unflatten(1, (FEATURES, MAP_SIZE, MAP_SIZE))
    return network


def number_option(entry: ModelEntry, key: str, default, kind):
    value = entry.option(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise RepositoryError(f"{entry.origin}: model {entry.name!r}: options.{key} is {value!r}, not a number")
    return kind(value)


class EZVSLLocalizer:
    def __init__(self, entry: ModelEntry, device) -> None:
        from models.training import sha256_file

        self.sample_rate = number_option(entry, "sample_rate_hz", SAMPLE_RATE_HZ, int)
        self.clip_seconds = number_option(entry, "clip_seconds", CLIP_SECONDS, float)
        if self.sample_rate <= 0 or self.clip_seconds * self.sample_rate < NPERSEG:
            raise RepositoryError(f"{entry.origin}: model {entry.name!r}: options sample_rate_hz and clip_seconds "
                                  f"must give a clip of at least {NPERSEG} samples")
        # One analysis window; the reference repeats a shorter clip, which would make up a tone.
        self.min_samples = NPERSEG
        checkpoint = read_pth(entry.name, entry.path, numpy_float64_globals())
        if not isinstance(checkpoint, dict):
            raise LoadError(f"model {entry.name!r}: {entry.path} is not an EZ-VSL checkpoint (a dict whose 'model' "
                            "holds the state dict, as EZ-VSL's train.py saves best.pth)")
        state = state_dict_at(entry.name, entry.path, checkpoint, ("model",))
        dim = int(require(entry.name, entry.path, state, "img_proj.weight", 4).shape[0])
        network = load_exactly(entry.name, entry.path, EZVSLNetwork(dim), state)
        self.name = entry.name
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        # Optional: test.py's EZ-VSL + OGL map, with ImageNet ResNet-18 weights the user downloads too.
        self.alpha = number_option(entry, "alpha", OGL_ALPHA, float)
        self.saliency = None
        if entry.option("object_saliency"):
            if not 0.0 <= self.alpha <= 1.0:
                raise RepositoryError(f"{entry.origin}: model {entry.name!r}: options.alpha is {self.alpha}; "
                                      "it weighs the audio-visual map against object saliency, 0..1")
            self.saliency = object_saliency_network(entry).to(self.device).eval()
        sha = sha256_file(entry.path)
        # What train.py stored beside the weights: the epoch and the best validation cIoU / AUC.
        metrics = {key: float(checkpoint[key]) for key in ("best_cIoU", "best_Auc", "epoch")
                   if isinstance(checkpoint.get(key), (int, float, np.floating, np.integer))}
        self.details = ModelDetails(
            "ezvsl", str(entry.path), sha, metrics, sum(p.numel() for p in network.parameters()), fingerprint=sha,
            architecture=f"EZ-VSL (ResNet-18 image and audio encoders, {dim}-d)"
            + (f" + object saliency (alpha {self.alpha:g})" if self.saliency is not None else ""),
            backend=PYTORCH_CHECKPOINT)

    def input_warnings(self, image: np.ndarray) -> list[str]:
        return []

    def explain_pixels(self, image: np.ndarray) -> torch.Tensor:
        """The picture as ExplainLocalization's methods take it: [1, 3, 224, 224] in [0, 1]."""
        return resized_pixels(image)[None].to(self.device)

    def explain_target(self, samples: np.ndarray) -> EZVSLSoundTarget:
        """The score ExplainLocalization explains for a clip (mono, at `sample_rate`)."""
        spectrogram = spectrogram_input(samples, self.sample_rate, self.clip_seconds)[None].to(self.device)
        with torch.no_grad():
            audio = self.network.embed_audio(spectrogram)[0]
        return EZVSLSoundTarget(self.network, self.network.imgnet.layer4, "sound", audio.detach().clone())

    def localize(self, images: list[np.ndarray], clips: list[np.ndarray]) -> list[Localization]:
        if len(images) != len(clips):
            raise ValueError("one clip per image")
        # Every clip becomes the same 3 s window, so the whole batch is one forward pass.
        pixels = torch.stack([image_input(image) for image in images]).to(self.device)
        spectrograms = torch.stack([spectrogram_input(clip, self.sample_rate, self.clip_seconds)
                                    for clip in clips]).to(self.device)
        with torch.inference_mode():
            cosine = cosine_maps(self.network, pixels, spectrograms)
            saliency = None if self.saliency is None else self.saliency(pixels).abs().mean(1)
        results = []
        for i, image in enumerate(images):
            heat, peak = heatmap(cosine[i], image.shape[0], image.shape[1],
                                 None if saliency is None else saliency[i], self.alpha)
            results.append(summarise(heat, peak))
        return results


def load(entry: ModelEntry, device) -> EZVSLLocalizer:
    return EZVSLLocalizer(entry, device)
