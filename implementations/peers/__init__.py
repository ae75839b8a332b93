"""Peers of the TensorFlow styles: the same networks on Keras 3's JAX backend and in plain JAX.

Not training approaches: the registry (``implementations/__init__.py``) lists the modules of its own folder
only, so nothing here is discovered as one, and nothing here is imported unless the ``peer`` stage or its
tests ask. JAX is an optional extra (``pip install 'tf-training-bench[peers]'``); without it the JAX rows are
``unsupported`` with that command as their reason, never an import error.

* :mod:`.plain_jax`: the reference row, a ``jax.jit`` step (forward, gradient, Keras's Adam) written by hand,
  K steps per call with ``lax.scan``;
* :mod:`.keras_jax`: ``keras_fit``'s model and ``compile`` on the JAX backend (only in a process whose
  ``KERAS_BACKEND`` is ``jax``, chosen before Keras is imported: the peer stage's worker).
"""

from __future__ import annotations

import importlib.util

INSTALL = "pip install 'tf-training-bench[peers]'"
# The styles whose code is plain Keras 3, so that the same module runs on the JAX backend: keras_fit only.
# The others call tf.GradientTape, tf.Variable or tf.nn directly (implementations/*.py).
KERAS_APPROACHES = ("keras_fit",)


def jax_missing() -> str | None:
    """Why JAX cannot be used here (the install command), or None if it can; does not import it."""
    try:
        found = importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (how the tests hide it)
        found = False
    if not found:
        return f"JAX is not installed: {INSTALL} (jax[cpu]) adds it"
    return None
