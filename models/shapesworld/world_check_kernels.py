"""The out-of-world check's loops (models/shapesworld/world_check.py), compiled with numba.

The check runs for every picture a built-in is given, on the model thread. As numpy over a batch it
cost about 0.6 ms per 64 x 64 picture (some 40 array passes over a few thousand elements each, most
of their time in call overhead); as one compiled loop per picture it costs about 0.07 ms. Imported on
the first check (world_check._kernels), so processes that never check a picture do not load numba;
the built-ins' self-tests check their synthetic pictures, so a service pays numba's start-up (about
2.5 s; 15 s the first time on a machine, while it compiles into its cache) before it reports SERVING.
Both entry points are compiled on import (end of this module): a sketch2photo self-test never reaches
the palette stage, yet its first real sketch must not wait for a compile.
"""

from __future__ import annotations

import numba
import numpy as np

from models.shapesworld.world_check import (
    _BODIES, _BODY_RIMS, _FROM_BACKGROUND, BACKGROUND, BACKGROUND_TOLERANCE, BORDER_PX, DAY_MIN, FIT, FOREGROUND,
    MAX_FOREGROUND, MAX_OBJECTS, MIN_BORDER_BACKGROUND, MIN_FOREGROUND, MIN_OBJECT_PX, NIGHT_MAX, OBJECTS,
    PALETTE_TOLERANCE, PLAIN,
)


def _compiled(fn):
    """`fn` compiled by numba, without the GIL (the event loop runs while a batch is checked); cached on
    disk where numba finds a writable place (next to this file or the user's cache), else compiled once
    per process (10-15 s on 2 cores)."""
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # no writable cache directory
        return numba.njit(nogil=True)(fn)


@_compiled
def _fits(point, background, bodies, body_rims, from_background) -> bool:
    """Whether a colour lies within PALETTE_TOLERANCE of one of its scene's colour segments
    (world_check._segments)."""
    limit = PALETTE_TOLERANCE * PALETTE_TOLERANCE
    # Most object pixels sit near a body colour (a segment's end): settled without any segment.
    for k in range(bodies.shape[0]):
        d0, d1, d2 = point[0] - bodies[k, 0], point[1] - bodies[k, 1], point[2] - bodies[k, 2]
        if d0 * d0 + d1 * d1 + d2 * d2 <= limit:
            return True
    for k in range(from_background.shape[0] + bodies.shape[0]):
        if k < from_background.shape[0]:
            s0, s1, s2 = background[0], background[1], background[2]
            e0, e1, e2 = from_background[k, 0], from_background[k, 1], from_background[k, 2]
        else:
            j = k - from_background.shape[0]
            s0, s1, s2 = body_rims[j, 0], body_rims[j, 1], body_rims[j, 2]
            e0, e1, e2 = bodies[j, 0], bodies[j, 1], bodies[j, 2]
        d0, d1, d2 = e0 - s0, e1 - s1, e2 - s2
        q0, q1, q2 = point[0] - s0, point[1] - s1, point[2] - s2
        t = (q0 * d0 + q1 * d1 + q2 * d2) / max(d0 * d0 + d1 * d1 + d2 * d2, 1e-6)
        t = min(max(t, 0.0), 1.0)
        r0, r1, r2 = q0 - t * d0, q1 - t * d1, q2 - t * d2
        if r0 * r0 + r1 * r1 + r2 * r2 <= limit:
            return True
    return False


@_compiled
def fits_each(points, backgrounds, bodies, body_rims, from_background):
    out = np.zeros(points.shape[0], np.bool_)
    for n in range(points.shape[0]):
        out[n] = _fits(points[n], backgrounds[n], bodies, body_rims, from_background)
    return out


@_compiled
def _kth_smallest(histogram, k) -> int:
    seen = 0
    for value in range(histogram.shape[0]):
        seen += histogram[value]
        if seen > k:
            return value
    return histogram.shape[0] - 1


