"""Atomic file writes: build under a temporary name beside the target, rename over it when whole.

The temporary file is created with mode 0o666 and the process umask (like open()), not
tempfile.mkstemp's private 0o600, so a finished output is readable as an ordinary file.
"""
import binascii
import contextlib
import json
import os
import shutil


def temp_path(path, suffix=""):
    """Create and return an empty, uniquely named file in ``path``'s folder (ordinary permissions)."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, ".tmp-%s-%s%s" % (os.path.basename(path),
                                                     binascii.hexlify(os.urandom(6)).decode("ascii"), suffix))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove_quietly(path):
    """Remove ``path`` if it exists (cleanup must not mask the error being raised)."""
    try:
        os.remove(path)
    except OSError:
        pass


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yield a temporary path to write; it replaces ``path`` if the block succeeds and is removed either way.

    ``suffix`` keeps the extension for writers that pick the format from the name.
    """
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)


def write_json(path, payload, sort_keys=True):
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys))


def write_text(path, text, mode=None):
    """Write ``text`` to ``path`` atomically; ``mode`` (e.g. 0o755 for a script) is set before the rename."""
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)


def write_files(contents):
    """Write {path: bytes} so that each file appears whole: all are written first, then all renamed."""
    temps = {}
    try:
        for path, data in contents.items():
            temps[path] = temp_path(path)
            with open(temps[path], "wb") as f:
                f.write(data)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            remove_quietly(tmp)


@contextlib.contextmanager
def building_folder(path, tmp):
    """Yield ``tmp``, a fresh folder to fill; it is renamed to ``path`` if the block succeeds and removed either way.

    ``tmp`` must be on the same file system as ``path``; a stale ``tmp`` from a killed run is replaced.
    """
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent)
        os.rename(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def check_writable_dir(folder):
    """Create ``folder`` if needed and prove a new file can be written there (raises OSError), before costly work."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
    remove_quietly(temp_path(os.path.join(folder, "probe")))
