"""Callbacks driven directly with small synthetic log sequences and a fake model: the exact
Keras semantics of patience, min_delta, baseline, mode inference, restore_best_weights,
cooldown, min_lr; schedule formulas against closed-form values; the checkpoint rhythm
against a fake saver. One end-to-end test runs them inside the real fit loop."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from trainctl.train.callbacks import (
    Callback,
    CALLBACKS,
    CosineDecay,
    CSVLogger,
    EarlyStopping,
    ExponentialDecay,
    LinearWarmup,
    ModelCheckpoint,
    ReduceLROnPlateau,
    StepDecay,
    TerminateOnNaN,
    infer_mode,
)
from trainctl.errors import TrainctlError
from trainctl.nn import schedules


# -- a fake model and a driver that emits events as training.fit does --------------------
class FakeOptimizer:
    def __init__(self, learning_rate: float = 0.1):
        self.learning_rate = learning_rate
        self.iterations = 0
        self.params = SimpleNamespace(learning_rate=learning_rate)
        self.rates: list[float] = []  # the rate each step was taken with

    def apply(self) -> None:
        self.rates.append(self.learning_rate)
        self.iterations += 1


class FakeModel:
    """Two weights whose values are set to `epoch + 1` during each epoch, like training."""

    def __init__(self, learning_rate: float = 0.1, metrics=()):
        self.weights_ = {"dense/kernel": np.zeros((2, 2), np.float32), "dense/bias": np.zeros(2, np.float32)}
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.metrics = list(metrics)

    def get_weights(self):
        return dict(self.weights_)  # live arrays, as Sequential.get_weights

    def set_weights(self, arrays):
        for name, value in arrays.items():
            self.weights_[name][...] = value

    def kernel_value(self) -> float:
        return float(self.weights_["dense/kernel"][0, 0])


def drive(callback, model, epoch_logs, *, batches=0, batch_losses=None, params=None, initial_epoch=0):
    """Run the event sequence of fit for len(epoch_logs) epochs; returns the epochs run."""
    callback.set_model(model)
    callback.set_params(params if params is not None else {"epochs": initial_epoch + len(epoch_logs)})
    model.stop_training = False
    callback.on_train_begin({})
    ran = []
    for offset, logs in enumerate(epoch_logs):
        epoch = initial_epoch + offset
        callback.on_epoch_begin(epoch, {})
        for batch in range(batches):
            callback.on_batch_begin(batch, {"batch": batch, "size": 4})
            model.optimizer.apply()
            loss = batch_losses[offset][batch] if batch_losses else 0.5
            callback.on_batch_end(batch, {"batch": batch, "size": 4, "loss": loss})
            if model.stop_training:
                break
        for weight in model.weights_.values():
            weight[...] = epoch + 1
        logs = dict(logs)
        callback.on_epoch_end(epoch, logs)
        ran.append((epoch, logs))
        if model.stop_training:
            break
    callback.on_train_end({})
    return ran


class EventLog(Callback):
    """Records the events it receives, in order, with what each event says."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple] = []

    def on_train_begin(self, logs=None): self.events.append(("train_begin",))
    def on_train_end(self, logs=None): self.events.append(("train_end",))
    def on_epoch_begin(self, epoch, logs=None): self.events.append(("epoch_begin", epoch))
    def on_epoch_end(self, epoch, logs=None): self.events.append(("epoch_end", epoch))
    def on_batch_begin(self, batch, logs=None): self.events.append(("batch_begin", batch, logs["size"]))
    def on_batch_end(self, batch, logs=None): self.events.append(("batch_end", batch, logs["size"]))


