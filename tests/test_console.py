"""A clean console: no warning from the suite's own use of Keras, progress lines that stand out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tfbench.implementations import build
from tfbench.implementations.interface import OptimizerSpec, TrainConfig


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_keras_fit_epochs_end_without_running_out_of_data(steps_per_call):
    # 200 examples in batches of 32: 7 batches an epoch, the last one short. fit() used to find each epoch's
    # end by a failing extra call: a "ran out of data" warning per epoch and, with K = 1, one optimizer step
    # counted too many per epoch (Adam's bias correction then drifts from every other approach).
    rng = np.random.default_rng(3)
    x = rng.random((200, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 200).astype(np.int32)
    config = TrainConfig(optimizer=OptimizerSpec("adam", 1e-3), steps_per_call=steps_per_call)
    trainer = build("keras_fit", "mlp", config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(x, y, epochs=3, batch_size=32, seed=5)
    assert [str(w.message) for w in caught if "ran out of data" in str(w.message)] == []
    assert int(trainer.model.optimizer.iterations) == 3 * 7
    reference = build("custom_tape", "mlp", config)
    reference.fit(x, y, epochs=3, batch_size=32, seed=5)
    for index, (mine, theirs) in enumerate(zip(trainer.get_weights(), reference.get_weights())):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6, err_msg=f"weight {index}")
