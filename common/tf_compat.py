"""The one place TensorFlow is imported: the TF1 graph API on TensorFlow 1.15 and 2.x alike.

Code for the device images (TF 1.15) also runs on workstations with TF 2.15 through
``tensorflow.compat.v1`` with v2 behaviour (eager, resource variables, v2 control flow) disabled,
so every module does ``from common.tf_compat import tf`` and uses only TF 1.15 names.
``RewriterConfig`` (grappler switches such as remapping and auto mixed precision) has no public
``tf.`` name, nor has ``timeline`` (step traces as chrome-trace JSON, for the profile tool); both are
re-exported from here so that no other module imports TensorFlow directly.
"""
import logging
import os

# TensorFlow's deprecation notices are about the TF1 names the images need: keep them off every console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)

import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig
from tensorflow.python.client import timeline

tf.disable_v2_behavior()

__all__ = ["RewriterConfig", "tf", "timeline"]