def test_drive_replays_the_event_order_of_the_real_fit_loop():
    # The unit tests below drive callbacks with `drive`; this pins it to what fit really sends.
    from trainctl import Sequential

    model = Sequential([{"type": "dense", "units": 2, "activation": "softmax", "input_shape": [3]}], seed=0)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.zeros((8, 3), np.float32)
    y = np.tile(np.array([[1.0, 0.0]], np.float32), (8, 1))
    real = EventLog()
    model.fit(x, y, epochs=3, batch_size=4, shuffle=False, initial_epoch=1, callbacks=[real])
    replayed = EventLog()
    drive(replayed, FakeModel(), [{"loss": 1.0}, {"loss": 1.0}], batches=2, initial_epoch=1)
    assert real.events == replayed.events
    assert real.events[:3] == [("train_begin",), ("epoch_begin", 1), ("batch_begin", 0, 4)]



def losses(values, key="val_loss"):
    return [{key: v} for v in values]


# -- early_stopping ---------------------------------------------------------------------
def test_early_stopping_patience_counts_epochs_without_improvement():
    callback = EarlyStopping(monitor="loss", patience=2)
    ran = drive(callback, FakeModel(), losses([1.0, 0.9, 0.95, 0.92, 0.91, 0.5], "loss"))
    assert [epoch for epoch, _ in ran] == [0, 1, 2, 3]
    assert callback.stopped_epoch == 3 and callback.best == 0.9 and callback.best_epoch == 1
    assert callback.message == "early stopping at epoch 4: loss did not improve for 2 epochs"


def test_early_stopping_patience_zero_stops_at_first_non_improvement_but_never_at_epoch_0():
    callback = EarlyStopping(monitor="loss", patience=0)
    assert len(drive(callback, FakeModel(), losses([1.0, 0.8, 0.8, 0.1], "loss"))) == 3
    # Keras's `epoch > 0` guard: with start_from_epoch the first monitored epoch cannot stop either
    callback = EarlyStopping(monitor="loss", patience=0)
    assert len(drive(callback, FakeModel(), losses([1.0, 2.0], "loss"))) == 2


def test_early_stopping_min_delta_is_a_required_margin():
    values = [1.0, 0.95, 0.91, 0.85, 0.8]
    assert len(drive(EarlyStopping(monitor="loss", patience=2), FakeModel(), losses(values, "loss"))) == 5
    strict = EarlyStopping(monitor="loss", patience=2, min_delta=0.1)
    assert len(drive(strict, FakeModel(), losses(values, "loss"))) == 3
    assert strict.best == 1.0
    # the sign of min_delta does not matter (Keras takes its absolute value)
    assert len(drive(EarlyStopping(monitor="loss", patience=2, min_delta=-0.1), FakeModel(),
                     losses(values, "loss"))) == 3
    # exactly min_delta better is not an improvement (strict comparison)
    exact = EarlyStopping(monitor="loss", patience=1, min_delta=0.25)
    assert len(drive(exact, FakeModel(), losses([1.0, 0.75, 0.7], "loss"))) == 2


def test_early_stopping_max_mode_and_min_delta():
    callback = EarlyStopping(monitor="val_acc", patience=1, min_delta=0.05)
    ran = drive(callback, FakeModel(), [{"val_acc": v} for v in [0.5, 0.6, 0.62, 0.7]])
    assert callback.direction == "max" and len(ran) == 3 and callback.best == 0.6


def test_early_stopping_baseline_keras3_semantics():
    # Improvements that do not beat the baseline do not restart the patience counter.
    values = [1.0, 0.9, 0.95, 0.97, 0.99]
    with_baseline = EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    assert len(drive(with_baseline, FakeModel(), losses(values, "loss"))) == 3
    without = EarlyStopping(monitor="loss", patience=2)
    assert len(drive(without, FakeModel(), losses(values, "loss"))) == 4
    # once the baseline is beaten, counting is as usual
    beaten = EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    assert len(drive(beaten, FakeModel(), losses([0.4, 0.45, 0.46, 0.3], "loss"))) == 3


def test_early_stopping_start_from_epoch_ignores_warmup_epochs():
    callback = EarlyStopping(monitor="loss", patience=0, start_from_epoch=2)
    ran = drive(callback, FakeModel(), losses([1.0, 2.0, 3.0, 2.5, 2.6], "loss"))
    assert len(ran) == 5 and callback.stopped_epoch == 4 and callback.best == 2.5
    assert len(drive(EarlyStopping(monitor="loss", patience=0), FakeModel(),
                     losses([1.0, 2.0, 3.0, 2.5, 2.6], "loss"))) == 2


