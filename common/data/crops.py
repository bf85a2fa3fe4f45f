"""Face crops: how they are cut, sized, written and read back, per crop style (preprocessing, the
synthetic speaker, GRID import, sync and the dataset all go through here, so training sees exactly
the crops that were written).

crop_style (hparams) "original", as Lip2Wav: the detector's box with its corners truncated to ints,
cut from the frame as it is (not squared, no margin) and stored at that size; read with cv2, so in
BGR order, and resized to img_size bilinearly (cv2's default). "square-margin": the box grown by
MARGIN per side, made square and kept inside the frame, resized to img_size (INTER_AREA when
shrinking, INTER_CUBIC when enlarging) when cut and read as RGB. Either is stored as
``<frame>.jpg`` holding a normal (RGB-looking) image, and the style is recorded in the data
directory (common.data.datadir names the files) so a run never reads crops of another style.
"""
import cv2
import numpy as np

from common.config import hparams
from common.data import datadir
from common.errors import Lip2WavError

ORIGINAL, SQUARE_MARGIN = hparams.CROP_STYLES
MARGIN = 0.1  # square-margin: crop = detected face box grown by this fraction per side
JPEG_QUALITY = 95  # cv2.imwrite's default, which the original uses
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"


class CropStyleError(Lip2WavError, ValueError):
    """A data directory whose crops are of another style than the run's."""


class TruncatedCropError(Lip2WavError, ValueError):
    """A crop whose JPEG stops before its end marker (cv2 would silently decode the part it has)."""


def crop_boxes(boxes, style, width, height):
    """Integer crop boxes [n, 4] (x0, y0, x1, y1) of face boxes [n, 4] in a width x height frame."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.zeros((len(boxes), 4), dtype=np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if style == ORIGINAL:
            # As the original's face_detection: np.clip(box, 0, None), then int() of each corner.
            left, top, right, bottom = (int(v) for v in np.clip([x0, y0, x1, y1], 0, None))
            right, bottom = min(max(right, left + 1), width), min(max(bottom, top + 1), height)
            out[i] = (min(left, right - 1), min(top, bottom - 1), right, bottom)
            continue
        side = int(round(max(x1 - x0, y1 - y0) * (1 + 2 * MARGIN)))
        side = max(2, min(side, width, height))
        cx = int(round((x0 + x1) / 2.0 - side / 2.0))
        cy = int(round((y0 + y1) / 2.0 - side / 2.0))
        left, top = min(max(cx, 0), width - side), min(max(cy, 0), height - side)
        out[i] = (left, top, left + side, top + side)
    return out


def resize(image, size, style):
    """``image`` as size x size pixels by the style's rule."""
    if style == ORIGINAL:
        return cv2.resize(image, (size, size))
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] >= size and image.shape[1] >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def cut(frame, box, size, style):
    """The crop (x0, y0, x1, y1) of an RGB frame as stored: as cut (original) or resized to size (square-margin)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = frame[y0:y1, x0:x1]
    return crop if style == ORIGINAL else resize(crop, size, style)


def write(folder, number, rgb, quality=JPEG_QUALITY):
    """Write crop ``number`` of a clip folder; raises OSError when it could not be written (cv2 only returns False)."""
    target = datadir.crop_path(folder, number)
    if not cv2.imwrite(target, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError("could not write %s" % target)


def read(folder, number, size, style, strict=False):
    """Crop ``number`` as uint8 [size, size, 3] in the style's channel order, or None if missing or undecodable.

    The crop is resized by the style's rule (for square-margin, one written at another img_size). A truncated
    JPEG is None too, or, with ``strict``, a TruncatedCropError (training quarantines its clip).
    """
    target = datadir.crop_path(folder, number)
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
    image = resize(image, size, style)
    return image if style == ORIGINAL else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_rgb(image, style):
    """A crop as ``read`` returned it, in RGB order (for pictures and videos people look at)."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if style == ORIGINAL else image


def truncated(data):
    """True for JPEG bytes without the end-of-image marker."""
    return data[:2].tobytes() == JPEG_START and not data[-64:].tobytes().rstrip(b"\x00\r\n ").endswith(JPEG_END)


def record_style(data_dir, style):
    """Record the crop style of ``data_dir``; a data directory already holding another style is refused."""
    recorded = datadir.recorded_style(data_dir)
    if recorded not in (None, style):
        raise CropStyleError("%s holds crops of crop_style %s; preprocess with --crop-style %s or into another "
                             "data directory" % (data_dir, recorded, recorded))
    if recorded is None:
        datadir.write_style(data_dir, style)


def check_style(data_dir, hp):
    """Refuse a data directory whose recorded crop style is not the run's (its crops would read wrongly)."""
    recorded = datadir.recorded_style(data_dir)
    if recorded is not None and recorded != hp.crop_style:
        raise CropStyleError("%s holds crops of crop_style %s but this run reads %s; use a run with "
                             "--hparams crop_style=%s, or preprocess the videos again with --crop-style %s"
                             % (data_dir, recorded, hp.crop_style, recorded, hp.crop_style))
