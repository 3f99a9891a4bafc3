"""Data sets and their partition among data providers (SPEC A.9 data, SPEC D.5 partitions).

The one module of `market/` that reads files: scikit-learn's digits (embedded, the default), and MNIST or
CIFAR-10 from a local torchvision root the caller names (never downloaded). Partitions are IID equal shards,
Dirichlet(alpha) label skew and quantity skew; each partition carries its shard sizes and a SHA-256 content
hash so a run manifest can record exactly which data every provider held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flmarket.market.errors import DatasetNotFoundError, MarketError, PartitionError

DATASET_NAMES = ("digits", "mnist", "cifar10")
PARTITION_KINDS = ("iid", "dirichlet", "quantity")

MNIST_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)


@dataclass(frozen=True)
class Dataset:
    """Images as float32 in [0, 1] with shape (n, channels, height, width) and int64 labels."""

    name: str
    features: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    num_classes: int

    def __post_init__(self) -> None:
        if self.features.ndim != 4:
            raise MarketError(f"features: must have shape (n, channels, height, width), got {self.features.shape}")
        if self.labels.shape != (self.features.shape[0],):
            raise MarketError(f"labels: must have shape ({self.features.shape[0]},), got {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        channels, height, width = self.features.shape[1:]
        return int(channels), int(height), int(width)

    def subset(self, indices: np.ndarray) -> Dataset:
        """The samples at `indices`, as a new data set."""
        return Dataset(self.name, self.features[indices], self.labels[indices], self.num_classes)

    def digest(self) -> str:
        """SHA-256 hex of the features and labels (the content hash recorded in a run manifest)."""
        hasher = hashlib.sha256()
        hasher.update(self.name.encode())
        hasher.update(np.ascontiguousarray(self.features, dtype=np.float32).tobytes())
        hasher.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return hasher.hexdigest()


@dataclass(frozen=True)
class DatasetSplit:
    """A training set (partitioned among providers) and a held-out evaluation set (the requester's)."""

    train: Dataset
    test: Dataset


def _make_dataset(name: str, images: np.ndarray, labels: np.ndarray, scale: float, num_classes: int) -> Dataset:
    features = np.ascontiguousarray(images, dtype=np.float32) / np.float32(scale)
    return Dataset(name, features, np.asarray(labels, dtype=np.int64), num_classes)


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the proportion `test_fraction` (sorted indices)."""
    if not 0.0 < test_fraction < 1.0:
        raise MarketError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_count = int(round(test_fraction * members.size))
        test_parts.append(members[:test_count])
        train_parts.append(members[test_count:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def load_digits(rng: np.random.Generator, test_fraction: float = 0.2) -> DatasetSplit:
    """scikit-learn's 8x8 digits (1,797 images, read from the installed package), split stratified."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = bunch.images.reshape(-1, 1, 8, 8)
    full = _make_dataset("digits", images, bunch.target, 16.0, 10)
    train_indices, test_indices = stratified_split(full.labels, test_fraction, rng)
    return DatasetSplit(full.subset(train_indices), full.subset(test_indices))


def _require_files(folder: Path, names: Sequence[str], dataset: str) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        found = "" if len(missing) == len(names) else f" (expected {', '.join(names)})"
        where = f"{folder}, which does not exist" if not folder.is_dir() else str(folder)
        zipped = [f"{name}.gz" for name in missing if (folder / f"{name}.gz").is_file()]
        unzip = f"; found {', '.join(zipped)}: flmarket reads the uncompressed files, so gunzip them" if zipped else ""
        raise DatasetNotFoundError(
            f"root: {dataset} files missing from {where}: {', '.join(missing)}{found}{unzip}; flmarket never "
            f"downloads: place the files there or use dataset='digits'"
        )


IDX_MAGIC = {"images": 0x0803, "labels": 0x0801}
"""The idx format's magic numbers (unsigned bytes, 3 and 1 dimensions): MNIST's images and labels files."""


def check_idx_file(path: Path, kind: str) -> None:
    """Raise DatasetNotFoundError naming `path` unless it is an uncompressed idx file of `kind` ("images",
    28 x 28, or "labels") whose size is what its header says: torchvision's own check names neither the file nor
    the problem."""
    import struct

    dimensions = 3 if kind == "images" else 1
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(4 + 4 * dimensions)
    if header[:2] == b"\x1f\x8b":
        raise DatasetNotFoundError(f"root: {path} is gzip-compressed; flmarket reads the uncompressed idx file")
    if len(header) < 4 + 4 * dimensions or struct.unpack(">I", header[:4])[0] != IDX_MAGIC[kind]:
        raise DatasetNotFoundError(f"root: {path} is not an idx {kind} file (its first bytes are not the idx header)")
    shape = struct.unpack(f">{dimensions}I", header[4:])
    expected = len(header) + int(np.prod(shape, dtype=np.int64))
    if kind == "images" and shape[1:] != (28, 28):
        raise DatasetNotFoundError(f"root: {path} holds {shape[1]} x {shape[2]} images; MNIST's are 28 x 28")
    if size != expected:
        raise DatasetNotFoundError(
            f"root: {path} is {size:,} bytes, but its header ({shape[0]:,} {kind}) says {expected:,}: cut short or "
            "padded"
        )


def check_dataset_files(name: str, root: str | Path | None) -> None:
    """Raise DatasetNotFoundError, as `load_dataset` would, when `name`'s files are not under `root`; read nothing
    (a sweep checks every cell this way before any run starts)."""
    if name not in DATASET_NAMES:
        raise MarketError(f"dataset: must be one of {', '.join(DATASET_NAMES)}, got {name!r}")
    if name == "digits":
        return
    if root is None:
        raise DatasetNotFoundError(f"root: {name} needs a local torchvision root directory, got None")
    if name == "mnist":
        _require_files(Path(root) / "MNIST" / "raw", MNIST_RAW_FILES, "MNIST")
    else:
        _require_files(Path(root) / "cifar-10-batches-py", CIFAR10_FILES, "CIFAR-10")


def check_labels(labels: np.ndarray, images: int, labels_file: Path, images_file: Path, num_classes: int) -> None:
    """Raise DatasetNotFoundError naming the file(s) unless `labels_file` holds exactly one label per image of
    `images_file` (`images` of them; the two may be one file) and every label is in 0..num_classes - 1: a count
    that differs would fail later without a file name, and a label out of range deep inside training."""
    labels = np.asarray(labels)
    count = int(labels.shape[0]) if labels.ndim else 0
    if labels.ndim != 1 or count != images:
        if images_file == labels_file:
            held = f"{labels_file} holds {images} images but {count} labels"
        else:
            held = f"{labels_file} holds {count} labels but {images_file} holds {images} images"
        raise DatasetNotFoundError(f"root: {held}; every image needs one label")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        first = int(outside[0])
        raise DatasetNotFoundError(
            f"root: {labels_file} holds label {labels[first]} at index {first} ({outside.size} out of range in all); "
            f"labels must be in 0..{num_classes - 1}"
        )


MNIST_SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The (images, labels) idx files of MNIST's training (True) and test (False) sets, in <root>/MNIST/raw."""


def load_mnist(root: str | Path) -> DatasetSplit:
    """MNIST through torchvision from <root>/MNIST/raw/ (the four uncompressed idx ubyte files). Each labels file
    must hold one label in 0..9 per image of its images file (`check_labels`)."""
    from torchvision.datasets import MNIST

    raw = Path(root) / "MNIST" / "raw"
    _require_files(raw, MNIST_RAW_FILES, "MNIST")
    for images_name, labels_name in MNIST_SPLIT_FILES.values():
        check_idx_file(raw / images_name, "images")
        check_idx_file(raw / labels_name, "labels")
    parts = []
    for train in (True, False):
        try:
            source = MNIST(str(root), train=train, download=False)
        except (AssertionError, ValueError, RuntimeError) as error:  # torchvision asserts the idx magic numbers
            raise DatasetNotFoundError(
                f"root: the MNIST files in {Path(root) / 'MNIST' / 'raw'} are not uncompressed idx files "
                f"({type(error).__name__}{': ' + str(error) if str(error) else ''})"
            ) from None
        images = source.data.numpy().reshape(-1, 1, 28, 28)
        images_name, labels_name = MNIST_SPLIT_FILES[train]
        check_labels(source.targets.numpy(), images.shape[0], raw / labels_name, raw / images_name, 10)
        parts.append(_make_dataset("mnist", images, source.targets.numpy(), 255.0, 10))
    return DatasetSplit(parts[0], parts[1])


def _check_cifar_batches(folder: Path, file_names: Sequence[str]) -> None:
    """Read the CIFAR-10 pickle batches `file_names` in `folder` one by one, as torchvision does, and
    `check_labels` each: name the batch whose images and labels disagree or whose labels leave 0..9."""
    import pickle

    for file_name in file_names:
        path = folder / file_name
        with path.open("rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        labels = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"])
        images = int(np.asarray(entry["data"]).reshape(-1, 3072).shape[0])
        check_labels(labels, images, path, path, 10)