@_compiled
def _objects_in(foreground, labels, stack) -> int:
    """Separate things (4-connected, as scipy.ndimage.label's default) in a [H, W] mask with at least
    MIN_OBJECT_PX pixels; `labels` and `stack` are scratch space of the mask's size."""
    height, width = foreground.shape
    labels[:] = 0
    things = 0
    label = 0
    for y0 in range(height):
        for x0 in range(width):
            if not foreground[y0, x0] or labels[y0, x0]:
                continue
            label += 1
            labels[y0, x0] = label
            stack[0] = y0 * width + x0
            top, size = 1, 0
            while top:
                top -= 1
                y, x = divmod(stack[top], width)
                size += 1
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < height and 0 <= nx < width and foreground[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = label
                        stack[top] = ny * width + nx
                        top += 1
            if size >= MIN_OBJECT_PX:
                things += 1
    return things


@_compiled
def scene_measures(canvases, bodies, body_rims, from_background):
    """Per [SIZE, SIZE, 3] uint8 canvas, in stage order, each stage only for pictures that passed the ones
    before: the share of its border that is plain background; that background (each channel's median
    over the border); the share of the canvas off the background; the separate things on it; the share
    of those pixels that fit the palette. [B, 7] float64, NaN for stages not reached."""
    count, height, width = canvases.shape[0], canvases.shape[1], canvases.shape[2]
    out = np.full((count, 7), np.nan)
    border_count = 2 * BORDER_PX * (height + width)
    border = np.empty((border_count, 3), np.float64)
    foreground = np.zeros((height, width), np.bool_)
    labels = np.zeros((height, width), np.int32)
    stack = np.zeros(height * width, np.int64)
    point = np.empty(3, np.float64)  # one foreground pixel as float64, reused
    for i in range(count):
        canvas = canvases[i]
        # The pixels _border takes: those in the outer rows and those in the outer columns, so the
        # corners twice (in raster order here; a median and a share do not depend on it).
        n = 0
        for y in range(height):
            for x in range(width):
                in_rows = y < BORDER_PX or y >= height - BORDER_PX
                in_columns = x < BORDER_PX or x >= width - BORDER_PX
                for _ in range(int(in_rows) + int(in_columns)):
                    for c in range(3):
                        border[n, c] = canvas[y, x, c]
                    n += 1
        background = np.empty(3, np.float64)
        for c in range(3):
            histogram = np.zeros(256, np.int64)
            for m in range(border_count):
                histogram[int(border[m, c])] += 1
            # The median of an even count: the mean of the two middle values (as np.median).
            middle = border_count // 2
            background[c] = (_kth_smallest(histogram, middle - 1) + _kth_smallest(histogram, middle)) / 2.0
        plain = 0
        for m in range(border_count):
            worst = 0.0
            for c in range(3):
                worst = max(worst, abs(border[m, c] - background[c]))
            plain += worst <= BACKGROUND_TOLERANCE
        out[i, PLAIN] = plain / border_count
        if out[i, PLAIN] < MIN_BORDER_BACKGROUND:
            continue
        day = night = True
        for c in range(3):
            out[i, BACKGROUND + c] = background[c]
            day = day and background[c] >= DAY_MIN
            night = night and background[c] <= NIGHT_MAX
        if not (day or night):
            continue
        # |pixel - background| > tolerance for whole-number pixels, as integer bounds.
        above = np.floor(background + BACKGROUND_TOLERANCE)
        below = np.ceil(background - BACKGROUND_TOLERANCE)
        off = 0
        for y in range(height):
            for x in range(width):
                outside = False
                for c in range(3):
                    outside = outside or canvas[y, x, c] > above[c] or canvas[y, x, c] < below[c]
                foreground[y, x] = outside
                off += outside
        out[i, FOREGROUND] = off / (height * width)
        if not MIN_FOREGROUND <= out[i, FOREGROUND] <= MAX_FOREGROUND:
            continue
        out[i, OBJECTS] = _objects_in(foreground, labels, stack)
        if out[i, OBJECTS] > MAX_OBJECTS:
            continue
        fits = 0
        for y in range(height):
            for x in range(width):
                if foreground[y, x]:
                    for c in range(3):
                        point[c] = canvas[y, x, c]
                    fits += _fits(point, background, bodies, body_rims, from_background)
        out[i, FIT] = fits / off
    return out


# Compiled (or loaded from the cache) now, with the argument types world_check passes: C-contiguous
# uint8 canvases, float64 points and palette.
scene_measures(np.zeros((1, 8, 8, 3), np.uint8), _BODIES, _BODY_RIMS, _FROM_BACKGROUND)
fits_each(np.zeros((1, 3)), np.zeros((1, 3)), _BODIES, _BODY_RIMS, _FROM_BACKGROUND)
