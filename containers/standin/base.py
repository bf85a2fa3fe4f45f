"""Build (or reuse) the stand-in base image: minimal Debian bookworm + Python 3.11 + TensorFlow 2.15 CPU.

The vendor bases (NGC TF1, AscendHub ascend-tensorflow) cannot be pulled here, so tests and CI build the
project images FROM this stand-in instead. The rootfs is made with debootstrap, TensorFlow is installed from
wheels the host's pip downloads (the chroot has neither the host's pip index nor its CA bundle), and the tarball
is kept in a cache folder so a fresh engine data-root only needs `docker import`, not a rebuild.
Run as root: `python -m containers.standin.base` prints the image tag.
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from common import cli
from common.errors import Lip2WavError

log = logging.getLogger("lip2wav.standin")

REPOSITORY = "lip2wav-standin-base"
VENV = "/opt/venv"
RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3", "python3-venv", "ca-certificates"],
    "pip": ["tensorflow-cpu==2.15.1", "numpy==1.26.4"],
    "changes": [
        "ENV PATH=%s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" % VENV,
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ],
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class StandinError(Lip2WavError, RuntimeError):
    """A missing tool or a failed step, with the fix in the message."""


def recipe_hash() -> str:
    """Short hash naming the image and tarball; changes whenever RECIPE does."""
    blob = json.dumps(RECIPE, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def image_tag() -> str:
    return "%s:%s" % (REPOSITORY, recipe_hash())


def cache_dir() -> Path:
    """$LIP2WAV_CACHE, else /var/cache/lip2wav for root, else $XDG_CACHE_HOME/lip2wav."""
    if os.environ.get("LIP2WAV_CACHE"):
        return Path(os.environ["LIP2WAV_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/lip2wav")
    return Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "lip2wav"


def download_wheels(requirements, dest: Path, python_version: str = "3.11") -> Path:
    """Fill a wheelhouse with the host's pip (binary wheels for the stand-in's CPython)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--quiet", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
           "--platform", "manylinux_2_17_x86_64", "--platform", "linux_x86_64", "--dest", str(dest)]
    for req in requirements:
        cmd += ["-r", str(req)] if Path(str(req)).is_file() else [str(req)]
    log.info("+ %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return dest


def _run(cmd):
    log.info("+ %s", " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_rootfs_tarball(tarball: Path, mirror: str) -> None:
    """debootstrap + venv with TensorFlow, packed into an uncompressed tarball (written to tmp, then renamed)."""
    if os.geteuid() != 0:
        raise StandinError("building the stand-in rootfs needs root (debootstrap, chroot): run it as root")
    if shutil.which("debootstrap") is None:
        raise StandinError("debootstrap not found: apt-get install -y debootstrap")
    work = Path(tempfile.mkdtemp(prefix="standin-", dir=str(tarball.parent)))
    try:
        rootfs = work / "rootfs"
        _run(["debootstrap", "--variant=" + RECIPE["variant"], "--include=" + ",".join(RECIPE["include"]),
              RECIPE["suite"], str(rootfs), mirror])
        wheels = download_wheels(RECIPE["pip"], tarball.parent / "wheels-base")
        staged = rootfs / "tmp" / "wheels"
        shutil.copytree(str(wheels), str(staged))
        _run(["chroot", str(rootfs), "python3", "-m", "venv", VENV])
        _run(["chroot", str(rootfs), VENV + "/bin/python", "-m", "pip", "install", "--quiet", "--no-index",
              "--no-cache-dir", "--disable-pip-version-check", "--find-links", "/tmp/wheels"] + RECIPE["pip"])
        shutil.rmtree(str(staged))
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for child in (rootfs / junk).glob("*"):
                if child.is_file():
                    child.unlink()
        partial = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "--one-file-system", "-C", str(rootfs), "-cf", str(partial), "."])
        os.replace(str(partial), str(tarball))
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def ensure_base(client=None, mirror: str = DEFAULT_MIRROR) -> str:
    """Return the stand-in tag, importing the cached tarball or building it first when needed."""
    client = client or docker.from_env(timeout=3600)
    tag = image_tag()
    try:
        client.images.get(tag)
        log.info("stand-in base %s present", tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    tarball = cache_dir() / ("standin-%s.tar" % recipe_hash())
    tarball.parent.mkdir(parents=True, exist_ok=True)
    if not tarball.exists():
        start = time.monotonic()
        build_rootfs_tarball(tarball, mirror)
        log.info("built %s in %.0f s", tarball, time.monotonic() - start)
    start = time.monotonic()
    repository, _, version = tag.partition(":")
    client.api.import_image(src=str(tarball), repository=repository, tag=version, changes=RECIPE["changes"])
    log.info("imported %s in %.0f s", tag, time.monotonic() - start)
    return tag


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=os.environ.get("LIP2WAV_DEBIAN_MIRROR", DEFAULT_MIRROR),
                        help="Debian mirror for debootstrap")
    args = parser.parse_args(argv)

    def body():
        try:
            print(ensure_base(mirror=args.mirror))
        except (subprocess.CalledProcessError, docker.errors.DockerException) as exc:
            raise StandinError(str(exc))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