def test_early_stopping_restores_best_weights_when_stopped():
    model = FakeModel()
    callback = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    ran = drive(callback, model, losses([1.0, 0.5, 0.7, 0.8, 0.1]))
    assert len(ran) == 4 and callback.best_epoch == 1
    assert model.kernel_value() == 2.0  # the weights at the end of epoch 1
    assert np.all(model.weights_["dense/bias"] == 2.0)
    assert callback.message.endswith("restored the weights of epoch 2")


def test_early_stopping_restores_best_weights_at_end_of_training_without_stop():
    model = FakeModel()
    callback = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    assert len(drive(callback, model, losses([1.0, 0.5, 0.7]))) == 3
    assert callback.stopped_epoch == 0 and model.kernel_value() == 2.0


def test_early_stopping_restore_uses_first_epoch_when_nothing_improves():
    model = FakeModel()
    callback = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    assert len(drive(callback, model, losses([1.0, 2.0, 3.0]))) == 2
    assert model.kernel_value() == 1.0


def test_early_stopping_without_restore_keeps_last_weights():
    model = FakeModel()
    drive(EarlyStopping(monitor="val_loss", patience=1), model, losses([1.0, 2.0, 3.0]))
    assert model.kernel_value() == 2.0


def test_early_stopping_state_round_trip_matches_uninterrupted_run():
    values = [1.0, 0.5, 0.7, 0.6, 0.8, 0.9, 0.2]
    whole = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model = FakeModel()
    ran_whole = drive(whole, model, losses(values))
    first = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    first_model = FakeModel()
    drive(first, first_model, losses(values[:3]))
    state, arrays = first.get_state()  # the Callback contract: JSON values and named arrays
    assert set(arrays) == {f"best_weights/{name}" for name in first.best_weights}
    resumed = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    resumed.set_state(state, {k: v.copy() for k, v in arrays.items()})
    resumed_model = FakeModel()
    ran_rest = drive(resumed, resumed_model, losses(values[3:]), initial_epoch=3)
    assert (resumed.stopped_epoch, resumed.best, resumed.best_epoch) == \
        (whole.stopped_epoch, whole.best, whole.best_epoch) == (4, 0.5, 1)
    assert len(ran_whole) == 3 + len(ran_rest)
    assert resumed_model.kernel_value() == model.kernel_value() == 2.0


@pytest.mark.parametrize("monitor, expected", [
    ("val_loss", "min"), ("loss", "min"), ("val_acc", "max"), ("accuracy", "max"),
    ("val_binary_accuracy", "max"), ("mse", "min"), ("val_mean_absolute_error", "min"),
])
def test_mode_auto_is_inferred_from_the_monitor_name(monitor, expected):
    assert infer_mode("auto", monitor) == expected
    assert infer_mode("max", monitor) == "max" and infer_mode("min", monitor) == "min"


def test_mode_auto_follows_a_compiled_metrics_declared_direction():
    precision = SimpleNamespace(log_key="precision", name="precision", greater_is_better=True)
    model = FakeModel(metrics=[precision])
    assert infer_mode("auto", "val_precision", model) == "max"
    # Without the compiled metric the name decides: precision, recall, auc, r2 are maximised
    # as accuracy is (Keras); issue 9 fixed "min" here.
    assert infer_mode("auto", "val_precision") == "max"
    assert infer_mode("auto", "recall") == infer_mode("auto", "val_auc") == infer_mode("auto", "r2") == "max"
    assert infer_mode("auto", "val_mae") == infer_mode("auto", "val_mean_squared_error") == "min"


def test_monitor_that_is_never_logged_is_an_error():
    params = {"epochs": 3, "metrics": ["loss", "acc"], "do_validation": False}
    with pytest.raises(TrainctlError, match=r"callbacks.early_stopping.monitor: 'val_loss' needs validation data"):
        drive(EarlyStopping(), FakeModel(), losses([1.0]), params=params)
    with pytest.raises(TrainctlError, match=r"'val_lose' is not logged; available: loss, acc, val_loss, val_acc"):
        drive(EarlyStopping(monitor="val_lose"), FakeModel(), losses([1.0]), params={**params, "do_validation": True})


