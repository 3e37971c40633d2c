"""The training loop on real data (small Fashion-MNIST / moving Fashion-MNIST subsets, a few tiny epochs)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from kr_lib.data import DatasetInfo, TensorData, get_dataset, load_splits
from kr_lib.models import build_model
from kr_lib.train import CHECKPOINT_NAME, TrainConfig, TrainResult, evaluate, train

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fmnist():
    return load_splits("fashion_mnist", train_limit=384, test_limit=200)


def small_model(info="fashion_mnist", design="bottleneck", kr=2, R=4, seed=0):
    torch.manual_seed(seed)
    return build_model(info, design, kr, R=R, stages=2)


def metrics(result: TrainResult):
    return [[h[k] for k in METRICS] for h in result.history]


def test_learns_and_reports_everything_json_serialisable():
    data = load_splits("fashion_mnist", train_limit=512, test_limit=200)
    result = train(small_model(), data, epochs=3, batch_size=32, lr=0.2, seed=0, progress=False)
    assert result.status == "completed" and result.epochs_completed == 3 and len(result.history) == 3
    assert result.test_accuracy > 0.35  # chance is 0.1
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test_accuracy == result.history[-1]["test_accuracy"]
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine schedule ends at 0
    assert result.samples_per_second > 0 and result.wall_time_s > 0 and result.peak_memory_bytes > 0
    assert result.device == "cpu" and result.amp is None
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["config"]["optimizer"] == "sgd" and d["config"]["train_size"] == 512


@pytest.mark.slow
def test_two_runs_with_one_seed_are_identical_on_cpu(fmnist):
    kwargs = dict(epochs=2, batch_size=64, optimizer="adamw", seed=3, progress=False)
    a = train(small_model(seed=3), fmnist, **kwargs)
    b = train(small_model(seed=3), fmnist, **kwargs)
    assert metrics(a) == metrics(b)
    c = train(small_model(seed=3), fmnist, **{**kwargs, "seed": 4})  # another shuffling seed differs
    assert metrics(c) != metrics(a)


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint_to_the_same_end(fmnist, tmp_path):
    kwargs = dict(epochs=3, batch_size=64, seed=1, progress=False)
    full = train(small_model(seed=1), fmnist, checkpoint_dir=tmp_path / "full", **kwargs)

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_model(seed=1), fmnist, checkpoint_dir=tmp_path / "cut", on_epoch_end=interrupt, **kwargs)
    saved = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert [p.name for p in (tmp_path / "cut").iterdir()] == [CHECKPOINT_NAME]  # no partial files left
    resumed = train(small_model(seed=99), fmnist, checkpoint_dir=tmp_path / "cut", **kwargs)  # weights come from the checkpoint
    assert resumed.resumed_from_epoch == 2 and resumed.status == "completed"
    assert metrics(resumed) == metrics(full)
    with pytest.raises(ValueError, match="batch_size"):
        train(small_model(), fmnist, checkpoint_dir=tmp_path / "cut", **{**kwargs, "batch_size": 32})


def test_diverging_run_ends_with_a_failed_status_not_a_traceback(fmnist, tmp_path):
    result = train(small_model(), fmnist, epochs=2, batch_size=32, lr=1e6, weight_decay=0, progress=False,
                   log_every=1, checkpoint_dir=tmp_path)
    assert result.status == "diverged" and "loss" in result.message and "lr" in result.message
    assert result.test_accuracy is None and result.epochs_completed == 0
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # a diverged epoch is not checkpointed
    json.dumps(result.to_dict(), allow_nan=False)
    exploding = train(small_model(), fmnist, epochs=1, batch_size=32, lr=0.05, max_loss=1e-3, progress=False)
    assert exploding.status == "diverged" and "limit" in exploding.message


class _ClipDataset(torch.utils.data.Dataset):
    """A map-style Dataset over stored clips, as UCF101Clips is: exercises the DataLoader path."""

    def __init__(self, data: TensorData):
        self.data, self.info = data, data.info

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data.x[i], int(self.data.y[i])


def test_video_clips_through_a_dataloader_and_in_memory(tmp_path):
    opts = dict(data_dir=tmp_path, frames=4, canvas=32)
    train_split = get_dataset("moving_fashion_mnist", "train", limit=96, **opts)
    test_split = get_dataset("moving_fashion_mnist", "test", limit=48, **opts)
    model = small_model(train_split.info, "r2plus1d", 2, R=2)
    result = train(model, (_ClipDataset(train_split), _ClipDataset(test_split)), epochs=1, batch_size=16,
                   progress=True, log_every=2)  # the tqdm bar's path too
    assert result.status == "completed" and 0 <= result.test_accuracy <= 1
    loss, acc = evaluate(model, test_split, batch_size=7)  # the in-memory path gives the same numbers
    assert acc == pytest.approx(result.test_accuracy) and loss == pytest.approx(result.test_loss, rel=1e-5)


def test_augmented_colour_images_and_bad_arguments():
    info = DatasetInfo("cifar10", 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), crop_padding=4, flip=True)
    g = torch.Generator().manual_seed(0)  # synthetic tensors: unit test of the augmentation path only
    synthetic = TensorData(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
                           torch.randint(0, 10, (64,), generator=g), info)
    result = train(small_model(info, "separable", "1/2", R=4), (synthetic, synthetic), epochs=1, batch_size=16,
                   progress=False)
    assert result.status == "completed"
    with pytest.raises(ValueError, match="optimizer"):
        train(small_model(), (synthetic, synthetic), optimizer="lbfgs")
    with pytest.raises(TypeError, match="pair"):
        train(small_model(), synthetic)
    with pytest.raises(TypeError, match="TensorData"):
        train(small_model(), ((synthetic.x, synthetic.y), synthetic))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(small_model(), (synthetic, synthetic), device="cuda")


def test_ucf101_clips_from_avi_files_train_end_to_end(tmp_path):
    from test_data import write_ucf101  # the official-layout fixture (PyAV-written .avi + list files)

    write_ucf101(tmp_path, frames_per_video=12)
    opts = dict(data_dir=tmp_path, frames=4, frame_step=2, size=16, resize=(20, 24))
    data = load_splits("ucf101", **opts)
    model = small_model(data[0].info, "r2plus1d", 1, R=2)
    assert data[0].info.input_shape == (3, 4, 16, 16)
    result = train(model, data, epochs=2, batch_size=4, progress=False)
    assert result.status == "completed" and len(result.history) == 2
    assert all(data[0].cache_file(v).is_file() for v in range(len(data[0].videos)))  # decoded once, cached


def test_train_config_is_checked_and_resolves_the_optimizer_defaults():
    assert TrainConfig(optimizer="adamw").lr == 1e-3 and TrainConfig(optimizer="adamw").weight_decay == 0.05
    assert TrainConfig() == TrainConfig(lr=0.1, weight_decay=5e-4)  # defaults filled in: compared whole
    for bad, message in (({"epochs": 0}, "epochs must be a positive int"), ({"optimizer": "adam"}, "optimizer"),
                         ({"lr": 0}, "lr must be positive"), ({"batch_size": True}, "batch_size")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)


def test_a_checkpoint_resumes_only_under_its_own_config(tmp_path):
    from kr_lib.data import TensorData, dataset_info

    info = dataset_info("fashion_mnist")
    g = torch.Generator().manual_seed(0)
    synthetic = TensorData(torch.randint(0, 256, (64, 1, 28, 28), generator=g, dtype=torch.uint8),
                           torch.randint(0, 10, (64,), generator=g), info)
    config = TrainConfig(epochs=1, batch_size=32, seed=0)
    first = train(small_model(info, "separable", "1/2", R=4), (synthetic, synthetic), config, progress=False,
                  checkpoint_dir=tmp_path)
    again = train(small_model(info, "separable", "1/2", R=4), (synthetic, synthetic), config, progress=False,
                  checkpoint_dir=tmp_path)
    assert again.resumed_from_epoch == 1 and again.history == first.history  # nothing left to train
    for change in ({"momentum": 0.5}, {"augment": False}, {"weight_decay": 0.0}):
        other = TrainConfig(**{**dataclasses.asdict(config), **change})
        with pytest.raises(ValueError, match=f"made with {next(iter(change))}="):
            train(small_model(info, "separable", "1/2", R=4), (synthetic, synthetic), other, progress=False,
                  checkpoint_dir=tmp_path)
    with pytest.raises(TypeError, match="not both"):
        train(small_model(info), (synthetic, synthetic), config, epochs=2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        train(small_model(info), (synthetic, synthetic), epoch=2)
