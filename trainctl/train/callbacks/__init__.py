"""Callbacks: everything that watches training (progress, history, checkpoints, early
stopping, LR schedules, NaN guard) is a Callback; the loop in train/loop.py only emits events.
The base and its events are in `base.py`; importing this package registers every callback.
"""

from trainctl.train.callbacks.base import CALLBACKS, Callback, CallbackList, Logs
from trainctl.train.callbacks.checkpoint import ModelCheckpoint
from trainctl.train.callbacks.csv_logger import CSVLogger
from trainctl.train.callbacks.history import History, WeightHistory
from trainctl.train.callbacks.monitor import check_monitors, infer_mode
from trainctl.train.callbacks.nan import TerminateOnNaN
from trainctl.train.callbacks.schedules import CosineDecay, ExponentialDecay, LinearWarmup, StepDecay
from trainctl.train.callbacks.stopping import EarlyStopping, ReduceLROnPlateau

__all__ = [
    "CALLBACKS",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "CosineDecay",
    "EarlyStopping",
    "ExponentialDecay",
    "History",
    "LinearWarmup",
    "Logs",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "StepDecay",
    "TerminateOnNaN",
    "WeightHistory",
    "check_monitors",
    "infer_mode",
]