# -- reduce_lr_on_plateau ------------------------------------------------------------------
def rates_after(callback, model, values, key="val_loss"):
    ran = drive(callback, model, losses(values, key))
    return [logs["lr"] for _, logs in ran], model.optimizer.learning_rate


def test_reduce_lr_on_plateau_patience_and_factor():
    model = FakeModel(learning_rate=0.1)
    callback = ReduceLROnPlateau(factor=0.5, patience=2)
    logged, final = rates_after(callback, model, [1.0] * 7)
    # logs carry the rate each epoch ran with, before that epoch's reduction (Keras)
    assert logged == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert final == pytest.approx(0.0125)
    assert [epoch for epoch, _ in callback.reductions] == [2, 4, 6]


def test_reduce_lr_on_plateau_min_delta():
    model = FakeModel()
    # 0.99995 is within min_delta=1e-4 of 1.0: not an improvement
    callback = ReduceLROnPlateau(patience=1, factor=0.5)
    rates_after(callback, model, [1.0, 0.99995])
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    model = FakeModel()
    rates_after(ReduceLROnPlateau(patience=1, factor=0.5), model, [1.0, 0.9998])
    assert model.optimizer.learning_rate == 0.1


def test_reduce_lr_on_plateau_cooldown():
    model = FakeModel()
    callback = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    rates_after(callback, model, [1.0] * 9)
    assert [epoch for epoch, _ in callback.reductions] == [2, 5, 8]


def test_reduce_lr_on_plateau_min_lr_is_a_floor():
    model = FakeModel(learning_rate=0.1)
    callback = ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.005)
    logged, final = rates_after(callback, model, [1.0] * 5)
    assert logged == pytest.approx([0.1, 0.1, 0.01, 0.005, 0.005])
    assert final == 0.005 and len(callback.reductions) == 2


def test_reduce_lr_on_plateau_max_mode_resets_on_improvement():
    model = FakeModel()
    callback = ReduceLROnPlateau(monitor="val_acc", factor=0.5, patience=2)
    rates_after(callback, model, [0.5, 0.5, 0.6, 0.6, 0.6], key="val_acc")
    assert callback.direction == "max" and [e for e, _ in callback.reductions] == [4]


def test_reduce_lr_on_plateau_refuses_factor_of_one_or_more():
    params = CALLBACKS.get("reduceLROnPlateau").Params
    with pytest.raises(ValidationError):
        params.model_validate({"factor": 1.0})
    with pytest.raises(ValueError):
        ReduceLROnPlateau(factor=1.5)
    assert params.model_validate({"minLr": 1e-5, "minDelta": 0.0}).min_lr == 1e-5


# -- schedules -------------------------------------------------------------------------------
def schedule_rates(callback, learning_rate=0.1, epochs=1, batches=10):
    model = FakeModel(learning_rate)
    drive(callback, model, [{} for _ in range(epochs)], batches=batches)
    return model.optimizer.rates


def test_exponential_decay_matches_the_keras_formula():
    rates = schedule_rates(ExponentialDecay(decay_steps=4, decay_rate=0.5, initial_learning_rate=0.2), batches=9)
    assert rates == pytest.approx([0.2 * 0.5 ** (step / 4) for step in range(9)])
    assert rates[4] == pytest.approx(0.1) and rates[8] == pytest.approx(0.05)
    stairs = schedule_rates(ExponentialDecay(decay_steps=4, decay_rate=0.5, staircase=True,
                                             initial_learning_rate=0.2), batches=9)
    assert stairs == pytest.approx([0.2] * 4 + [0.1] * 4 + [0.05])


