"""Raw (unpreprocessed) videos of the synthetic astronaut speaker, to test the real-data pipeline.

common.synthetic writes the preprocessed layout directly; this writes what a download
would give instead: full frames with audio muxed into mp4, so preprocessing (decode,
face detection, cropping, audio extraction) runs exactly as on real videos while the
true face box stays known (common.synthetic.astronaut.face_box).
"""
import os

from common.synthetic import astronaut as synthetic
from common.prep import video


def make_raw_speaker(out_dir, hp, num_clips=4, seconds=4.0, seed=0, frame_size=synthetic.FRAME_SIZE):
    """Write ``out_dir/videos/clipNNN.mp4`` (frame_size x frame_size at hp.fps, AAC audio); resumable.

    Returns the list of video paths. The known crop box of every frame is
    ``common.synthetic.astronaut.face_box(frame_size, hp.crop_style)``.
    """
    videos = os.path.join(out_dir, "videos")
    if not os.path.isdir(videos):
        os.makedirs(videos)
    paths = []
    for i in range(num_clips):
        path = os.path.join(videos, "clip%03d.mp4" % i)
        if not os.path.isfile(path):
            frames, wav = synthetic.render_clip((seed * 1000003 + i) % 2 ** 32, hp, seconds, frame_size)
            video.write_video(frames, wav, hp.fps, path, hp.sample_rate)
        paths.append(path)
    return paths
