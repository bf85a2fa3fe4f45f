"""Offline face detectors whose weights ship inside an installed package.

The original recipe used S3FD (PyTorch weights fetched from the web); here every
detector runs with what pip installed: OpenCV's Haar cascades (cv2.data) and
dlib's HOG + linear SVM frontal detector (built into dlib-bin's wheel). All share
one batched interface so preprocessing can switch with ``--detector``.
"""
import logging

import cv2
import numpy as np
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

DEFAULT_DETECTOR = "haar_alt2+dlib"


class DetectorError(Lip2WavError, RuntimeError):
    """A detector that cannot be created here; the message names the fix."""


class NoFaceError(Exception):
    """A clip with too many frames, or too long a gap, without a face (preprocessing drops it)."""


class FaceDetector(object):
    """detect(frames uint8 [n, H, W, 3] RGB) -> float array [n, 5] of (x0, y0, x1, y1, score).

    One box per frame: the largest face; a row of NaN where no face was found. Consecutive
    frames are searched first near the previous face and at its scale (a few times cheaper
    than a full-frame scan, and it keeps to the same person); the full frame is scanned when
    that fails. Call reset() between videos.
    """

    name = None
    roi_grow = 0.75  # the search region is the last box grown by this fraction of its size per side

    def __init__(self):
        self._last = None

    def reset(self):
        self._last = None

    def detect(self, frames):
        out = np.full((len(frames), 5), np.nan, dtype=np.float64)
        for i, frame in enumerate(frames):
            box = self._near_last(frame) if self._last is not None else None
            if box is None:
                boxes = self._detect_one(frame, None, None)
                box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if len(boxes) else None
            if box is not None:
                out[i] = box
            self._last = box
        return out

    def _near_last(self, frame):
        x0, y0, x1, y1 = self._last[:4]
        size = max(x1 - x0, y1 - y0)
        grow = self.roi_grow * size
        height, width = frame.shape[:2]
        rx0, ry0 = int(max(0, x0 - grow)), int(max(0, y0 - grow))
        rx1, ry1 = int(min(width, x1 + grow)), int(min(height, y1 + grow))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return None
        boxes = self._detect_one(np.ascontiguousarray(frame[ry0:ry1, rx0:rx1]), 0.7 * size, 1.4 * size)
        if not len(boxes):
            return None
        cx, cy = (x0 + x1) / 2.0 - rx0, (y0 + y1) / 2.0 - ry0
        b = min(boxes, key=lambda b: ((b[0] + b[2]) / 2.0 - cx) ** 2 + ((b[1] + b[3]) / 2.0 - cy) ** 2)
        return (b[0] + rx0, b[1] + ry0, b[2] + rx0, b[3] + ry0, b[4])

    def _detect_one(self, frame, min_size, max_size):
        """Boxes (x0, y0, x1, y1, score) in ``frame``; sizes (pixels) bound the search when given."""
        raise NotImplementedError


class HaarDetector(FaceDetector):
    """OpenCV Viola-Jones cascade on the equalised grey frame."""

    def __init__(self, cascade="haarcascade_frontalface_default.xml", min_neighbors=5, name="haar"):
        FaceDetector.__init__(self)
        self.name = name
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + cascade)
        if self.cascade.empty():
            raise DetectorError("OpenCV cascade %s is missing; reinstall opencv-python-headless" % cascade)
        self.min_neighbors = min_neighbors

    def _detect_one(self, frame, min_size, max_size):
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        low = int(min_size) if min_size else max(20, min(gray.shape) // 24)
        high = int(max_size) if max_size else 0
        found = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors,
                                              minSize=(low, low), maxSize=(high, high))
        return [(x, y, x + w, y + h, 1.0) for (x, y, w, h) in found]


