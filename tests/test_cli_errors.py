"""Every command given bad input, as a new user would: exit code 2 and one line on stderr that names the file
or the option and says what is wrong, never a traceback. Real bugs still raise (and so show a traceback)."""
from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from augmax_lib.__main__ import main
from augmax_lib.models import build_model, to_reference_state_dict

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "cifar10" / "resnet18_normal.yaml")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)


def _error_line(argv, capsys) -> str:
    """Run ``python -m augmax_lib argv`` in this process; assert exit code 2 and return the error line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if "error" in line]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Reference-layout files: a WRN-40-2 for CIFAR-10, one with a 200-class head, a garbage and a truncated file."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    paths = {"wrn": folder / "wrn40_2_best_SA.pth", "wrn200": folder / "wrn40_2_tin_best_SA.pth",
             "garbage": folder / "notes.pth", "cut": folder / "cut.pth"}
    torch.save(to_reference_state_dict(build_model("wrn40_2", 10, norm="dubin")), paths["wrn"])
    torch.save(to_reference_state_dict(build_model("wrn40_2", 200, norm="dubin")), paths["wrn200"])
    paths["garbage"].write_text("my notes about the checkpoint\n")
    data = paths["wrn"].read_bytes()
    paths["cut"].write_bytes(data[: len(data) // 2])
    return paths


# ------------------------------------------------------------------------------------------------ evaluate


@pytest.mark.parametrize("which", ["garbage", "cut"])
def test_evaluate_file_that_is_not_a_checkpoint(checkpoints, which, capsys):
    path = checkpoints[which]
    line = _error_line(["evaluate", "--reference-checkpoint", str(path), "--model", "wrn40_2"], capsys)
    assert f"{path}: not a readable torch checkpoint" in line
    assert f"holds {path.stat().st_size} bytes" in line and "download it again" in line


def test_evaluate_checkpoint_of_another_backbone_says_which_model(checkpoints, capsys):
    line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"]), "--model", "resnet18"], capsys)
    assert line.startswith(f"evaluate: error: {checkpoints['wrn']} is not a resnet18 checkpoint")
    assert line.endswith("pass --model wrn40_2")
    assert len(line) < 400  # not 223 key names


def test_evaluate_tiny_imagenet_checkpoint_on_cifar_says_which_dataset(checkpoints, capsys):
    line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn200"]), "--model", "wrn40_2",
                        "--dataset", "cifar10"], capsys)
    assert str(checkpoints["wrn200"]) in line and "200 classes" in line and line.endswith("pass --dataset tinyimagenet")


def test_evaluate_folder_instead_of_a_checkpoint(checkpoints, capsys):
    folder = checkpoints["wrn"].parent
    line = _error_line(["evaluate", "--reference-checkpoint", str(folder)], capsys)
    assert f"{folder} (the path given to --reference-checkpoint) is a folder" in line
    assert checkpoints["wrn"].name in line


@pytest.mark.parametrize("extra, expected", [
    (["--model", "vgg16"], "argument --model: invalid choice: 'vgg16'"),
    (["--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
    (["--device", "gpu0"], "--device: expected cpu, cuda or cuda:N, got 'gpu0'"),
    (["--corruptions", "fogg"], "--corruptions: unknown name(s) fogg"),
    (["--spatial-k", "0"], "--spatial-k: expected a positive number of draws"),
    (["--dataset", "imagenet"], "--dataset imagenet does not go with --model resnet18"),
], ids=["model", "batch-size", "device", "corruptions", "spatial-k", "dataset vs model"])
def test_evaluate_bad_options(checkpoints, extra, expected, capsys):
    assert expected in _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"])] + extra, capsys)


def test_evaluate_out_that_cannot_be_a_folder(checkpoints, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should go")
    line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"]), "--model", "wrn40_2",
                        "--dataset", "synthetic", "--out", str(blocker / "r18")], capsys)
    assert f"--out {blocker / 'r18'}: cannot write in this folder" in line
    line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"]), "--model", "wrn40_2",
                        "--dataset", "synthetic", "--out", str(blocker)], capsys)
    assert f"--out {blocker}: is a file, expected a folder" in line


def test_evaluate_missing_run_folder(tmp_path, capsys):
    line = _error_line(["evaluate", "--run", str(tmp_path / "no-such-run")], capsys)
    assert str(tmp_path / "no-such-run") in line and "is not a directory" in line


def _cifar10_test_batch(root: Path, n: int = 10) -> None:
    rng = np.random.default_rng(0)
    (root / "cifar-10-batches-py").mkdir(parents=True)
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f)


def test_evaluate_truncated_cifar_c_file(checkpoints, tmp_path, capsys):
    root = tmp_path / "data"
    _cifar10_test_batch(root)
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.tile(np.arange(10, dtype=np.uint8), 5))
    np.save(folder / "fog.npy", np.zeros((50, 32, 32, 3), np.uint8))
    data = (folder / "fog.npy").read_bytes()
    (folder / "fog.npy").write_bytes(data[:20000])
    with pytest.warns(UserWarning):  # 10 test images, not the official 10000
        line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"]), "--model", "wrn40_2",
                            "--root", str(root), "--corruptions", "fog", "--skip", "cifar101", "spatial",
                            "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert re.search(re.escape(str(folder / "fog.npy")) + rf": truncated: .*\({len(data)} bytes\) but the file "
                     r"holds 20000 bytes\. To get it again: download .*CIFAR-10-C\.tar", line)
    assert not (tmp_path / "out" / "results.json").exists()


def test_evaluate_truncated_mirror_tarball_caches_nothing(checkpoints, tmp_path, capsys):
    import io
    import tarfile

    from PIL import Image

    root = tmp_path / "data"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for split in ("train", "test"):
            for c, cls in enumerate(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck")):
                jpeg = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), 20 * c, np.uint8)).save(jpeg, format="JPEG")
                info = tarfile.TarInfo(f"{split}/{cls}/0000.jpg")
                info.size = len(jpeg.getvalue())
                tar.addfile(info, io.BytesIO(jpeg.getvalue()))
    (root / "cifar10-jpeg.tar.xz").write_bytes(buf.getvalue()[:-100])
    line = _error_line(["evaluate", "--reference-checkpoint", str(checkpoints["wrn"]), "--model", "wrn40_2",
                        "--root", str(root), "--skip", "ra", "cifar101", "spatial", "--device", "cpu",
                        "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert f"{root / 'cifar10-jpeg.tar.xz'}: not a complete xz-compressed tar archive (EOFError" in line
    assert "To get it again" in line
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


# --------------------------------------------------------------------------------------------------- train


def test_train_config_problems(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert f"config: no such file '{missing}'" in _error_line(["train", "--config", str(missing)], capsys)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    line = _error_line(["train", "--config", str(broken)], capsys)
    assert f"'{broken}' is not valid YAML" in line
    line = _error_line(["train", "--config", CONFIG, "--set", "epochs"], capsys)
    assert "--set: expected key=value" in line and "'epochs'" in line
    line = _error_line(["train", "--config", CONFIG, "--set", "train.epochs=many"], capsys)
    assert "train.epochs: expected an integer" in line and "'many'" in line


def test_train_resume_problems(tmp_path, capsys):
    line = _error_line(["train", "--config", CONFIG, "--out", str(tmp_path / "none"), "--resume"], capsys)
    assert f"nothing to resume in '{tmp_path / 'none'}'" in line
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"\x80\x02not really a checkpoint")
    line = _error_line(["train", "--config", CONFIG, "--out", str(run), "--resume",
                        "--set", "data.dataset=synthetic"], capsys)
    assert f"checkpoint '{run / 'last.pt'}' is corrupt or not a torch checkpoint" in line


def test_train_out_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "run"
    blocker.write_text("")
    line = _error_line(["train", "--config", CONFIG, "--out", str(blocker)], capsys)
    assert f"--out {blocker}: is a file, expected a folder" in line


# ------------------------------------------------------------------------------------ corrupt, sweep, tables


def test_corrupt_out_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "CIFAR-10-C"
    blocker.write_text("")
    line = _error_line(["corrupt", "--dataset", "synthetic", "--out", str(blocker), "--corruptions", "fog",
                        "--quiet"], capsys)
    assert f"--out {blocker}: is a file, expected a folder" in line


def test_sweep_problems(tmp_path, capsys):
    line = _error_line(["sweep", str(tmp_path / "nope.yaml"), "--executor", "debug", "--out", str(tmp_path)], capsys)
    assert f"{tmp_path / 'nope.yaml'}: no such config file or folder" in line
    line = _error_line(["sweep", CONFIG, "--executor", "debug", "--out", str(tmp_path / "s"),
                        "--eval-args", "--skip 'spatial"], capsys)
    assert "--eval-args: cannot split" in line
    blocker = tmp_path / "runs"
    blocker.write_text("")
    line = _error_line(["sweep", CONFIG, "--executor", "debug", "--out", str(blocker)], capsys)
    assert f"--out {blocker}: is a file, expected a folder" in line


def test_tables_problems(tmp_path, capsys):
    line = _error_line(["tables", str(tmp_path / "no-runs")], capsys)
    assert f"{tmp_path / 'no-runs'}: no such runs folder" in line
    blocker = tmp_path / "tables"
    blocker.write_text("")
    line = _error_line(["tables", str(tmp_path), "--out", str(blocker), "--quiet"], capsys)
    assert f"--out {blocker}: is a file, expected a folder" in line


# ------------------------------------------------------------------------------------------------ __main__


def test_input_errors_escaping_a_command_are_one_line_and_bugs_still_raise(monkeypatch, capsys):
    from augmax_lib.cli import tables
    from augmax_lib.data import DataFormatError

    # As a DataLoader re-raises an error of a worker: the worker's traceback inside the message.
    wrapped = ("Caught DataFormatError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in <module>\naugmax_lib.data.roots.DataFormatError: /d/img.JPEG: cannot decode')

    def user_error(args):
        raise DataFormatError(wrapped)

    monkeypatch.setattr(tables, "run", user_error)
    line = _error_line(["tables", "anything"], capsys)
    assert line == "python -m augmax_lib tables: error: /d/img.JPEG: cannot decode"

    def bug(args):
        return 1 / 0

    monkeypatch.setattr(tables, "run", bug)
    with pytest.raises(ZeroDivisionError):
        main(["tables", "anything"])


def test_as_a_new_user_runs_it(checkpoints):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "augmax_lib", "evaluate", "--reference-checkpoint",
                           str(checkpoints["garbage"])], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"evaluate: error: {checkpoints['garbage']}: not a readable torch checkpoint (")
    assert lines[0].endswith(f"the file holds {checkpoints['garbage'].stat().st_size} bytes and may be truncated or "
                             f"another kind of file: download it again")
