"""One target's training graph from one checkout, stepped on command; the worker of ``bench --baseline``.

Run as a script, not a module: ``python export/tools/bench_worker.py --root CHECKOUT ...`` puts
CHECKOUT first on sys.path, so the same module names load the code of another commit. It
uses only names that commit b1ad222 (the layout) and later have. Protocol, one JSON object per
line: it prints {"ready": ...} after one untimed warmup step (with the CPU kernels where that checkout's
tf_compat reports them), then answers every "step" line on stdin with that step's wall and CPU seconds,
loss and input wait, and "stop" with the peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import time


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Checkout whose code is measured.")
    parser.add_argument("--target", required=True, choices=("gpu", "npu"), help="Target: gpu or npu.")
    parser.add_argument("--preset", required=True, help="Hyperparameter preset.")
    parser.add_argument("--batch-size", type=int, default=0, help="Batch size (0: the preset's).")
    parser.add_argument("--data", required=True, help="Data directory of the synthetic speaker the bench made.")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads.")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.root))
    import importlib
    from common.config import hparams as hparams_lib
    from common.data.dataset import BatchSource
    from common import tf_compat
    from common.tf_compat import tf
    from common.training import loop as training
    backend = importlib.import_module("%s_training.train" % args.target).BACKEND

    overrides = "tacotron_batch_size=%d" % args.batch_size if args.batch_size else ""
    hp = hparams_lib.resolve(args.preset, None, overrides)
    source = BatchSource(args.data, "train", hp, hp.tacotron_batch_size, seed=hp.tacotron_random_seed,
                         workers=args.workers)
    tf.set_random_seed(hp.tacotron_random_seed)
    stack = backend.stack(backend.options)
    model = training.TrainingGraph(backend, stack, hp, source)
    fetches = {"train": model.train_op, "loss": model.losses.total}
    with tf.Session(config=stack.session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        model.feeder.start(sess)
        try:
            sess.run(fetches, feed_dict=model.feeder.feed_dict())
            _reply({"ready": True, "batch_size": hp.tacotron_batch_size,
                    "kernels": tf_compat.kernels() if hasattr(tf_compat, "kernels") else None})
            for line in sys.stdin:
                if line.strip() != "step":
                    break
                waited, cpu, began = model.feeder.wait_seconds, _cpu_seconds(), time.monotonic()
                values = sess.run(fetches, feed_dict=model.feeder.feed_dict())
                _reply({"seconds": time.monotonic() - began, "cpu_seconds": _cpu_seconds() - cpu,
                        "loss": float(values["loss"]), "wait_seconds": model.feeder.wait_seconds - waited})
        finally:
            model.feeder.stop()
    _reply({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


def _reply(payload):
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
