"""Convert the frozen NPU graph into an Ascend offline model (.om) with CANN's ATC.

The command is always written to <export dir>/atc_command.sh (it cds next to the files, so the
directory can be mounted anywhere, e.g. in the CANN image) and run here only when ``atc`` is on
PATH. Flags (CANN ATC reference): --framework=3 is TensorFlow (frozen GraphDef); --input_shape
pins the static input; --out_nodes names the output tensor; --input_format=ND because the graph
holds ops with a data_format attribute (Conv3D, Conv2D), for which the ATC docs require the flag
and recommend ND; --soc_version must match the chip (``npu-smi info``: "Ascend" + chip name).
"""
import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys

from common import atomic
from common import cli
from export.freeze import ExportError, base_name

LOG = logging.getLogger("lip2wav.atc")
DEFAULT_SOC_VERSION = "Ascend910"
DEFAULT_INPUT_FORMAT = "ND"
SCRIPT_NAME = "atc_command.sh"


def atc_command(pb_path, manifest, soc_version=DEFAULT_SOC_VERSION, output=None, input_format=DEFAULT_INPUT_FORMAT):
    """The ATC argv for a frozen graph and its manifest; ``output`` is the .om path without ".om"."""
    if output is None:
        output = os.path.splitext(pb_path)[0]
    shape = ",".join(str(dim) for dim in manifest["input"]["shape"])
    return [
        "atc",
        "--model=%s" % pb_path,
        "--framework=3",
        "--output=%s" % output,
        "--soc_version=%s" % soc_version,
        "--input_format=%s" % input_format,
        "--input_shape=%s:%s" % (manifest["input"]["name"], shape),
        "--out_nodes=%s" % ";".join(out["tensor"] for out in manifest["outputs"]),
        "--log=error",
    ]


def write_script(path, command):
    """atc_command.sh: runs the exact command from the directory it lives in."""
    text = ("#!/bin/sh\n"
            "# Frozen NPU graph -> offline model. Run where CANN is installed, after sourcing\n"
            "# /usr/local/Ascend/ascend-toolkit/set_env.sh (or nnae/set_env.sh).\n"
            "set -e\n"
            "cd \"$(dirname \"$0\")\"\n"
            "%s\n" % " ".join(shlex.quote(arg) for arg in command))
    try:
        atomic.write_text(path, text, mode=0o755)
    except (IOError, OSError) as error:
        raise ExportError("cannot write %s (%s): pass a writable export directory" % (path, error.strerror or error))


def convert(export_dir, soc_version=DEFAULT_SOC_VERSION, input_format=DEFAULT_INPUT_FORMAT):
    """Write atc_command.sh for the NPU export in export_dir and run it if atc is installed.

    Returns {"command": argv, "script": path, "om": .om path, or None when atc is absent}.
    """
    name = base_name("npu")
    manifest_path = os.path.join(export_dir, name + ".json")
    if not os.path.isfile(manifest_path):
        raise ExportError("%s not found: freeze the NPU graph first (python -m export.freeze --target npu --out %s)"
                          % (manifest_path, export_dir))
    with open(manifest_path) as f:
        manifest = json.load(f)
    command = atc_command(manifest["graph"], manifest, soc_version, name, input_format)
    script = os.path.join(export_dir, SCRIPT_NAME)
    write_script(script, command)
    if shutil.which("atc") is None:
        LOG.info("atc is not on PATH: wrote %s; in the CANN image run `source /usr/local/Ascend/ascend-toolkit/"
                 "set_env.sh && sh %s` to make %s.om", script, script, name)
        return {"command": command, "script": script, "om": None}
    om_path = os.path.join(export_dir, name + ".om")
    LOG.info("running %s", " ".join(shlex.quote(arg) for arg in command))
    code = subprocess.call(command, cwd=export_dir)
    if code != 0:
        raise ExportError("atc exited with status %d (its log is above): check --soc-version against "
                          "`npu-smi info` and rerun %s" % (code, script))
    if not os.path.isfile(om_path):
        raise ExportError("atc finished but wrote no %s: rerun %s with --log=info to see why" % (om_path, script))
    return {"command": command, "script": script, "om": om_path}


def main(argv=None):
    """Entrypoint: one `error: ...` line and exit status 2 on a boundary error."""
    parser = argparse.ArgumentParser(prog="python -m export.atc", description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, help="directory holding lip2wav_npu.pb/.json (export.freeze)")
    parser.add_argument("--soc-version", default=DEFAULT_SOC_VERSION,
                        help="ATC --soc_version: 'Ascend' + the chip name `npu-smi info` shows (default %s)"
                             % DEFAULT_SOC_VERSION)
    parser.add_argument("--input-format", default=DEFAULT_INPUT_FORMAT,
                        help="ATC --input_format (default %s: the graph has data_format ops)" % DEFAULT_INPUT_FORMAT)
    args = parser.parse_args(argv)

    def body():
        result = convert(args.export_dir, args.soc_version, args.input_format)
        print(result["om"] or result["script"])
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
