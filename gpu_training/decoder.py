"""Dynamic-length decode loop: the role tf.contrib.seq2seq.dynamic_decode played on GPUs.

The number of steps is a runtime tensor (the targets' length in training, max_iters at
inference), outputs accumulate in growable TensorArrays and the loop also stops when
every sequence is finished. Shapes inside the loop are left dynamic, which GPUs handle.
"""
from common.tf_compat import tf


def dynamic_decode_loop(cell, batch_size, max_iters, target_frames=None, teacher_forcing_ratio=None):
    batch = tf.shape(cell.memory)[0]
    if target_frames is not None:
        steps = tf.shape(target_frames)[1]
        targets_by_step = tf.TensorArray(tf.float32, size=steps).unstack(tf.transpose(target_frames, [1, 0, 2]))
    else:
        steps = tf.constant(max_iters)
    arrays = [tf.TensorArray(tf.float32, size=0, dynamic_size=True) for _ in range(2)]
    sequence = cell.begin_sequence(batch, steps, teacher_forcing=target_frames is not None)

    def cond(step, finished, *_):
        return tf.logical_and(step < steps, tf.logical_not(tf.reduce_all(finished)))

    def body(step, finished, previous_frame, state, frames_ta, align_ta):
        inputs = cell.sequence_at(sequence, step)
        frames, state = cell.step(previous_frame, state, step, inputs)
        target = targets_by_step.read(step) if target_frames is not None else None
        next_frame = cell.next_input(frames, target, teacher_forcing_ratio, inputs)
        finished = tf.logical_or(finished, tf.fill([batch], step + 1 >= steps))
        return (step + 1, finished, next_frame, state, frames_ta.write(step, frames),
                align_ta.write(step, state.alignments))

    loop_vars = ((tf.constant(0), tf.zeros([batch], tf.bool), cell.go_frame(batch), cell.zero_state(batch, steps))
                 + tuple(arrays))
    result = tf.while_loop(cond, body, loop_vars)
    cell.end_sequence(result[3])
    frames, alignments = [tf.transpose(ta.stack(), [1, 0, 2]) for ta in result[4:]]
    return frames, alignments
