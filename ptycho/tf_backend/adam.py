"""Adam with torch's update rule, for the TensorFlow training loop.

``torch.optim.Adam`` (docs/architecture.md §6) applies the bias correction to the moments and adds
``eps`` to ``sqrt(v_hat)``; Keras' Adam folds the correction into the step size, which differs
through ``eps``. This class reproduces torch exactly, so both backends take the same step from the
same gradients; it is also a handful of ops per variable, which keeps ``tf.function`` tracing of the
training step short (the Keras optimizer's graph took seconds to trace on this machine).
"""

from __future__ import annotations

from typing import Sequence

from ptycho.tf_backend.runtime import tf

__all__ = ["TorchAdam"]


class TorchAdam:
    """``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``. No weight decay, no amsgrad."""

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        learning_rate: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate: invalid value {learning_rate!r}; expected a number > 0")
        self.variables = list(variables)
        self.learning_rate = float(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"adam_m_{i}") for i, v in enumerate(self.variables)]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"adam_v_{i}") for i, v in enumerate(self.variables)]

    def apply_gradients(self, gradients: Sequence[tf.Tensor]) -> None:
        """One step over all variables (call inside or outside ``tf.function``)."""
        t = tf.cast(self.step.assign_add(1), tf.float32)
        correction_1 = 1.0 - tf.pow(self.beta_1, t)
        correction_2 = 1.0 - tf.pow(self.beta_2, t)
        for var, grad, m, v in zip(self.variables, gradients, self.m, self.v):
            if grad is None:
                continue
            m.assign(self.beta_1 * m + (1.0 - self.beta_1) * grad)
            v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad))
            # torch's arithmetic order: denom = sqrt(v) / sqrt(c2) + eps; w -= (lr / c1) * m / denom
            denom = tf.sqrt(v) / tf.sqrt(correction_2) + self.epsilon
            var.assign_sub((self.learning_rate / correction_1) * m / denom)