class DlibHogDetector(FaceDetector):
    """dlib's HOG frontal face detector; upsamples small frames once (it needs faces >= 80 px)."""

    name = "dlib_hog"

    def __init__(self):
        FaceDetector.__init__(self)
        try:
            import dlib
        except ImportError:
            raise DetectorError("dlib is not installed; pip install dlib-bin (see requirements.txt) "
                                "or use --detector haar")
        self.detector = dlib.get_frontal_face_detector()

    def _detect_one(self, frame, min_size, max_size):
        upsample = 1 if min(frame.shape[:2]) < 400 else 0
        rects, scores, _ = self.detector.run(np.ascontiguousarray(frame), upsample, 0.0)
        return [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]


class FallbackDetector(FaceDetector):
    """Try ``first``, then ``second`` on the frames it misses; whichever found the last face leads.

    Both share the last box, so each searches near it first (see FaceDetector).
    """

    def __init__(self, first, second, name):
        FaceDetector.__init__(self)
        self.order = [first, second]
        self.name = name

    def reset(self):
        for detector in self.order:
            detector.reset()

    def detect(self, frames):
        out = np.full((len(frames), 5), np.nan, dtype=np.float64)
        for i in range(len(frames)):
            for k, detector in enumerate(self.order):
                box = detector.detect(frames[i:i + 1])[0]
                if not np.isnan(box[0]):
                    out[i] = box
                    for other in self.order:
                        other._last = tuple(box)
                    if k:
                        self.order.insert(0, self.order.pop(k))
                    break
        return out


DETECTORS = {
    "haar": lambda: HaarDetector(),
    "haar_alt2": lambda: HaarDetector("haarcascade_frontalface_alt2.xml", min_neighbors=3, name="haar_alt2"),
    "dlib_hog": DlibHogDetector,
    "haar_alt2+dlib": lambda: FallbackDetector(DETECTORS["haar_alt2"](), DlibHogDetector(), "haar_alt2+dlib"),
}


def make_detector(name):
    """Detector by name (one of DETECTORS)."""
    if name not in DETECTORS:
        raise DetectorError("unknown detector %r; choose one of %s" % (name, ", ".join(sorted(DETECTORS))))
    return DETECTORS[name]()


def iou(a, b):
    """Intersection over union of (x0, y0, x1, y1) boxes; 0 when either is NaN."""
    if np.any(np.isnan(a[:4])) or np.any(np.isnan(b[:4])):
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def fill_boxes(boxes, fps, opts):
    """Fill NaN rows of ``boxes`` [N, 4] by interpolation and median-smooth them over time.

    Raises NoFaceError when more than ``opts.max_missing`` of the frames, or a gap longer
    than ``opts.max_gap_seconds``, lack a face. Returns (filled boxes, number of frames filled).
    """
    n = len(boxes)
    missing = np.isnan(boxes[:, 0])
    n_missing = int(missing.sum())
    if n_missing == n:
        raise NoFaceError("no face found in any of %d frames" % n)
    longest = _longest_run(missing)
    max_gap = int(round(opts.max_gap_seconds * fps))
    if n_missing > opts.max_missing * n or longest > max_gap:
        raise NoFaceError("no face in %d of %d frames (%.0f%%, longest gap %d frames; limits %.0f%%, %d)" % (
            n_missing, n, 100.0 * n_missing / n, longest, 100 * opts.max_missing, max_gap))
    filled = boxes.copy()
    if n_missing:
        have = np.flatnonzero(~missing)
        for col in range(4):
            filled[missing, col] = np.interp(np.flatnonzero(missing), have, boxes[have, col])
    k = int(opts.smooth_frames)
    if k > 1 and n > 1:
        half = k // 2
        padded = np.concatenate([np.repeat(filled[:1], half, 0), filled, np.repeat(filled[-1:], half, 0)])
        windows = np.stack([padded[i:i + n] for i in range(2 * half + 1)])
        filled = np.median(windows, axis=0)
    return filled, n_missing


def _longest_run(mask):
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best
