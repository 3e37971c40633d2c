"""The dataset registry. CIFAR-10, SVHN and UCF101 are tested on small files written in each dataset's
exact on-disk format, so the real loading code (torchvision's pickle / .mat readers, PyAV) runs."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from kr_lib.data import DATASETS, TensorData, dataset_info, get_dataset, load_splits, prepare_batch
from kr_lib.data import augment, moving_fashion_mnist as mfm, ucf101
from kr_lib.data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD


# --------------------------------------------------------------------------- registry

def test_registry_names_and_unknown_name():
    assert set(DATASETS) == {"fashion_mnist", "moving_fashion_mnist", "cifar10", "svhn", "ucf101"}
    with pytest.raises(ValueError, match="registered: .*fashion_mnist.*ucf101"):
        get_dataset("imagenet")
    with pytest.raises(ValueError, match="does not take option"):
        dataset_info("cifar10", frames=8)
    with pytest.raises(ValueError, match="split must be one of"):
        get_dataset("fashion_mnist", "validation")


def test_dataset_info_shapes():
    assert dataset_info("fashion_mnist").input_shape == (1, 28, 28)
    assert dataset_info("cifar10").dim == 2 and dataset_info("cifar10").channels == 3
    v = dataset_info("moving_fashion_mnist", frames=6, canvas=36, limit=5)
    assert v.input_shape == (1, 6, 36, 36) and v.dim == 3
    u = dataset_info("ucf101", frames=4, size=56)
    assert u.input_shape == (3, 4, 56, 56) and u.num_classes == 101 and u.flip
    assert dataset_info("svhn").flip is False and dataset_info("svhn").crop_padding == 4


# --------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_split_and_normalization_constants():
    train = get_dataset("fashion_mnist", "train")
    assert isinstance(train, TensorData) and train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.uint8
    x = train.x.double() / 255
    assert abs(x.mean().item() - FASHION_MNIST_MEAN[0]) < 1e-3
    assert abs(x.std().item() - FASHION_MNIST_STD[0]) < 1e-3
    test = get_dataset("fashion_mnist", "test", limit=100)
    assert len(test) == 100 and test.y.dtype == torch.int64 and 0 <= test.y.min() and test.y.max() <= 9


# --------------------------------------------------------------------------- moving Fashion-MNIST

def test_moving_fashion_mnist_is_real_items_moving_deterministic_and_cached(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()  # a named data folder is never created
    a = get_dataset("moving_fashion_mnist", "train", data_dir=tmp_path / "a", limit=40, frames=6, canvas=36)
    b = get_dataset("moving_fashion_mnist", "train", data_dir=tmp_path / "b", limit=40, frames=6, canvas=36)
    assert a.x.shape == (40, 1, 6, 36, 36) and a.x.dtype == torch.uint8
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)  # deterministic
    fm = get_dataset("fashion_mnist", "train", limit=40)
    assert torch.equal(a.y, fm.y)  # label: the item's class
    # every frame holds the whole item: its pixel sum is the image's
    assert torch.equal(a.x.sum(dim=(-1, -2), dtype=torch.long)[:, 0], fm.x.sum(dim=(-1, -2), dtype=torch.long).expand(40, 6))
    moved = (a.x[:, :, 1:] != a.x[:, :, :-1]).flatten(1).any(dim=1)
    assert moved.float().mean() > 0.9  # items move (only an item at a wall in a mirror-symmetric spot may look still)
    # a larger request starts with the same clips; test clips differ from train clips
    c = get_dataset("moving_fashion_mnist", "train", data_dir=tmp_path / "a", limit=50, frames=6, canvas=36)
    assert torch.equal(c.x[:40], a.x)
    t = get_dataset("moving_fashion_mnist", "test", data_dir=tmp_path / "a", limit=40, frames=6, canvas=36)
    assert not torch.equal(t.x, a.x)
    # cached: a second load does not generate again
    assert mfm.cache_path("train", 40, 6, 36, 0, tmp_path / "a").is_file()
    monkeypatch.setattr(mfm, "generate", lambda *a, **k: pytest.fail("generated again instead of reading the cache"))
    again = get_dataset("moving_fashion_mnist", "train", data_dir=tmp_path / "a", limit=40, frames=6, canvas=36)
    assert torch.equal(again.x, a.x)


def test_moving_fashion_mnist_trajectories_bounce_inside_canvas():
    corners = mfm.trajectories(500, 20, 40, torch.Generator().manual_seed(1))
    assert corners.min() >= 0 and corners.max() <= 40 - 28
    steps = (corners[:, 1:] - corners[:, :-1]).abs()
    assert steps.max() <= mfm.MAX_SPEED and (steps.sum(dim=(1, 2)) > 0).all()


def test_moving_fashion_mnist_normalization_matches_real_clips(tmp_path):
    data = get_dataset("moving_fashion_mnist", "train", data_dir=tmp_path, limit=3000, frames=2, canvas=40)
    x = data.x.double() / 255
    assert x.mean().item() == pytest.approx(data.info.mean[0], rel=0.03)
    assert x.std().item() == pytest.approx(data.info.std[0], rel=0.03)


# --------------------------------------------------------------------------- CIFAR-10 (python pickles)

CIFAR_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def write_cifar10(root, per_batch=6, seed=0):
    """A tiny cifar-10-batches-py folder in the real format; returns {file: (data (n, 3072) uint8, labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in CIFAR_FILES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        entry = {"batch_label": f"{name} of 6", "labels": labels, "data": data,
                 "filenames": [f"img_{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = (data, labels)
    meta = {"num_cases_per_batch": per_batch, "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return written


def test_cifar10_reads_the_python_pickles(tmp_path):
    written = write_cifar10(tmp_path)
    train, test = load_splits("cifar10", data_dir=tmp_path)
    assert train.x.shape == (30, 3, 32, 32) and test.x.shape == (6, 3, 32, 32) and train.x.dtype == torch.uint8
    data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    # a row is 1024 red, 1024 green, 1024 blue values, each row-major: x[i, c, h, w] = row[c*1024 + h*32 + w]
    assert train.x[7, 2, 5, 9].item() == data[7, 2 * 1024 + 5 * 32 + 9]
    assert torch.equal(train.x.flatten(1), torch.from_numpy(data))
    assert train.y.tolist() == labels and test.y.tolist() == written["test_batch"][1]
    assert get_dataset("cifar10", "train", data_dir=tmp_path, limit=4).x.shape[0] == 4


def test_cifar10_incomplete_folder_names_folder_files_and_command(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as err:
        get_dataset("cifar10", "test", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "missing: data_batch_3" in msg
    assert "download=True" in msg and "cifar-10-python.tar.gz" in msg


# --------------------------------------------------------------------------- SVHN (.mat)

def write_svhn(root, split, n=9, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10; 10 is the digit 0
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    savemat(root / "svhn" / f"{split}_32x32.mat", {"X": X, "y": y})
    return X, y


def test_svhn_reads_the_mat_files_and_maps_10_to_0(tmp_path):
    X, y = write_svhn(tmp_path, "train", n=12)
    data = get_dataset("svhn", "train", data_dir=tmp_path)
    assert data.x.shape == (12, 3, 32, 32)
    assert torch.equal(data.x, torch.from_numpy(X).permute(3, 2, 0, 1))  # x[i, c, h, w] = X[h, w, c, i]
    expected = torch.from_numpy(y[:, 0].astype(np.int64)) % 10
    assert torch.equal(data.y, expected) and data.y.max() == 9 and (data.y == 0).any()
    with pytest.raises(FileNotFoundError, match="test_32x32.mat.*download=True"):
        get_dataset("svhn", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------- UCF101 (.avi + lists)

UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "YoYo"]


def write_avi(path, num_frames, height=48, width=64, base=0):
    """An MPEG-4 .avi whose frame k is a flat grey of level base + 8k (so the decoded frame tells its index)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "1"}
        for k in range(num_frames):
            img = np.full((height, width, 3), base + 8 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_ucf101(root, frames_per_video=20):
    """Official layout: UCF-101/<Class>/v_<Class>_gXX_c01.avi, ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    train, test = [], []
    for i, c in enumerate(UCF_CLASSES):
        for g in (1, 2, 3):
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            write_avi(root / "UCF-101" / rel, frames_per_video, base=10 * i)
            (test if g == 1 else train).append((rel, i + 1))
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {label}\r\n" for rel, label in train))
    (lists / "testlist01.txt").write_text("".join(f"{rel}\r\n" for rel, _ in test))


def test_clip_indices_centre_spacing_and_short_videos():
    assert ucf101.clip_indices(20, 4, 2, 1).tolist() == [[6, 8, 10, 12]]  # span 7, centred in 20
    assert ucf101.clip_indices(20, 4, 2, 2).tolist() == [[0, 2, 4, 6], [13, 15, 17, 19]]
    assert ucf101.clip_indices(5, 4, 2, 1).tolist() == [[0, 2, 4, 4]]  # repeats the last frame


def test_ucf101_decodes_official_layout_with_pyav_and_caches(tmp_path, monkeypatch):
    write_ucf101(tmp_path)
    ds = get_dataset("ucf101", "train", data_dir=tmp_path, frames=4, frame_step=2, size=32, resize=(40, 48),
                     clips_per_video=2, cache_dir=tmp_path / "cache")
    assert len(ds) == 6 * 2 and ds.info.num_classes == 3 and ds.info.input_shape == (3, 4, 32, 32)
    assert ds.targets.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    clip, label = ds[5]  # video 2 (class 1), second clip
    assert clip.shape == (3, 4, 40, 48) and clip.dtype == torch.uint8 and label == 1
    # frame k of a class-1 video has grey level 10 + 8k; the second clip uses frames 13, 15, 17, 19
    levels = clip.float().mean(dim=(0, 2, 3))
    assert torch.allclose(levels, torch.tensor([10.0 + 8 * k for k in (13, 15, 17, 19)]), atol=3)
    assert ds.cache_file(2).is_file()
    ds.prepare(progress=False)
    assert all(ds.cache_file(v).is_file() for v in range(6))
    monkeypatch.setattr(ucf101, "decode_clips", lambda *a, **k: pytest.fail("decoded again instead of reading the cache"))
    assert torch.equal(ds[5][0], clip)
    monkeypatch.undo()
    test = get_dataset("ucf101", "test", data_dir=tmp_path, frames=4, frame_step=2, size=32, resize=(40, 48),
                       cache_dir=tmp_path / "cache2")
    assert len(test) == 3 and test.targets.tolist() == [0, 1, 2]
    batch = torch.stack([test[i][0] for i in range(3)])
    assert prepare_batch(batch, test.info, train=False).shape == (3, 3, 4, 32, 32)


def test_ucf101_missing_pieces_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="UCF-101.*classInd.txt.*UCF101.rar"):
        get_dataset("ucf101", data_dir=tmp_path)
    write_ucf101(tmp_path, frames_per_video=3)
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        get_dataset("ucf101", "train", data_dir=tmp_path, fold=2)
    (tmp_path / "UCF-101" / "YoYo" / "v_YoYo_g02_c01.avi").unlink()
    with pytest.raises(FileNotFoundError, match="1 of the 6 videos.*v_YoYo_g02_c01.avi"):
        get_dataset("ucf101", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="fold"):
        get_dataset("ucf101", "train", data_dir=tmp_path, fold=4)


# --------------------------------------------------------------------------- batch preparation

def test_prepare_batch_test_mode_is_plain_normalization():
    info = dataset_info("cifar10")
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = prepare_batch(x, info, train=False)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)


def test_random_crop_is_a_window_of_the_padded_sample_per_sample():
    x = torch.arange(6 * 2 * 8 * 8, dtype=torch.float32).view(6, 2, 8, 8)
    g = torch.Generator().manual_seed(3)
    out = augment.random_crop(x, (8, 8), padding=2, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(6):
        hits = [(t, l) for t in range(5) for l in range(5) if torch.equal(padded[i, :, t:t + 8, l:l + 8], out[i])]
        assert hits, f"sample {i} is not a window of its padded input"
        offsets.add(hits[0])
    assert len(offsets) > 1  # one draw per sample, not one per batch
    again = augment.random_crop(x, (8, 8), padding=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # seeded


def test_video_crop_and_flip_are_the_same_for_every_frame_of_a_clip():
    info = dataset_info("ucf101", frames=3, size=8)
    clip = torch.randint(0, 256, (1, 3, 1, 10, 12), dtype=torch.uint8)
    x = clip.expand(16, 3, 3, 10, 12).contiguous()  # identical frames
    out = prepare_batch(x, info, train=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 3, 8, 8)
    assert torch.equal(out[:, :, 0], out[:, :, 1]) and torch.equal(out[:, :, 1], out[:, :, 2])
    flipped = augment.random_flip(torch.arange(4.0).view(1, 1, 4).expand(200, 1, 4), torch.Generator().manual_seed(0))
    share = (flipped[:, 0, 0] == 3).float().mean().item()
    assert 0.35 < share < 0.65 and set(flipped[:, 0, 0].tolist()) == {0.0, 3.0}
    centre = prepare_batch(x, info, train=False)
    expected = augment.normalize(x[..., 1:9, 2:10].float() / 255, info.mean, info.std)
    torch.testing.assert_close(centre, expected)
