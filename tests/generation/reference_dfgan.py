"""DF-GAN's released files, written as its code writes them, from tiny randomly initialised networks.

The modules below restate tobran/DF-GAN's code/models/GAN.py (NetG, NetD, NetC and their
blocks) and AttnGAN's DAMSM RNN_ENCODER line for line, independently of
models/generation/dfgan.py, so the served model is checked against the reference layout and
forward pass rather than against itself. `write_release` saves:

* `state_epoch_NNN.pth`: lib/utils.save_models' {'model': {'netG', 'netD', 'netC'},
  'optimizers': {'optimizer_G', 'optimizer_D'}, 'epoch'} (after one Adam step, so the optimizer
  states hold tensors and betas tuples as real ones do);
* `text_encoder200.pth`: the text encoder's state_dict, in torch's legacy (pre-zip) format as
  AttnGAN's 2018 files are;
* `captions_DAMSM.pickle`: [train_captions, test_captions, ixtoword, wordtoix].
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

WORDS = ["<end>", "this", "bird", "has", "a", "red", "crown", "and", "white", "belly", "small", "yellow", "wings",
         "black", "beak", "blue", "long", "tail"]


# --- code/models/GAN.py ------------------------------------------------------------------------------

class NetG(nn.Module):
    def __init__(self, ngf, nz, cond_dim, imsize, ch_size):
        super().__init__()
        self.ngf = ngf
        self.fc = nn.Linear(nz, ngf * 8 * 4 * 4)
        self.GBlocks = nn.ModuleList([])
        for in_ch, out_ch in get_G_in_out_chs(ngf, imsize):
            self.GBlocks.append(G_Block(cond_dim + nz, in_ch, out_ch, upsample=True))
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(out_ch, ch_size, 3, 1, 1), nn.Tanh())

    def forward(self, noise, c):
        out = self.fc(noise)
        out = out.view(noise.size(0), 8 * self.ngf, 4, 4)
        cond = torch.cat((noise, c), dim=1)
        for GBlock in self.GBlocks:
            out = GBlock(out, cond)
        return self.to_rgb(out)


class NetD(nn.Module):
    def __init__(self, ndf, imsize=128, ch_size=3):
        super().__init__()
        self.conv_img = nn.Conv2d(ch_size, ndf, 3, 1, 1)
        self.DBlocks = nn.ModuleList([D_Block(i, o) for i, o in get_D_in_out_chs(ndf, imsize)])


class NetC(nn.Module):
    def __init__(self, ndf, cond_dim=256):
        super().__init__()
        self.joint_conv = nn.Sequential(
            nn.Conv2d(ndf * 8 + cond_dim, ndf * 2, 3, 1, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
        )


class G_Block(nn.Module):
    def __init__(self, cond_dim, in_ch, out_ch, upsample):
        super().__init__()
        self.upsample = upsample
        self.learnable_sc = in_ch != out_ch
        self.c1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.c2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.fuse1 = DFBLK(cond_dim, in_ch)
        self.fuse2 = DFBLK(cond_dim, out_ch)
        if self.learnable_sc:
            self.c_sc = nn.Conv2d(in_ch, out_ch, 1, stride=1, padding=0)

    def shortcut(self, x):
        return self.c_sc(x) if self.learnable_sc else x

    def residual(self, h, y):
        h = self.fuse1(h, y)
        h = self.c1(h)
        h = self.fuse2(h, y)
        return self.c2(h)

    def forward(self, x, y):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2)
        return self.shortcut(x) + self.residual(x, y)


class D_Block(nn.Module):
    def __init__(self, fin, fout, downsample=True):
        super().__init__()
        self.conv_r = nn.Sequential(
            nn.Conv2d(fin, fout, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(fout, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, inplace=True))
        self.conv_s = nn.Conv2d(fin, fout, 1, stride=1, padding=0)
        self.gamma = nn.Parameter(torch.zeros(1))


class DFBLK(nn.Module):
    def __init__(self, cond_dim, in_ch):
        super().__init__()
        self.affine0 = Affine(cond_dim, in_ch)
        self.affine1 = Affine(cond_dim, in_ch)

    def forward(self, x, y=None):
        h = self.affine0(x, y)
        h = nn.LeakyReLU(0.2, inplace=True)(h)
        h = self.affine1(h, y)
        return nn.LeakyReLU(0.2, inplace=True)(h)


class Affine(nn.Module):
    def __init__(self, cond_dim, num_features):
        super().__init__()
        self.fc_gamma = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(cond_dim, num_features)), ("relu1", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(num_features, num_features))]))
        self.fc_beta = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(cond_dim, num_features)), ("relu1", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(num_features, num_features))]))

    def forward(self, x, y=None):
        weight = self.fc_gamma(y)
        bias = self.fc_beta(y)
        size = x.size()
        weight = weight.unsqueeze(-1).unsqueeze(-1).expand(size)
        bias = bias.unsqueeze(-1).unsqueeze(-1).expand(size)
        return weight * x + bias


def get_G_in_out_chs(nf, imsize):
    layer_num = int(np.log2(imsize)) - 1
    channel_nums = [nf * min(2 ** idx, 8) for idx in range(layer_num)][::-1]
    return zip(channel_nums[:-1], channel_nums[1:])


def get_D_in_out_chs(nf, imsize):
    layer_num = int(np.log2(imsize)) - 1
    channel_nums = [nf * min(2 ** idx, 8) for idx in range(layer_num)]
    return zip(channel_nums[:-1], channel_nums[1:])


# --- code/models/DAMSM.py: RNN_ENCODER ---------------------------------------------------------------

class RNN_ENCODER(nn.Module):
    def __init__(self, ntoken, ninput=300, drop_prob=0.5, nhidden=128, nlayers=1, bidirectional=True):
        super().__init__()
        self.n_steps = 18
        self.ntoken, self.ninput, self.drop_prob, self.nlayers = ntoken, ninput, drop_prob, nlayers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.nhidden = nhidden // self.num_directions
        self.encoder = nn.Embedding(self.ntoken, self.ninput)
        self.drop = nn.Dropout(self.drop_prob)
        with warnings.catch_warnings():  # torch warns that dropout does nothing with one layer, as it does there
            warnings.simplefilter("ignore", UserWarning)
            self.rnn = nn.LSTM(self.ninput, self.nhidden, self.nlayers, batch_first=True, dropout=self.drop_prob,
                               bidirectional=self.bidirectional)
        self.encoder.weight.data.uniform_(-0.1, 0.1)

    def init_hidden(self, bsz):
        weight = next(self.parameters()).data
        shape = (self.nlayers * self.num_directions, bsz, self.nhidden)
        return weight.new(*shape).zero_(), weight.new(*shape).zero_()

    def forward(self, captions, cap_lens, hidden, mask=None):
        emb = self.drop(self.encoder(captions))
        emb = pack_padded_sequence(emb, cap_lens.data.tolist(), batch_first=True)
        output, hidden = self.rnn(emb, hidden)
        output = pad_packed_sequence(output, batch_first=True)[0]
        words_emb = output.transpose(1, 2)
        sent_emb = hidden[0].transpose(0, 1).contiguous()
        sent_emb = sent_emb.view(-1, self.nhidden * self.num_directions)
        return words_emb, sent_emb


# --- lib/utils.py: the sampling path -----------------------------------------------------------------

def tokenize(wordtoix, sentence):
    """lib/utils.tokenize for one sentence (nltk's RegexpTokenizer(r'\\w+') is re.findall(r'\\w+'))."""
    sent = sentence.replace("\ufffd\ufffd", " ")
    rev = []
    for t in re.findall(r"\w+", sent.lower()):
        t = t.encode("ascii", "ignore").decode("ascii")
        if len(t) > 0 and t in wordtoix:
            rev.append(wordtoix[t])
    return rev


def sentence_embedding(text_encoder, ids):
    """lib/utils.prepare_sample_data + encode_tokens for one caption."""
    captions = torch.tensor([ids], dtype=torch.long)
    cap_lens = torch.tensor([len(ids)])
    with torch.no_grad():
        _, sent_emb = text_encoder(captions, cap_lens, text_encoder.init_hidden(1))
    return sent_emb


def reference_pngs(netG, text_encoder, wordtoix, prompt, noise, directory: Path) -> list[Path]:
    """sample.py's sample_example for one sentence, one file per image (vutils.save_image as it calls it)."""
    import torchvision.utils as vutils

    sent_emb = sentence_embedding(text_encoder, tokenize(wordtoix, prompt)).repeat(len(noise), 1)
    with torch.no_grad():
        fakes = netG(noise, sent_emb)
    paths = []
    for i, fake in enumerate(fakes):
        paths.append(directory / f"reference-{i}.png")
        vutils.save_image(fake.data, paths[-1], nrow=4, value_range=(-1, 1), normalize=True)
    return paths


# --- the release ------------------------------------------------------------------------------------

@dataclass
class Release:
    state: Path
    text_encoder: Path
    captions: Path
    netG: NetG
    encoder: RNN_ENCODER
    wordtoix: dict


def write_release(directory: Path, nf: int = 2, nz: int = 100, nhidden: int = 8, ninput: int = 6,
                  imsize: int = 256, multi_gpus: bool = False, seed: int = 0, words: list[str] = WORDS) -> Release:
    """A tiny DF-GAN release in `directory`: random networks saved in the reference layout."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ixtoword = dict(enumerate(words))
    wordtoix = {w: i for i, w in ixtoword.items()}
    encoder = RNN_ENCODER(len(wordtoix), ninput=ninput, nhidden=nhidden).eval()
    netG = NetG(nf, nz, nhidden, imsize, 3)
    # The reference initialises every affine's linear2 to the identity transform; perturb them so the
    # picture depends on the sentence, as a trained generator's does.
    for name, parameter in netG.named_parameters():
        if "linear2" in name:
            parameter.data.add_(torch.randn_like(parameter) * 0.3)
    netG.eval()
    netD, netC = NetD(nf, imsize, 3), NetC(nf, nhidden)
    optimizer_G = torch.optim.Adam(netG.parameters(), lr=0.0001, betas=(0.0, 0.9))
    optimizer_D = torch.optim.Adam(list(netD.parameters()) + list(netC.parameters()), lr=0.0004, betas=(0.0, 0.9))
    for optimizer, parameters in ((optimizer_G, netG.parameters()), (optimizer_D, netD.parameters())):
        for parameter in parameters:
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()

    def saved(module):
        state = module.state_dict()
        return OrderedDict((f"module.{k}", v) for k, v in state.items()) if multi_gpus else state

    state = {"model": {"netG": saved(netG), "netD": saved(netD), "netC": saved(netC)},
             "optimizers": {"optimizer_G": optimizer_G.state_dict(), "optimizer_D": optimizer_D.state_dict()},
             "epoch": 1220}
    release = Release(directory / "state_epoch_1220.pth", directory / "text_encoder200.pth",
                      directory / "captions_DAMSM.pickle", netG, encoder, wordtoix)
    torch.save(state, release.state)
    # The DAMSM encoders were saved by AttnGAN in 2018 (torch 0.4), before the zip format: the legacy layout.
    torch.save(encoder.state_dict(), release.text_encoder, _use_new_zipfile_serialization=False)
    train = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 8, 9]]
    test = [[4, 10, 11, 2, 12]]
    with open(release.captions, "wb") as fh:
        pickle.dump([train, test, ixtoword, wordtoix], fh, protocol=2)
    return release
