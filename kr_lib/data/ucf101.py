"""UCF101 action recognition from the official layout, decoded with PyAV, decoded clips cached on disk.

Expected under the data root (or its ``UCF101/`` or ``ucf101/`` subfolder)::

    UCF-101/<Class>/v_<Class>_gXX_cYY.avi           the videos (UCF101.rar)
    ucfTrainTestlist/classInd.txt                    "1 ApplyEyeMakeup" ... (1-based class ids)
    ucfTrainTestlist/trainlist0{1,2,3}.txt           "<Class>/<video>.avi <class id>"
    ucfTrainTestlist/testlist0{1,2,3}.txt            "<Class>/<video>.avi"

Each video gives ``clips_per_video`` clips (evenly spaced in time; one centred clip by default) of
``frames`` frames taken every ``frame_step`` frames (clips of short videos repeat their last frame),
resized to ``resize`` (H, W); the network sees a ``size`` x ``size`` crop (random for training, centred for
testing, see :func:`kr_lib.data.augment.prepare_batch`). A video is decoded once: its clips are saved
(atomic write) under ``cache_dir`` and read from there on every later epoch.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import DatasetInfo, check_split
from .fashion_mnist import DATA_DIR_ENV, check_data_dir, default_data_dir

VIDEO_FOLDER = "UCF-101"
LIST_FOLDER = "ucfTrainTestlist"
NUM_CLASSES = 101
# The Kinetics statistics that torchvision's video models (R3D, R(2+1)D) normalize with.
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
CACHE_VERSION = 1
GET_COMMAND = (
    "curl -LO https://www.crcv.ucf.edu/data/UCF101/UCF101.rar && unrar x UCF101.rar {root}/ && "
    "curl -LO https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip && "
    "unzip UCF101TrainTestSplits-RecognitionTask.zip -d {root}/"
)


def default_resize(size: int) -> tuple[int, int]:
    """Stored frame size for a ``size`` crop: the C3D convention 128 x 171 for 112, scaled."""
    return round(size * 128 / 112), round(size * 171 / 112)


def ucf101_info(frames: int = 16, size: int = 112, num_classes: int = NUM_CLASSES,
                classes: tuple[str, ...] = ()) -> DatasetInfo:
    """UCF101 clips ``(3, frames, size, size)``; augmentation: random crop out of the stored frames, flip."""
    return DatasetInfo("ucf101", num_classes, (3, frames, size, size), MEAN, STD, flip=True, classes=classes)


def find_ucf101(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``UCF-101/`` and ``ucfTrainTestlist/``: the data root or its UCF101/ucf101 subfolder."""
    base = check_data_dir(data_dir)
    candidates = [base, base / "UCF101", base / "ucf101"]
    for root in candidates:
        if (root / VIDEO_FOLDER).is_dir() and (root / LIST_FOLDER / "classInd.txt").is_file():
            return root
    raise FileNotFoundError(
        f"UCF101 was not found in {' or '.join(str(c) for c in candidates)}. Expected {VIDEO_FOLDER}/<Class>/*.avi "
        f"and {LIST_FOLDER}/ with classInd.txt, trainlist01-03.txt and testlist01-03.txt (the official layout). "
        f"Get them with `{GET_COMMAND.format(root=base)}`; or pass data_dir=... / set {DATA_DIR_ENV}."
    )


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_split(root: Path, split: str, fold: int) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Class names (0-based order of classInd.txt) and ``(relative video path, label)`` of a split/fold."""
    lists = root / LIST_FOLDER
    classes = {}
    for line in _read_lines(lists / "classInd.txt"):
        index, name = line.split()
        classes[name] = int(index) - 1
    names = tuple(sorted(classes, key=classes.get))
    list_file = lists / f"{'trainlist' if split == 'train' else 'testlist'}0{fold}.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"UCF101 list file {list_file} is missing; expected it in {lists} "
                                f"(from UCF101TrainTestSplits-RecognitionTask.zip). Get it with "
                                f"`{GET_COMMAND.format(root=root)}`.")
    videos = []
    for line in _read_lines(list_file):
        rel = line.split()[0]
        cls = rel.split("/")[0]
        if cls not in classes:
            raise ValueError(f"{list_file}: class {cls!r} of {rel} is not in classInd.txt")
        videos.append((rel, classes[cls]))
    missing = [rel for rel, _ in videos if not (root / VIDEO_FOLDER / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(videos)} videos listed in {list_file} are missing from "
            f"{root / VIDEO_FOLDER} (first: {missing[0]}). Get them with `{GET_COMMAND.format(root=root)}`."
        )
    return names, videos


def clip_indices(num_frames: int, frames: int, frame_step: int, clips_per_video: int) -> torch.Tensor:
    """Frame indices ``(clips_per_video, frames)``: clips evenly spaced over the video (one: centred),
    each ``frames`` frames ``frame_step`` apart; indices past the end repeat the last frame."""
    span = (frames - 1) * frame_step + 1
    room = max(num_frames - span, 0)
    if clips_per_video == 1:
        starts = torch.tensor([room // 2])
    else:
        starts = torch.linspace(0, room, clips_per_video).round().long()
    idx = starts.view(-1, 1) + frame_step * torch.arange(frames).view(1, -1)
    return idx.clamp_(max=max(num_frames - 1, 0))


def decode_clips(path: str | os.PathLike, frames: int, frame_step: int, resize: tuple[int, int],
                 clips_per_video: int = 1) -> torch.Tensor:
    """Decode a video with PyAV into clips ``(clips_per_video, 3, frames, H, W)`` uint8 RGB, ``(H, W) = resize``.

    Only the frames the clips use are converted to RGB and resized (by FFmpeg's swscale).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = list(container.decode(stream))
    if not decoded:
        raise ValueError(f"{path} has no decodable video frames")
    idx = clip_indices(len(decoded), frames, frame_step, clips_per_video)
    height, width = resize
    rgb = {int(i): torch.from_numpy(decoded[int(i)].to_ndarray(format="rgb24", width=width, height=height))
           for i in idx.unique()}
    clips = torch.stack([torch.stack([rgb[int(i)] for i in row]) for row in idx])  # (c, T, H, W, 3)
    return clips.permute(0, 4, 1, 2, 3).contiguous()


class UCF101Clips(torch.utils.data.Dataset):
    """One official split/fold of UCF101 as a Dataset of ``(clip (3, frames, H, W) uint8, label)``.

    ``len`` is videos x ``clips_per_video``; ``targets`` holds the labels ``(len,)``. Use :meth:`prepare`
    to decode everything up front (otherwise the first epoch fills the cache).
    """

    def __init__(self, split: str = "train", data_dir: str | os.PathLike | None = None, fold: int = 1,
                 frames: int = 16, frame_step: int = 2, size: int = 112, resize: tuple[int, int] | None = None,
                 clips_per_video: int = 1, cache_dir: str | os.PathLike | None = None, limit: int | None = None):
        check_split(split)
        if fold not in (1, 2, 3):
            raise ValueError(f"fold (the official UCF101 split) must be 1, 2 or 3, got {fold!r}")
        for name, value in (("frames", frames), ("frame_step", frame_step), ("size", size),
                            ("clips_per_video", clips_per_video)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.resize = tuple(resize) if resize is not None else default_resize(size)
        if self.resize[0] < size or self.resize[1] < size:
            raise ValueError(f"resize {self.resize} must be at least the crop size {size} in both modes")
        self.root = find_ucf101(data_dir)
        self.split, self.fold = split, fold
        self.frames, self.frame_step, self.clips_per_video = frames, frame_step, clips_per_video
        classes, videos = read_split(self.root, split, fold)
        self.videos = videos[:limit] if limit else videos
        self.info = ucf101_info(frames, size, len(classes), classes)
        key = f"f{frames}_s{frame_step}_{self.resize[0]}x{self.resize[1]}_c{clips_per_video}_v{CACHE_VERSION}"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / "kr_clips"
        self.cache_dir = self.cache_dir / key
        self.targets = torch.tensor([label for _, label in self.videos], dtype=torch.long
                                    ).repeat_interleave(clips_per_video)

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def cache_file(self, video: int) -> Path:
        """Where the decoded clips of video number ``video`` are kept."""
        return self.cache_dir / Path(self.videos[video][0]).with_suffix(".pt")

    def clips(self, video: int) -> torch.Tensor:
        """Decoded clips ``(clips_per_video, 3, frames, H, W)`` of one video: from the cache, else decoded and cached."""
        path = self.cache_file(video)
        if path.is_file():
            return torch.load(path, weights_only=True)
        clips = decode_clips(self.root / VIDEO_FOLDER / self.videos[video][0], self.frames, self.frame_step,
                             self.resize, self.clips_per_video)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # one per process: safe with workers
        torch.save(clips, tmp)
        os.replace(tmp, path)
        return clips

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        video, clip = divmod(index, self.clips_per_video)
        return self.clips(video)[clip], self.videos[video][1]

    def prepare(self, progress: bool = True) -> "UCF101Clips":
        """Decode every video not yet cached (with a tqdm bar); returns ``self``."""
        from ..progress import progress_bar

        todo = [v for v in range(len(self.videos)) if not self.cache_file(v).is_file()]
        for v in progress_bar(todo, desc=f"decoding UCF101 {self.split}", enabled=progress and bool(todo)):
            self.clips(v)
        return self


def load_ucf101(split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False,
                limit: int | None = None, **options) -> UCF101Clips:
    """The ``split`` as a :class:`UCF101Clips` Dataset (``options``: fold, frames, frame_step, size, resize,
    clips_per_video, cache_dir). UCF101 is never downloaded automatically (a 6.5 GB RAR archive)."""
    if download:
        try:
            return UCF101Clips(split, data_dir, limit=limit, **options)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"download=True is not supported for UCF101 (a 6.5 GB RAR archive). {err}") from None
    return UCF101Clips(split, data_dir, limit=limit, **options)


def check_ucf101(data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise (one line: where it was looked for, how to get it) when UCF101's official layout is not there;
    reads no video (the check before a run starts). ``download`` does not help: UCF101 is never fetched."""
    find_ucf101(data_dir)