def load_cifar10(root: str | Path, verify_checksums: bool = True) -> DatasetSplit:
    """CIFAR-10 through torchvision from <root>/cifar-10-batches-py/ (the python pickle batches).

    torchvision checks each file's MD5 against the official release; `verify_checksums=False` accepts any
    files of the right format (small test fixtures, re-packed subsets). Only Python reaches that argument (here,
    `load_dataset` or `BackendConfig.verify_checksums`): no scenario key or command-line option turns the check
    off. Each batch must hold one label in 0..9 per image (`check_labels`). The batches are pickles: load only
    files you trust.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    folder = Path(root) / "cifar-10-batches-py"
    _require_files(folder, CIFAR10_FILES, "CIFAR-10")

    class _UncheckedCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = []
            self.class_to_idx = {}

    loader = CIFAR10 if verify_checksums else _UncheckedCIFAR10
    parts = []
    for train in (True, False):
        try:
            source = loader(str(root), train=train, download=False)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted": an MD5 mismatch
            listed = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
            differing = [name for name, md5 in listed if not check_integrity(str(folder / name), md5)]
            raise DatasetNotFoundError(
                f"root: CIFAR-10 files in {folder} do not match the official release's MD5 checksums "
                f"({', '.join(differing) or 'all files'}); put the official cifar-10-python.tar.gz's "
                "cifar-10-batches-py there (flmarket never downloads), or accept other files from Python with "
                "verify_checksums=False (load_dataset, load_cifar10 or BackendConfig; no scenario key or "
                "command-line option turns the check off)"
            ) from error
        targets = np.asarray(source.targets)
        if targets.shape != (len(source.data),) or np.any((targets < 0) | (targets >= 10)):
            names = [name for name, _ in (CIFAR10.train_list if train else CIFAR10.test_list)]
            _check_cifar_batches(folder, names)  # names the batch at fault
        images = np.transpose(np.asarray(source.data), (0, 3, 1, 2))
        parts.append(_make_dataset("cifar10", images, targets, 255.0, 10))
    return DatasetSplit(parts[0], parts[1])


def standardise(split: DatasetSplit) -> DatasetSplit:
    """Per-channel (x - mean) / std with the training set's statistics (torchvision's Normalize), both sets.

    A channel with zero spread is only centred.
    """
    axes = (0, 2, 3)
    mean = split.train.features.mean(axis=axes, keepdims=True, dtype=np.float64)
    spread = split.train.features.std(axis=axes, keepdims=True, dtype=np.float64)
    spread[spread == 0] = 1.0

    def apply(part: Dataset) -> Dataset:
        features = ((part.features - mean) / spread).astype(np.float32)
        return Dataset(part.name, features, part.labels, part.num_classes)

    return DatasetSplit(apply(split.train), apply(split.test))


def load_dataset(
    name: str,
    rng: np.random.Generator,
    root: str | Path | None = None,
    verify_checksums: bool = True,
    standardised: bool = True,
) -> DatasetSplit:
    """Load `name` (digits, mnist or cifar10), standardised by default; MNIST and CIFAR-10 need `root`."""
    if name not in DATASET_NAMES:
        raise MarketError(f"dataset: must be one of {', '.join(DATASET_NAMES)}, got {name!r}")
    if name == "digits":
        split = load_digits(rng)
    elif root is None:
        raise DatasetNotFoundError(f"root: {name} needs a local torchvision root directory, got None")
    elif name == "mnist":
        split = load_mnist(root)
    else:
        split = load_cifar10(root, verify_checksums=verify_checksums)
    return standardise(split) if standardised else split


@dataclass(frozen=True)
class Partition:
    """Which training samples each provider holds (SPEC D.5), with sizes and a content hash."""

    kind: str
    shards: tuple[np.ndarray, ...] = field(repr=False)
    digest: str

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of samples of each shard, in provider order."""
        return tuple(int(shard.size) for shard in self.shards)

    def label_counts(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """(providers, classes) matrix of sample counts per label."""
        return np.stack([np.bincount(labels[shard], minlength=num_classes) for shard in self.shards])


def _partition_digest(kind: str, dataset_digest: str, shards: Sequence[np.ndarray]) -> str:
    hasher = hashlib.sha256()
    hasher.update(kind.encode())
    hasher.update(dataset_digest.encode())
    for shard in shards:
        hasher.update(np.int64(shard.size).tobytes())
        hasher.update(np.ascontiguousarray(shard, dtype=np.int64).tobytes())
    return hasher.hexdigest()


def _check_providers(providers: int, samples: int) -> None:
    if providers < 1:
        raise PartitionError(f"providers: must be >= 1, got {providers}")
    if providers > samples:
        raise PartitionError(f"providers: must be <= the number of samples {samples}, got {providers}")


def iid_partition(labels: np.ndarray, providers: int, rng: np.random.Generator, dataset_digest: str = "") -> Partition:
    """IID equal shards (the paper's setting): a random permutation cut into `providers` equal parts.

    The floor(n / providers) * providers samples of a random permutation are used; the remainder is dropped
    so every shard has exactly the same size.
    """
    _check_providers(providers, labels.size)
    shard_size = labels.size // providers
    order = rng.permutation(labels.size)[: shard_size * providers]
    shards = tuple(np.sort(part) for part in order.reshape(providers, shard_size))
    return Partition("iid", shards, _partition_digest("iid", dataset_digest, shards))


def dirichlet_partition(
    labels: np.ndarray,
    providers: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_retries: int = 100,
    dataset_digest: str = "",
) -> Partition:
    """Dirichlet(alpha) label skew (SPEC D.5): per class p ~ Dir(alpha * 1_providers) splits its samples.

    Redrawn (at most `max_retries` times) until every provider holds at least `min_size` samples.
    """
    if alpha <= 0:
        raise PartitionError(f"alpha: must be > 0, got {alpha}")
    if min_size < 0:
        raise PartitionError(f"min_size: must be >= 0, got {min_size}")
    if max_retries < 1:
        raise PartitionError(f"max_retries: must be >= 1, got {max_retries}")
    _check_providers(providers, labels.size)
    if min_size * providers > labels.size:
        raise PartitionError(
            f"min_size: {providers} providers x {min_size} exceeds the {labels.size} samples available"
        )
    classes = np.unique(labels)
    for _ in range(max_retries):
        buckets: list[list[np.ndarray]] = [[] for _ in range(providers)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(providers, alpha))
            cuts = (np.cumsum(shares)[:-1] * members.size).astype(int)
            for provider, part in enumerate(np.split(members, cuts)):
                buckets[provider].append(part)
        shards = tuple(np.sort(np.concatenate(parts)) for parts in buckets)
        if min(shard.size for shard in shards) >= min_size:
            return Partition("dirichlet", shards, _partition_digest("dirichlet", dataset_digest, shards))
    raise PartitionError(
        f"min_size: no Dirichlet(alpha={alpha}) partition over {providers} providers gave every provider "
        f">= {min_size} samples in {max_retries} retries; raise alpha, lower min_size or raise max_retries"
    )


def quantity_skew_partition(
    labels: np.ndarray,
    providers: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    dataset_digest: str = "",
) -> Partition:
    """Quantity skew (SPEC D.5): shard sizes min_size + Dir(alpha) shares of the rest; labels stay IID."""
    if alpha <= 0:
        raise PartitionError(f"alpha: must be > 0, got {alpha}")
    _check_providers(providers, labels.size)
    if min_size < 0 or min_size * providers > labels.size:
        raise PartitionError(
            f"min_size: must be in [0, {labels.size // providers}] for {providers} providers, got {min_size}"
        )
    spare = labels.size - min_size * providers
    shares = rng.dirichlet(np.full(providers, alpha))
    extra = np.floor(shares * spare).astype(int)
    sizes = min_size + extra
    order = rng.permutation(labels.size)[: int(sizes.sum())]
    shards = tuple(np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1]))
    return Partition("quantity", shards, _partition_digest("quantity", dataset_digest, shards))


def partition(
    kind: str,
    labels: np.ndarray,
    providers: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_size: int = 10,
    max_retries: int = 100,
    dataset_digest: str = "",
) -> Partition:
    """Dispatch to the partition `kind` (iid, dirichlet or quantity) of SPEC D.5."""
    if kind == "iid":
        return iid_partition(labels, providers, rng, dataset_digest)
    if kind == "dirichlet":
        return dirichlet_partition(labels, providers, alpha, rng, min_size, max_retries, dataset_digest)
    if kind == "quantity":
        return quantity_skew_partition(labels, providers, alpha, rng, min_size, dataset_digest)
    raise PartitionError(f"partition: must be one of {', '.join(PARTITION_KINDS)}, got {kind!r}")
