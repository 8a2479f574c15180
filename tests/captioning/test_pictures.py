"""synesthesia.pictures: heatmap overlays and contact sheets (numpy + Pillow only)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from synesthesia.pictures import attention_overlay, colourise, contact_sheet, heatmap_overlay, png_bytes, upsample

IMAGE = np.full((64, 48, 3), 128, np.uint8)


def test_overlay_is_brightest_where_the_map_peaks():
    heat = np.zeros((8, 8), np.float32)
    heat[2, 5] = 1.0  # cell (row 2, column 5) of an 8x8 grid over 64 rows x 48 columns
    out = attention_overlay(IMAGE, heat, alpha=0.6)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    brightness = out.astype(int).sum(-1)
    y, x = np.unravel_index(brightness.argmax(), brightness.shape)
    assert 2 * 8 <= y < 3 * 8 and 5 * 6 <= x < 6 * 6
    assert brightness[60, 2] < brightness[y, x]


def test_alpha_zero_is_the_image_and_flat_maps_do_not_fail():
    heat = np.random.default_rng(0).random((8, 8))
    np.testing.assert_array_equal(attention_overlay(IMAGE, heat, alpha=0.0), IMAGE)
    flat = attention_overlay(IMAGE, np.ones((4, 4)), alpha=0.5)
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) == 1


def test_full_resolution_heatmaps_and_greyscale_images():
    heat = np.zeros((64, 48))
    heat[10:20, 30:40] = 1.0
    out = heatmap_overlay(IMAGE[..., 0], heat)
    assert out.shape == (64, 48, 3)
    assert out[15, 35].sum() > out[50, 5].sum()


def test_upsample_is_bilinear_and_colourise_is_monotonic_in_brightness():
    up = upsample(np.array([[0.0, 1.0]], np.float32), 1, 8)
    assert np.all(np.diff(up[0]) >= 0) and up[0, 0] < 0.2 and up[0, -1] > 0.8
    ramp = colourise(np.linspace(0, 1, 11)).astype(int).sum(-1)
    assert np.all(np.diff(ramp) > 0)


def test_contact_sheet_layout():
    tiles = [np.full((20, 30, 3), v, np.uint8) for v in (0, 80, 160, 240, 40)]
    sheet = contact_sheet(tiles, ["a", "red", "circle", "on", "left"], columns=2, scale=2)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert sheet.shape[1] > 2 * 60 and sheet.shape[0] > 3 * 40  # 2 columns, 3 rows of 60x40 tiles
    assert (sheet == 0).all(-1).sum() >= 60 * 40  # the black tile is there, scaled
    assert png_bytes(sheet)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [
    lambda: attention_overlay(IMAGE, np.zeros((8, 8)), alpha=1.5),
    lambda: attention_overlay(IMAGE.astype(np.float32), np.zeros((8, 8))),
    lambda: attention_overlay(IMAGE, np.zeros(8)),
    lambda: contact_sheet([IMAGE], ["a", "b"]),
    lambda: contact_sheet([], []),
])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        bad()


def test_needs_no_torch():
    code = ("import sys, numpy as np; import synesthesia.pictures as p; "
            "p.attention_overlay(np.zeros((8, 8, 3), np.uint8), np.eye(2)); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
