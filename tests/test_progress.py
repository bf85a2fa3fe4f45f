"""common.progress: a bar on a terminal; with output piped, a line at least every interval with count, rate and
time left, also while one step outlasts the interval; the training entrypoint's output carries them."""
import io
import threading

from tqdm import tqdm

from common import progress
from gpu_training import train as gpu_train


class FakeClock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar_and_a_pipe_gets_lines():
    assert isinstance(progress.bar(total=3, stream=Terminal()), tqdm)
    lines = progress.bar(total=3, stream=io.StringIO())
    lines.close()
    assert isinstance(lines, progress.Lines)


def test_line_has_count_rate_and_time_left_when_an_interval_has_passed():
    clock, out = FakeClock(), io.StringIO()
    bar = progress.bar(total=50, initial=10, desc="gpu train", unit="step", interval=10.0, stream=out, clock=clock)
    clock.now += 6.0
    bar.update(5)
    assert out.getvalue() == ""
    clock.now += 6.0
    bar.set_postfix(loss="0.8123")
    bar.update(5)
    # 10 steps in 12 s: 1.2 s per step, 30 steps left: 36 s (computed by hand).
    assert out.getvalue() == "gpu train: 20/50 steps, 1.20 s/step, 0:36 left, loss=0.8123\n"
    clock.now += 10.0
    bar.update(30)
    bar.close()
    # 40 steps in 22 s: 1.82 steps/s; the closing line repeats where it ended.
    assert out.getvalue().splitlines()[1:] == ["gpu train: 50/50 steps, 1.82 steps/s, 0:00 left, loss=0.8123"] * 2


def test_lines_keep_coming_while_one_step_outlasts_the_interval():
    out = io.StringIO()
    with progress.bar(total=4, desc="evaluate test", unit="clip", interval=0.05, stream=out) as bar:
        bar.update(1)
        threading.Event().wait(0.5)  # one clip that takes ten intervals
    lines = out.getvalue().splitlines()
    assert len(lines) >= 5, lines
    assert all(line.startswith("evaluate test: 1/4 clips, ") and " left" in line for line in lines), lines


def test_piped_training_prints_progress_lines(synthetic_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    code = gpu_train.main(["--data", synthetic_data, "--run-dir", str(tmp_path / "run"), "--steps", "3",
                           "--workers", "1"])
    assert code == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gpu train: ")]
    assert lines and lines[-1].startswith("gpu train: 3/3 steps, ") and "0:00 left, loss=" in lines[-1], lines
