"""Input checks shared by the library: clear errors that name the argument and what was expected."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

__all__ = ["InputError", "user_message", "one_line", "check_writable_folder", "check_images", "check_per_image",
           "check_generator", "to_float", "like_input"]


class InputError(Exception):
    """A user's input (a file, a folder, an argument) that cannot be used; the message says which and why.

    The command line prints such errors as one line without a traceback (``augmax_lib.__main__``); any other
    exception is a bug and keeps its traceback. Error types of the library that describe bad input derive
    from it as well as from the built-in type callers already catch (ValueError, FileNotFoundError, ...).
    """


def user_message(err: BaseException) -> str:
    """The message of an InputError for the command line; one raised in a DataLoader worker comes back with
    the worker's traceback in its message, of which only the last line is the message."""
    text = str(err).strip()
    if "Traceback (most recent call last)" in text:
        last = text.splitlines()[-1]
        kind, _, rest = last.partition(": ")
        text = rest if rest and kind.endswith(type(err).__name__) else last
    return text


def one_line(message: str) -> str:
    """A message that spans lines (YAML's parser reports over several, with a caret line) as one line."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip().strip("^"))


def check_writable_folder(path, name: str = "--out") -> Path:
    """Create folder ``path`` if needed and check a file can be written in it; InputError naming ``name`` if not.

    Called before long work, so that an unwritable output is reported before the hours, not after them.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        raise InputError(f"{name} {path}: cannot write in this folder ({err.strerror or err})") from err
    return path


def check_images(x, name: str = "x", channels: tuple[int, ...] = (1, 3)) -> None:
    """Raise unless ``x`` is an (N, C, H, W) uint8 or floating tensor with an allowed channel count."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected 4 dimensions (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(f"{name}: expected dtype uint8 (0..255) or a float dtype (0..1), got {x.dtype}")
    if channels and x.shape[1] not in channels:
        raise ValueError(f"{name}: expected {' or '.join(map(str, channels))} channels in dim 1, "
                         f"got shape {tuple(x.shape)} (images must be channels-first)")


def check_per_image(value, n: int, device: torch.device, name: str = "value") -> torch.Tensor:
    """Return ``value`` as a float tensor of shape (n,) on ``device``; scalars are broadcast."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=torch.float32, device=device)
    if value.dim() == 0:
        value = value.expand(n)
    if value.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), one value per image, got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the images' device), got {value.device}")
    if not value.dtype.is_floating_point:
        value = value.float()
    return value


def check_generator(generator, device: torch.device, name: str = "generator") -> None:
    """Raise unless ``generator`` is None or a torch.Generator on ``device``'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"{name}: the generator is on {generator.device} but the images are on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float tensors pass through unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def like_input(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast a float [0, 1] result back to ``dtype`` (uint8 by rounding to the nearest level)."""
    if dtype == torch.uint8:
        return y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return y.to(dtype)
