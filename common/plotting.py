"""PNG plots written at checkpoints: predicted vs target mels and attention alignments."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import atomic  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    with atomic.replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_mels(path, predicted, target=None, title=""):
    """Mels are [frames, num_mels]; the target, when given, is drawn underneath for comparison."""
    rows = 2 if target is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3 * rows), squeeze=False)
    panels = [("predicted", predicted)] + ([("target", target)] if target is not None else [])
    for ax, (name, mel) in zip(axes[:, 0], panels):
        image = ax.imshow(mel.T, aspect="auto", origin="lower", interpolation="none")
        ax.set_title(("%s %s" % (title, name)).strip())
        ax.set_xlabel("mel frame")
        ax.set_ylabel("mel band")
        fig.colorbar(image, ax=ax)
    _save(fig, path)


def plot_alignment(path, alignment, title=""):
    """Alignment is [decoder steps, encoder frames]."""
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(alignment.T, aspect="auto", origin="lower", interpolation="none")
    ax.set_title(title)
    ax.set_xlabel("decoder step")
    ax.set_ylabel("video frame")
    fig.colorbar(image, ax=ax)
    _save(fig, path)


def plot_losses(path, steps, losses, title="training loss"):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    _save(fig, path)


def plot_histogram(path, counts, xlabel, ylabel):
    """Bars of ``counts`` (value -> count), e.g. the clips' audio-video offsets."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(list(counts.keys()), list(counts.values()), width=0.8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _save(fig, path)