def test_cosine_decay_matches_the_keras_formula():
    assert schedules.cosine_decay(0, 1.0, 100, 0.1) == 1.0
    assert schedules.cosine_decay(50, 1.0, 100, 0.1) == pytest.approx(0.55)
    assert schedules.cosine_decay(25, 1.0, 100, 0.1) == pytest.approx(0.45 * (1 + math.sqrt(0.5)) + 0.1)
    assert schedules.cosine_decay(100, 1.0, 100, 0.1) == pytest.approx(0.1)
    assert schedules.cosine_decay(250, 1.0, 100, 0.1) == pytest.approx(0.1)  # flat after decay_steps
    rates = schedule_rates(CosineDecay(decay_steps=8), learning_rate=0.4, batches=10)
    expected = [0.4 * 0.5 * (1 + math.cos(math.pi * min(s, 8) / 8)) for s in range(10)]
    assert rates == pytest.approx(expected) and rates[-1] == 0.0


def test_decay_with_warmup_rises_linearly_then_decays_from_the_peak():
    callback = CosineDecay(decay_steps=100, alpha=0.1, initial_learning_rate=1.0, warmup_steps=10)
    assert [callback.rate(s) for s in (0, 5, 9)] == pytest.approx([0.0, 0.5, 0.9])
    assert callback.rate(10) == pytest.approx(1.0)
    assert callback.rate(60) == pytest.approx(0.55)
    assert callback.rate(500) == pytest.approx(0.1)
    exp = ExponentialDecay(decay_steps=10, decay_rate=0.5, initial_learning_rate=0.2, warmup_steps=4,
                           warmup_initial_learning_rate=0.04)
    assert [exp.rate(s) for s in (0, 2, 4, 14)] == pytest.approx([0.04, 0.12, 0.2, 0.1])


def test_step_decay_by_epochs_and_by_steps():
    model = FakeModel(1.0)
    callback = StepDecay(step_size=2, factor=0.5)
    drive(callback, model, [{} for _ in range(5)], batches=2)
    assert model.optimizer.rates == pytest.approx([1.0] * 4 + [0.5] * 4 + [0.25] * 2)
    by_steps = schedule_rates(StepDecay(step_size=3, factor=0.1, unit="steps", initial_learning_rate=1.0),
                              batches=7)
    assert by_steps == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01])


def test_schedule_defaults_to_the_optimizers_configured_rate_and_logs_lr():
    model = FakeModel(0.3)
    ran = drive(ExponentialDecay(decay_steps=1, decay_rate=0.5), model, [{}], batches=3)
    assert model.optimizer.rates == pytest.approx([0.3, 0.15, 0.075])
    assert ran[0][1]["lr"] == pytest.approx(0.075)


def test_schedule_follows_the_global_step_across_resume():
    whole = schedule_rates(CosineDecay(decay_steps=12, initial_learning_rate=1.0), epochs=3, batches=4)
    model = FakeModel(1.0)
    model.optimizer.iterations = 8  # restored optimizer state after two epochs
    drive(CosineDecay(decay_steps=12, initial_learning_rate=1.0), model, [{}], batches=4, initial_epoch=2)
    assert model.optimizer.rates == pytest.approx(whole[8:])


def test_linear_warmup_hands_over_to_the_base_rate():
    model = FakeModel(0.8)
    callback = LinearWarmup(warmup_steps=4)
    callback.set_model(model)
    callback.set_params({})
    callback.on_train_begin({})
    seen = []
    for step in range(7):
        if step == 5:
            model.optimizer.learning_rate = 0.123  # e.g. reduce_lr_on_plateau acting after warmup
        callback.on_batch_begin(step, {})
        seen.append(model.optimizer.learning_rate)
        model.optimizer.apply()
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.123, 0.123])


def test_linear_warmup_from_a_start_rate_to_an_explicit_target():
    model = FakeModel(0.05)
    drive(LinearWarmup(warmup_steps=2, initial_learning_rate=0.1, target_learning_rate=0.5), model, [{}],
          batches=4)
    # after the handover at step 2 the rate is left where the warmup put it
    assert model.optimizer.rates == pytest.approx([0.1, 0.3, 0.5, 0.5])


