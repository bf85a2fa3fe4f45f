"""Face detector comparison on astronaut-based synthetic clips with a known face box.

Each scene is H.264-encoded and decoded again (compression artefacts matter for
small faces) and detected at the resolution preprocessing uses. A hit is IoU >= 0.5
with the true box (the astronaut photo's face box moved/scaled with the frame).
Run: ``python -m export.tools.face_bench``.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

from common import cli
from common.config import hparams as hparams_lib
from common.prep import faces
from common.synthetic import astronaut as synthetic
from common.prep import video


def _true_box(frame_size, dx=0.0, dy=0.0):
    x, y, w, h = synthetic.face_geometry()["face"]
    s = frame_size / 512.0
    return np.array([x * s + dx, y * s + dy, (x + w) * s + dx, (y + h) * s + dy])


def scenes(hp, seconds=2.0, seed=7):
    """name -> (frames uint8 [N, H, W, 3], true boxes [N, 4]): the frames before compression."""
    out = {}
    for size in (160, 256):
        frames, _ = synthetic.render_clip(seed, hp, seconds, size)
        out["frame %d px" % size] = (frames, np.tile(_true_box(size), (len(frames), 1)))
    frames, _ = synthetic.render_clip(seed, hp, seconds, 320)
    rng = np.random.RandomState(seed)
    canvas = np.empty((len(frames), 360, 640, 3), np.uint8)
    boxes = np.empty((len(frames), 4))
    for i, frame in enumerate(frames):
        dx = int(round(40 + 240.0 * i / max(1, len(frames) - 1)))
        dy = 20
        page = rng.randint(90, 140, size=(360, 640, 3)).astype(np.float32)
        page[dy:dy + 320, dx:dx + 320] = frame * (0.8 + 0.3 * i / len(frames))
        page += rng.randn(*page.shape) * 6
        canvas[i] = np.clip(page, 0, 255).astype(np.uint8)
        boxes[i] = _true_box(320, dx, dy)
    out["640x360 moving, noisy"] = (canvas, boxes)
    frames, _ = synthetic.render_clip(seed, hp, seconds, 360)
    canvas = np.full((len(frames), 720, 1280, 3), 110, np.uint8)
    canvas[:, 340:700, 880:1240] = frames
    out["1280x720 small face (webcam corner)"] = (canvas, np.tile(_true_box(360, 880, 340), (len(frames), 1)))
    return out


def compare(hp, names=None, max_side=640):
    """Rows of (scene, detector, found rate, hit rate, mean IoU of hits, frames/s)."""
    names = names or sorted(faces.DETECTORS)
    cv2.setNumThreads(1)
    rows = []
    tmp = tempfile.mkdtemp(prefix="face-bench-")
    try:
        for scene, (frames, truth) in scenes(hp).items():
            path = os.path.join(tmp, "scene.mp4")
            video.write_video(frames, None, hp.fps, path)
            decoded = np.concatenate(list(video.iter_frames(path, max_side=max_side)))
            scale = float(frames.shape[2]) / decoded.shape[2]
            for name in names:
                detector = faces.make_detector(name)
                detector.reset()
                start = time.time()
                found = detector.detect(decoded)
                elapsed = time.time() - start
                found[:, :4] *= scale
                ious = np.array([faces.iou(f, t) for f, t in zip(found, truth)])
                hits = ious >= 0.5
                rows.append((scene, name, float(np.mean(~np.isnan(found[:, 0]))), float(hits.mean()), float(ious[hits].mean()) if hits.any() else 0.0,
                             len(decoded) / elapsed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def format_table(rows):
    lines = ["| scene | detector | face found | hit rate (IoU>=0.5) | mean IoU of hits | frames/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for scene, name, found, hit, mean_iou, fps in rows:
        lines.append("| %s | %s | %.2f | %.2f | %.2f | %.1f |" % (scene, name, found, hit, mean_iou, fps))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.tools.face_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="hparams preset: sets fps and img_size")
    args = parser.parse_args(argv)
    return cli.run(lambda: print(format_table(compare(hparams_lib.resolve(args.preset)))))


if __name__ == "__main__":
    sys.exit(main())
