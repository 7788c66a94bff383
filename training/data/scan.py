"""What a data source holds before anything is written: classes and counts per split, colour modes, sizes.

`prepare_data.py` reports it and decides the channel count from it (`--channels auto`); the pipeline's
pre-flight check (`training.study.preflight`) reads it to validate every stage's config against data
that is not prepared yet. Every source makes one (training.data.sources): image folders by decoding
each file once, array sources from the arrays, the demo from its recipe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from training.data.images import high_bit_top

FAINT_COLOUR = 8            # channel differences of at most this many levels: a tint, not a colour image (rule of thumb)
BAND_SHARE_GAP = 0.2        # classes whose shares of padded images differ this much get a warning (rule of thumb)
GAN_SIZE_RANGE = (24, 128)  # the image sizes the DCGAN family learns (gan/config.py checks), each at its own size
_CHUNK = 1024               # images per vectorised colour check, so a large array needs no N x H x W temporary


@dataclass(frozen=True)
class SourceScan:
    """A source's content as prepare_data.py will split it (before duplicates or leaks are left out).

    Attributes:
        counts: split -> class -> images, e.g. {'train': {'healthy': 72, 'tumour': 105}, ...}.
        modes: the colour mode images are stored in ('L', 'RGB', 'P', ...) -> images.
        colour: images whose content is colour (an RGB image whose R, G and B differ somewhere).
        sizes: (class, width, height) -> images, as stored in the source.
        first_colour: where the first colour image is, for messages ('' when there is none).
        high_bit: grey images stored with more than 8 bits per pixel (16-bit PNG or TIFF).
        high_bit_peak: their largest value; every one of them is scaled to 8 bits by one factor from it.
        faint_colour: colour images whose channels differ by at most FAINT_COLOUR levels anywhere (a tint).
    """

    counts: dict[str, dict[str, int]]
    modes: dict[str, int]
    colour: int
    sizes: dict[tuple[str, int, int], int] = field(default_factory=dict)
    first_colour: str = ""
    high_bit: int = 0
    high_bit_peak: int = 0
    faint_colour: int = 0

    @property
    def classes(self) -> list[str]:
        return sorted({c for per_class in self.counts.values() for c in per_class})

    @property
    def total(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())


def colour_flags(images: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the uint8 (N, H, W[, 3]) images hold colour (R, G, B not all equal)."""
    if images.ndim != 4:
        return np.zeros(len(images), dtype=bool)
    out = np.empty(len(images), dtype=bool)
    for start in range(0, len(images), _CHUNK):
        x = images[start:start + _CHUNK]
        grey = (x[..., 0] == x[..., 1]).all(axis=(1, 2)) & (x[..., 0] == x[..., 2]).all(axis=(1, 2))
        out[start:start + _CHUNK] = ~grey
    return out


def array_scan(parts: Iterable[tuple[str, np.ndarray, list[str]]], where: str) -> SourceScan:
    """The scan of array sources: (split, uint8 images (N, H, W[, 3]), class name of each image) per part."""
    counts: dict[str, Counter] = {}
    modes, sizes, colour, first = Counter(), Counter(), 0, ""
    for split, images, names in parts:
        counts.setdefault(split, Counter()).update(names)
        if not len(names):
            continue
        modes["RGB" if images.ndim == 4 else "L"] += len(names)
        h, w = images.shape[1:3]
        sizes.update((name, int(w), int(h)) for name in names)
        flags = colour_flags(images)
        if flags.any() and not first:
            first = f"{where}:{split}[{int(np.argmax(flags))}]"
        colour += int(flags.sum())
    return SourceScan({s: dict(sorted(c.items())) for s, c in counts.items()}, dict(modes), colour, dict(sizes), first)


def resolve_channels(requested: int | None, scan: SourceScan) -> tuple[int, str]:
    """The channel count the processed dataset gets, and the line that says why.

    auto (None): grey when every image is grey in content (R = G = B), whatever its file mode, so one
    colour-free RGB file among grey ones does not make a grey modality RGB; RGB when any image holds
    colour, since colour is never thrown away unasked. An explicit 1 or 3 is followed and says what it cost.
    """
    n = scan.total
    if requested is None:
        if scan.colour == 0:
            return 1, ("channels: 1 (grey): every image is grey in content (R = G = B), whatever its file mode "
                       "(--channels auto)")
        faint = (f"; {scan.faint_colour} of them only faintly (channels within {FAINT_COLOUR} of 255 levels "
                 "everywhere): a grey modality with a scanner's tint? --channels 1 keeps it grey"
                 if scan.faint_colour else "")
        return 3, (f"channels: 3 (RGB): {scan.colour} of {n} image(s) hold colour (first: {scan.first_colour}) "
                   f"(--channels auto; --channels 1 makes them grey){faint}")
    if requested == 1:
        lost = f"; {scan.colour} colour image(s) made grey by luma (ITU-R 601)" if scan.colour else ""
        return 1, f"channels: 1 (grey), as --channels 1 asks{lost}"
    grey = n - scan.colour
    return 3, "channels: 3 (RGB), as --channels 3 asks" + (
        f"; {grey} grey image(s) repeat their one channel" if grey else "")