# -- csv_logger ------------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    callback = CSVLogger(filename="log.csv")
    callback.base_dir = tmp_path
    drive(callback, FakeModel(), [{"loss": 0.5, "acc": 0.25, "val_loss": 0.75, "val_acc": 0.125},
                                  {"loss": 0.25, "acc": 0.5, "val_loss": 0.5, "val_acc": 0.5}])
    assert (tmp_path / "log.csv").read_text() == (
        "epoch,acc,loss,val_acc,val_loss\n0,0.25,0.5,0.125,0.75\n1,0.5,0.25,0.5,0.5\n")


def test_csv_logger_append_separator_and_missing_values(tmp_path):
    path = tmp_path / "log.tsv"
    params = {"epochs": 2, "do_validation": True}
    drive(CSVLogger(str(path), separator="\t"), FakeModel(), [{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.75}],
          params=params)
    drive(CSVLogger(str(path), separator="\t", append=True), FakeModel(), [{"loss": 0.25, "val_loss": 0.5}],
          params=params, initial_epoch=2)
    assert path.read_text().splitlines() == [
        "epoch\tloss\tval_loss", "0\t1.0\tNA", "1\t0.5\t0.75", "2\t0.25\t0.5"]
    drive(CSVLogger(str(path)), FakeModel(), [{"loss": 2.0}])  # append=False overwrites
    assert path.read_text() == "epoch,loss\n0,2.0\n"


def test_csv_logger_unwritable_path_is_a_clear_error(tmp_path):
    callback = CSVLogger(str(tmp_path / "missing-dir" / "log.csv"))
    with pytest.raises(TrainctlError, match="callbacks.csv_logger: cannot open .*log.csv"):
        drive(callback, FakeModel(), [{"loss": 1.0}])


# -- terminate_on_nan ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_terminate_on_nan_stops_at_the_first_non_finite_batch_loss(bad):
    model = FakeModel()
    callback = TerminateOnNaN()
    batch_losses = [[0.5, 0.4, 0.3], [0.3, bad, float("nan")]]
    ran = drive(callback, model, [{}, {}, {}], batches=3, batch_losses=batch_losses + [[0.1] * 3])
    assert len(ran) == 2 and model.stop_training
    assert callback.stopped_at == (1, 1)
    assert model.optimizer.iterations == 5  # the loop stopped right after the bad batch
    assert "epoch 2, batch 2" in callback.message and str(float(bad)) in callback.message


def test_terminate_on_nan_lets_finite_training_run():
    callback = TerminateOnNaN()
    ran = drive(callback, FakeModel(), [{}, {}], batches=3)
    assert len(ran) == 2 and callback.stopped_at is None and callback.message is None


# -- model_checkpoint ------------------------------------------------------------------------
class FakeSaver:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, tag, logs):
        self.calls.append((tag, logs))

    @property
    def tags(self):
        return [tag for tag, _ in self.calls]


def checkpoint(**params):
    callback = ModelCheckpoint(**CALLBACKS.get("model_checkpoint").Params.model_validate(params).model_dump())
    saver = FakeSaver()
    callback.set_saver(saver)
    return callback, saver


def test_model_checkpoint_saves_every_epoch_by_default():
    callback, saver = checkpoint()
    drive(callback, FakeModel(), losses([1.0, 0.9, 1.2]), batches=2)
    assert saver.tags == ["epoch-0001", "epoch-0002", "epoch-0003"]
    assert saver.calls[1][1] == {"val_loss": 0.9, "epoch": 1, "step": 4}
    assert callback.keep_last == 3


def test_model_checkpoint_every_n_epochs():
    callback, saver = checkpoint(every_n_epochs=2)
    drive(callback, FakeModel(), losses([1.0] * 5))
    assert saver.tags == ["epoch-0002", "epoch-0004"]


