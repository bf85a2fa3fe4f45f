"""Static-shape, fixed-iteration decode loop for the Ascend graph compiler.

Every tensor in the loop has a fully static shape: the batch size is a Python int, the
loop runs exactly max_iters times (the window fixes the output length), outputs go to
TensorArrays of fixed size and element shape, and the teacher frame of each step is cut
with tf.slice on the static batch. The port found a naive while_loop slow on the NPU and
this form fast.
"""
from common.tf_compat import tf


def static_decode_loop(cell, batch_size, max_iters, target_frames=None, teacher_forcing_ratio=None):
    if not isinstance(batch_size, int):
        raise ValueError("the NPU decode loop needs a static batch size; feed placeholders with a fixed batch")
    hp = cell.hp
    width = hp.num_mels * hp.outputs_per_step
    time = int(cell.memory.shape[1])
    arrays = [tf.TensorArray(tf.float32, size=max_iters, element_shape=[batch_size, size])
              for size in (width, time)]
    sequence = cell.begin_sequence(batch_size, max_iters, teacher_forcing=target_frames is not None)

    def body(step, previous_frame, state, frames_ta, align_ta):
        inputs = cell.sequence_at(sequence, step)
        frames, state = cell.step(previous_frame, state, step, inputs)
        target = None
        if target_frames is not None:
            target = tf.reshape(tf.slice(target_frames, tf.stack([0, step, 0]), [batch_size, 1, hp.num_mels]),
                                [batch_size, hp.num_mels])
        next_frame = cell.next_input(frames, target, teacher_forcing_ratio, inputs)
        return (step + 1, next_frame, state, frames_ta.write(step, frames), align_ta.write(step, state.alignments))

    loop_vars = (tf.constant(0), cell.go_frame(batch_size), cell.zero_state(batch_size, max_iters)) + tuple(arrays)
    result = tf.while_loop(lambda step, *_: step < max_iters, body, loop_vars, maximum_iterations=max_iters)
    cell.end_sequence(result[2])
    frames, alignments = [tf.transpose(ta.stack(), [1, 0, 2]) for ta in result[3:]]
    return frames, alignments
