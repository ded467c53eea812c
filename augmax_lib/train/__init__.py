"""Training: configs, one step function per method, the engine, checkpoints and DDP (see engine.train)."""
from .checkpoint import CheckpointError
from .config import METHODS, ConfigError, load_config, validate
from .engine import RunDirError, train
from .run_models import build_run_model, load_run

__all__ = ["train", "load_config", "validate", "load_run", "build_run_model", "METHODS", "ConfigError",
           "CheckpointError", "RunDirError"]