def test_model_checkpoint_save_best_only():
    callback, saver = checkpoint(save_best_only=True)
    drive(callback, FakeModel(), losses([1.0, 0.8, 0.9, 0.7, 0.7]))
    assert saver.tags == ["epoch-0001", "epoch-0002", "epoch-0004"]
    callback, saver = checkpoint(save_best_only=True, monitor="val_accuracy", initial_value_threshold=0.6)
    drive(callback, FakeModel(), [{"val_accuracy": v} for v in [0.5, 0.7, 0.65, 0.8]])
    assert saver.tags == ["epoch-0002", "epoch-0004"]


def test_model_checkpoint_every_n_steps_counts_global_steps():
    callback, saver = checkpoint(save_freq=3)
    drive(callback, FakeModel(), [{}, {}], batches=4)
    assert saver.tags == ["step-00000003", "step-00000006"]
    tag, logs = saver.calls[1]
    assert (logs["epoch"], logs["batch"], logs["step"]) == (1, 1, 6)
    # resumed after 4 steps: the rhythm continues from the global step
    callback, saver = checkpoint(save_freq=3)
    model = FakeModel()
    model.optimizer.iterations = 4
    drive(callback, model, [{}], batches=4, initial_epoch=1)
    assert saver.tags == ["step-00000006"]


def test_model_checkpoint_never_saves_non_finite_state():
    callback, saver = checkpoint()
    drive(callback, FakeModel(), [{"loss": 0.5, "val_loss": 0.4}, {"loss": float("nan"), "val_loss": 0.3}])
    assert saver.tags == ["epoch-0001"] and callback.skipped_nonfinite == 1


def test_model_checkpoint_needs_a_saver_and_valid_params():
    callback = ModelCheckpoint()
    with pytest.raises(RuntimeError, match="set_saver"):
        drive(callback, FakeModel(), losses([1.0]))
    params = CALLBACKS.get("modelCheckpoint").Params
    with pytest.raises(ValidationError, match="every_n_epochs applies to save_freq 'epoch'"):
        params.model_validate({"save_freq": 10, "every_n_epochs": 2})
    with pytest.raises(ValidationError):
        params.model_validate({"save_freq": 0})
    with pytest.raises(ValidationError):
        params.model_validate({"keepLast": 0})
    assert params.model_validate({"saveFreq": 100, "saveBestOnly": True, "monitor": "loss"}).save_freq == 100


def test_model_checkpoint_best_only_on_steps_needs_a_per_batch_monitor():
    callback, _ = checkpoint(save_freq=2, save_best_only=True)
    with pytest.raises(TrainctlError, match="only known at the end of an epoch; use monitor: loss"):
        drive(callback, FakeModel(), [{}], batches=2,
              params={"epochs": 1, "metrics": ["loss"], "do_validation": True})


def test_model_checkpoint_with_a_run_directory_keeps_the_last_k(tmp_path):
    from trainctl.runs.rundir import RunDir
    from trainctl.runs.tensors import arrays_to_bytes

    run = RunDir.create(tmp_path, "ckpt", tmp_path / "run")
    model = FakeModel()
    callback, _ = checkpoint(keep_last=2)
    callback.set_saver(lambda tag, logs: run.save_checkpoint(
        tag, {"weights.safetensors": arrays_to_bytes(model.get_weights())}, keep_last=callback.keep_last))
    drive(callback, model, losses([1.0, 0.9, 0.8, 0.7]))
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["epoch-0003", "epoch-0004"]
    tag, files = run.latest_checkpoint()
    assert tag == "epoch-0004" and len(files["weights.safetensors"]) > 0


# -- the registry and config -------------------------------------------------------------
@pytest.mark.parametrize("tfjs_id, canonical", [
    ("earlyStopping", "early_stopping"), ("reduceLROnPlateau", "reduce_lr_on_plateau"),
    ("csvLogger", "csv_logger"), ("CSVLogger", "csv_logger"), ("terminateOnNaN", "terminate_on_nan"),
    ("TerminateOnNaN", "terminate_on_nan"), ("modelCheckpoint", "model_checkpoint"),
    ("exponentialDecay", "exponential_decay"), ("cosineDecay", "cosine_decay"),
    ("stepDecay", "step_decay"), ("linearWarmup", "linear_warmup"),
])
def test_callbacks_are_registered_under_keras_and_tfjs_names(tfjs_id, canonical):
    assert CALLBACKS.resolve(tfjs_id) == canonical


