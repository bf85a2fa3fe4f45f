"""Face crops: how they are cut, sized, written and read back (preprocessing, the synthetic speaker
and the dataset all go through here, so training sees exactly the crops that were written).

A crop is the detected face box grown by MARGIN per side, made square and kept inside the frame,
resized to img_size (INTER_AREA when shrinking, INTER_CUBIC when enlarging) and stored as
``<frame>.jpg``.
"""
import os

import cv2
import numpy as np

from common.errors import Lip2WavError

MARGIN = 0.1  # crop = detected face box grown by this fraction per side
JPEG_QUALITY = 95
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"


class TruncatedCropError(Lip2WavError, ValueError):
    """A crop whose JPEG stops before its end marker (cv2 would silently decode the part it has)."""


def crop_boxes(boxes, margin, width, height):
    """Square crop boxes (x0, y0, side) around face boxes, grown by ``margin`` per side, kept in the frame."""
    out = np.zeros((len(boxes), 3), dtype=np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        side = int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
        side = max(2, min(side, width, height))
        cx = int(round((x0 + x1) / 2.0 - side / 2.0))
        cy = int(round((y0 + y1) / 2.0 - side / 2.0))
        out[i] = (min(max(cx, 0), width - side), min(max(cy, 0), height - side), side)
    return out


def resize(image, size):
    """``image`` as size x size pixels; unchanged when it already is."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] >= size and image.shape[1] >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def cut(frame, box, size):
    """The crop (x0, y0, side) of an RGB frame, resized to size x size."""
    x, y, side = box
    return resize(frame[y:y + side, x:x + side], size)


def path(folder, number):
    return os.path.join(folder, "%d.jpg" % number)


def write(folder, number, rgb, quality=JPEG_QUALITY):
    """Write crop ``number`` of a clip folder; raises OSError when it could not be written (cv2 only returns False)."""
    target = path(folder, number)
    if not cv2.imwrite(target, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError("could not write %s" % target)


def read(folder, number, size, strict=False):
    """Crop ``number`` as uint8 RGB [size, size, 3], or None if missing or undecodable.

    A crop written at another img_size is resized by the same rule that cut it. A truncated
    JPEG is None too, or, with ``strict``, a TruncatedCropError (training quarantines its clip).
    """
    target = path(folder, number)
    try:
        data = np.fromfile(target, dtype=np.uint8)
    except (IOError, OSError):
        return None
    if truncated(data):
        if strict:
            raise TruncatedCropError("%s is truncated (no JPEG end marker)" % target)
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None
    return cv2.cvtColor(resize(image, size), cv2.COLOR_BGR2RGB)


def truncated(data):
    """True for JPEG bytes without the end-of-image marker."""
    return data[:2].tobytes() == JPEG_START and not data[-64:].tobytes().rstrip(b"\x00\r\n ").endswith(JPEG_END)