def format_modes(scan: SourceScan) -> str:
    """'colour modes: RGB 133, L 120 (grey in content: 253 of 253)'."""
    modes = ", ".join(f"{m} {n}" for m, n in sorted(scan.modes.items(), key=lambda kv: (-kv[1], kv[0])))
    line = f"colour modes: {modes or 'none'} (grey in content: {scan.total - scan.colour} of {scan.total})"
    if scan.high_bit:
        top = high_bit_top(scan.high_bit_peak)
        line += (f"; {scan.high_bit} image(s) of more than 8 bits, largest value {scan.high_bit_peak:,}: each "
                 f"scaled by 255 / {top:,} ({top.bit_length()} bits), one factor for all, so brightness stays comparable")
    return line


def size_summary(scan: SourceScan) -> dict:
    """Distinct sizes, width and height ranges, and the non-square images per class."""
    if not scan.sizes:
        return {"distinct": 0, "width": None, "height": None, "not_square": {}}
    widths = [w for _, w, _ in scan.sizes]
    heights = [h for _, _, h in scan.sizes]
    not_square: Counter = Counter()
    for (name, w, h), n in scan.sizes.items():
        if w != h:
            not_square[name] += n
    return {"distinct": len({(w, h) for _, w, h in scan.sizes}), "width": [min(widths), max(widths)],
            "height": [min(heights), max(heights)], "not_square": dict(sorted(not_square.items()))}


def _span(lo_hi: list[int]) -> str:
    lo, hi = lo_hi
    return f"{lo} px" if lo == hi else f"{lo}-{hi} px"


def format_sizes(scan: SourceScan) -> str:
    """'sizes: 184 distinct, width 150-1920 px, height 168-1427 px; not square: 120 (healthy 40, tumour 80)'."""
    s = size_summary(scan)
    if not s["distinct"]:
        return "sizes: no images"
    if s["distinct"] == 1:
        head = f"sizes: all {s['width'][0]}x{s['height'][0]} px (width x height)"
    else:
        head = f"sizes: {s['distinct']} distinct, width {_span(s['width'])}, height {_span(s['height'])}"
    bad = s["not_square"]
    if not bad:
        return head + "; all square"
    return head + f"; not square: {sum(bad.values())} ({', '.join(f'{c} {n}' for c, n in bad.items())})"


def format_resize(scan: SourceScan, policy: str, image_size: int | None) -> str:
    """The resize policy in one line, said once per run, with what it does to this source."""
    not_square = sum(size_summary(scan)["not_square"].values())
    what = {"pad": "padded with black to a square (every pixel and shape kept)",
            "center_crop": "cropped to their central square (the edges are cut off)",
            "squash": "squashed to a square (shapes change with the aspect ratio)"}[policy]
    target = (f"then resized to {image_size}x{image_size} px" if image_size
              else "each keeps its own scale (no --image_size)")
    shaped = f"{not_square} non-square image(s) {what}" if not_square else "every image is square already"
    if image_size and {(w, h) for _, w, h in scan.sizes} == {(image_size, image_size)}:
        target = f"already {image_size}x{image_size} px"
    return f"resize: --resize {policy}: {shaped}; {target}"


def band_warnings(scan: SourceScan, policy: str) -> list[str]:
    """A warning when `pad` gives one class's images black bands far more often than another's: a classifier
    can then tell the classes by the bands (the frame) instead of the anatomy."""
    if policy != "pad":
        return []
    totals = {c: sum(per.get(c, 0) for per in scan.counts.values()) for c in scan.classes}
    banded = size_summary(scan)["not_square"]
    share = {c: banded.get(c, 0) / n for c, n in totals.items() if n}
    if len(share) < 2 or max(share.values()) - min(share.values()) < BAND_SHARE_GAP:
        return []
    said = ", ".join(f"{c} {share[c]:.0%}" for c in sorted(share, key=share.get, reverse=True))
    return [f"warning: --resize pad gives black bands to {said} of each class's images: a classifier can tell the "
            "classes by the bands; --resize center_crop or squash gives every class the same frame"]


def upsampling_warnings(scan: SourceScan, image_size: int | None) -> list[str]:
    """A warning line when --image_size is larger than every source image: upsampling adds no detail, and
    the GAN and every classifier pay for each added pixel (64 px costs about 4x the compute of 32 px)."""
    sides = [max(w, h) for _, w, h in scan.sizes]
    if not image_size or not sides or image_size <= max(sides):
        return []
    largest = max(sides)
    fits = max(largest, GAN_SIZE_RANGE[0]) if largest <= GAN_SIZE_RANGE[1] else None
    if fits == image_size:           # 16 px images at 24 px: the smallest size a GAN here learns
        return []
    hint = f"; --image_size {fits} keeps every pixel, and a GAN learns that size as it is" if fits else ""
    return [f"warning: every image is at most {largest} px, and --image_size {image_size} upsamples them "
            f"(no detail is added; the GAN and classifiers cost about {(image_size / largest) ** 2:.0f}x the "
            f"compute per image){hint}"]