def test_params_accept_camel_case_and_refuse_unknown_keys():
    early = CALLBACKS.get("early_stopping")
    params = early.Params.model_validate({"minDelta": 0.01, "restoreBestWeights": True, "patience": 3})
    callback = early(**params.model_dump())
    assert callback.min_delta == 0.01 and callback.restore_best_weights and callback.patience == 3
    with pytest.raises(ValidationError):
        early.Params.model_validate({"patiance": 3})
    with pytest.raises(ValidationError):
        early.Params.model_validate({"mode": "up"})
    with pytest.raises(ValidationError):
        early.Params.model_validate({"baseline": float("inf")})
    with pytest.raises(ValidationError):
        CALLBACKS.get("cosine_decay").Params.model_validate({"decaySteps": 10, "alpha": 1.5})
    with pytest.raises(ValidationError):
        CALLBACKS.get("exponential_decay").Params.model_validate({"decay_rate": 0.5})  # decay_steps missing
    for name in CALLBACKS.names():  # every callback can be built from its defaults plus required keys
        cls = CALLBACKS.get(name)
        required = {"exponential_decay": {"decay_steps": 1, "decay_rate": 0.5}, "cosine_decay": {"decay_steps": 1},
                    "step_decay": {"step_size": 1}, "linear_warmup": {"warmup_steps": 1},
                    "csv_logger": {"filename": "x.csv"}}.get(name, {})
        cls(**cls.Params.model_validate(required).model_dump())


# -- inside the real fit loop ---------------------------------------------------------------
def test_callbacks_inside_the_real_fit_loop():
    from trainctl.nn.model import Sequential

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    model = Sequential([{"type": "dense", "units": 1, "input_shape": [3]}], seed=0)
    model.compile(optimizer={"type": "sgd", "learning_rate": 0.05}, loss="mean_squared_error")
    schedule = ExponentialDecay(decay_steps=8, decay_rate=0.5)
    early = EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0, restore_best_weights=True)
    saver = FakeSaver()
    ckpt = ModelCheckpoint(save_freq=6)
    ckpt.set_saver(saver)
    history = model.fit(x, y, epochs=10, batch_size=16, validation_split=0.25, shuffle=False,
                        callbacks=[schedule, early, ckpt])
    # 48 training samples, 3 steps per epoch; min_delta=10 means nothing ever improves
    assert history.epoch == [0, 1]
    assert model.optimizer.iterations == 6
    assert model.optimizer.learning_rate == pytest.approx(0.05 * 0.5 ** (5 / 8))
    assert saver.tags == ["step-00000006"]
    # restored: the weights are those after epoch 0 (3 steps), not after epoch 1
    fresh = Sequential([{"type": "dense", "units": 1, "input_shape": [3]}], seed=0)
    fresh.compile(optimizer={"type": "sgd", "learning_rate": 0.05}, loss="mean_squared_error")
    fresh.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, shuffle=False,
              callbacks=[ExponentialDecay(decay_steps=8, decay_rate=0.5)])
    for name, value in fresh.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[name], value)


def test_check_monitors_before_training():
    from trainctl.train.callbacks import check_monitors

    check_monitors([EarlyStopping(), ReduceLROnPlateau(monitor="acc"), TerminateOnNaN()], ["loss", "acc"], True)
    with pytest.raises(TrainctlError, match="callbacks.reduce_lr_on_plateau.monitor: 'val_loss' needs validation"):
        check_monitors([ReduceLROnPlateau()], ["loss"], False)
    check_monitors([ModelCheckpoint()], ["loss"], False)  # not save_best_only: the monitor is unused
    with pytest.raises(TrainctlError, match="callbacks.model_checkpoint.monitor: 'mae' is not logged"):
        check_monitors([ModelCheckpoint(save_best_only=True, monitor="mae")], ["loss"], False)
