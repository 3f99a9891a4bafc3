"""Data sets and partitions (SPEC D.5): digits, MNIST and CIFAR-10 files of the real formats, partitions."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.fl.data import (
    DatasetNotFoundError,
    PartitionError,
    check_dataset_files,
    dirichlet_partition,
    iid_partition,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    partition,
    quantity_skew_partition,
)


def _balanced_labels(per_class: int, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def test_digits_split_is_stratified_complete_and_seeded() -> None:
    split = load_digits(np.random.default_rng(3))
    assert len(split.train) + len(split.test) == 1797
    assert split.train.input_shape == (1, 8, 8)
    assert 0.0 <= split.train.features.min() and split.train.features.max() <= 1.0
    # every class is split 80/20 up to rounding
    train_counts = np.bincount(split.train.labels, minlength=10)
    test_counts = np.bincount(split.test.labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * (train_counts + test_counts)) <= 0.5)
    again = load_digits(np.random.default_rng(3))
    assert again.train.digest() == split.train.digest()
    assert load_digits(np.random.default_rng(4)).train.digest() != split.train.digest()


def test_standardised_training_set_has_zero_mean_unit_spread() -> None:
    split = load_dataset("digits", np.random.default_rng(0))
    assert abs(float(split.train.features.mean())) < 1e-5
    assert float(split.train.features.std()) == pytest.approx(1.0, abs=1e-4)


def test_iid_partition_gives_equal_disjoint_shards() -> None:
    labels = _balanced_labels(23)  # 230 samples, 7 providers -> 32 each, 6 dropped
    result = iid_partition(labels, 7, np.random.default_rng(0))
    assert result.sizes == (32,) * 7
    union = np.concatenate(result.shards)
    assert np.unique(union).size == union.size == 224


@given(
    providers=st.integers(2, 8),
    alpha=st.floats(0.2, 5.0),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=30, deadline=None)
def test_dirichlet_partition_respects_min_size_and_is_disjoint(providers: int, alpha: float, seed: int) -> None:
    labels = _balanced_labels(40)
    try:
        result = dirichlet_partition(labels, providers, alpha, np.random.default_rng(seed), min_size=5)
    except PartitionError:
        return  # a rare seed may exhaust the retries; that error path is tested below
    assert min(result.sizes) >= 5
    union = np.concatenate(result.shards)
    assert np.unique(union).size == union.size == labels.size  # Dirichlet keeps every sample


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha() -> None:
    labels = _balanced_labels(100)

    def mean_max_share(alpha: float) -> float:
        result = dirichlet_partition(labels, 5, alpha, np.random.default_rng(1), min_size=1)
        counts = result.label_counts(labels, 10)
        return float(np.mean(counts.max(axis=1) / counts.sum(axis=1)))

    assert mean_max_share(0.1) > mean_max_share(100.0) + 0.2


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    labels = _balanced_labels(10)
    with pytest.raises(PartitionError, match="min_size"):
        dirichlet_partition(labels, 10, 0.01, np.random.default_rng(0), min_size=9, max_retries=3)
    with pytest.raises(PartitionError, match="alpha: must be > 0, got -1"):
        dirichlet_partition(labels, 3, -1, np.random.default_rng(0))


def test_quantity_skew_sizes_vary_with_labels_iid() -> None:
    labels = _balanced_labels(100)
    result = quantity_skew_partition(labels, 5, 0.5, np.random.default_rng(2), min_size=20)
    assert min(result.sizes) >= 20
    assert max(result.sizes) - min(result.sizes) > 50
    assert sum(result.sizes) <= labels.size


def test_partition_digest_tracks_content() -> None:
    labels = _balanced_labels(20)
    first = partition("iid", labels, 4, np.random.default_rng(0), dataset_digest="abc")
    same = partition("iid", labels, 4, np.random.default_rng(0), dataset_digest="abc")
    other_data = partition("iid", labels, 4, np.random.default_rng(0), dataset_digest="abd")
    other_split = partition("iid", labels, 4, np.random.default_rng(1), dataset_digest="abc")
    assert first.digest == same.digest
    assert len({first.digest, other_data.digest, other_split.digest}) == 3
    with pytest.raises(PartitionError, match="partition: must be one of"):
        partition("zipf", labels, 4, np.random.default_rng(0))


def _write_idx(path: Path, array: np.ndarray) -> None:
    type_code = 0x08  # unsigned byte
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_loads_real_idx_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(6, 28, 28))
    test_images = rng.integers(0, 256, size=(4, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", train_images)
    _write_idx(raw / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 5]))
    _write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6]))
    split = load_mnist(tmp_path)
    assert split.train.input_shape == (1, 28, 28)
    assert split.train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert split.test.labels.tolist() == [9, 8, 7, 6]
    np.testing.assert_allclose(split.train.features[2, 0], train_images[2] / 255.0, rtol=1e-6)


def test_missing_mnist_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte") as error:
        load_mnist(tmp_path)
    assert "MNIST/raw" in str(error.value)
    assert isinstance(error.value, MarketError)
    with pytest.raises(DatasetNotFoundError, match="root: mnist needs a local"):
        load_dataset("mnist", np.random.default_rng(0))


def test_the_file_check_reads_nothing_and_refuses_what_the_loaders_refuse(tmp_path: Path) -> None:
    """What a sweep checks for every cell before any run; the message lists each missing file once."""
    for name, loader in (("mnist", load_mnist), ("cifar10", load_cifar10)):
        with pytest.raises(DatasetNotFoundError) as by_loader:
            loader(tmp_path)
        with pytest.raises(DatasetNotFoundError) as by_check:
            check_dataset_files(name, tmp_path)
        assert str(by_check.value) == str(by_loader.value) and "which does not exist" in str(by_check.value)
        assert "expected" not in str(by_check.value)  # every file is missing: the list is said once
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=r"raw: train-labels-idx1-ubyte, .* \(expected train-images"):
        check_dataset_files("mnist", tmp_path)
    check_dataset_files("digits", None)  # bundled with scikit-learn


def test_mnist_files_that_are_not_idx_files_are_a_clear_error(tmp_path: Path) -> None:
    """torchvision asserts the idx magic numbers: a sweep cell failed with a bare 'AssertionError: '."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"not an idx file")
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte is not an idx images file"):
        load_mnist(tmp_path)


def test_a_corrupt_idx_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    """A helper's garbage t10k labels file and a truncated train images file both gave 'the MNIST files in ... are
    not uncompressed idx files (AssertionError)', naming neither file (and the truncated one was uncompressed)."""
    import gzip

    raw = _write_mnist(tmp_path, np.array([0, 1, 2, 3, 4, 5]), np.array([9, 8, 7, 6]))
    labels = raw / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(b"garbage!" + good[8:])
    with pytest.raises(DatasetNotFoundError, match=r"t10k-labels-idx1-ubyte is not an idx labels file"):
        load_mnist(tmp_path)
    labels.write_bytes(good)
    images = raw / "train-images-idx3-ubyte"
    whole = images.read_bytes()
    images.write_bytes(whole[:-100])
    with pytest.raises(
        DatasetNotFoundError, match=r"train-images-idx3-ubyte is 4,620 bytes, but its header \(6 images\) says 4,720"
    ):
        load_mnist(tmp_path)
    images.write_bytes(gzip.compress(whole))
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte is gzip-compressed"):
        load_mnist(tmp_path)
    images.unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(whole))
    with pytest.raises(DatasetNotFoundError, match=r"found train-images-idx3-ubyte\.gz: .* gunzip them"):
        load_mnist(tmp_path)


def _write_cifar(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, handle)
        written[name] = data
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{index}" for index in range(10)]}, handle)
    return written


def test_cifar10_loads_real_pickle_batches(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path, np.random.default_rng(0))
    split = load_cifar10(tmp_path, verify_checksums=False)
    assert len(split.train) == 10 and len(split.test) == 2
    assert split.train.input_shape == (3, 32, 32)
    # channel-major rows: the first 1024 bytes are the red plane of image 0
    red_plane = written["data_batch_1"][0, :1024].reshape(32, 32) / 255.0
    np.testing.assert_allclose(split.train.features[0, 0], red_plane, rtol=1e-6)


def test_cifar10_with_checksums_rejects_files_that_are_not_the_release(tmp_path: Path) -> None:
    _write_cifar(tmp_path, np.random.default_rng(0))
    with pytest.raises(DatasetNotFoundError, match="verify_checksums=False"):
        load_cifar10(tmp_path)


def test_missing_cifar10_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="data_batch_1.*test_batch"):
        load_cifar10(tmp_path)


# ----------------------------------------------------------- labels that do not fit their images


def _write_mnist(root: Path, train_labels: np.ndarray, test_labels: np.ndarray, train_images: int = 6) -> Path:
    """Four idx files under root/MNIST/raw: `train_images` and 4 random images, with the labels given."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, size=(train_images, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(4, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)
    return raw


def test_mnist_with_well_formed_labels_loads(tmp_path: Path) -> None:
    """The checks let a well-formed set through, label 9 included (the counterpart of the refusals below)."""
    _write_mnist(tmp_path, np.array([0, 1, 2, 3, 4, 9]), np.array([9, 8, 7, 6]))
    split = load_mnist(tmp_path)
    assert split.train.labels.tolist() == [0, 1, 2, 3, 4, 9] and split.test.labels.tolist() == [9, 8, 7, 6]


def test_an_mnist_label_of_10_or_more_names_the_labels_file(tmp_path: Path) -> None:
    """Label 200 went through loading and failed in training as 'IndexError: Target 200 is out of bounds'."""
    raw = _write_mnist(tmp_path, np.array([0, 1, 2, 3, 4, 5]), np.array([9, 200, 7, 10]))
    with pytest.raises(DatasetNotFoundError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert message == (
        f"root: {raw / 't10k-labels-idx1-ubyte'} holds label 200 at index 1 (2 out of range in all); "
        "labels must be in 0..9"
    )


def test_an_mnist_label_count_unlike_the_image_count_names_both_files(tmp_path: Path) -> None:
    """500 labels for 600 images said 'labels: must have shape (600,), got (500,)', naming no file."""
    raw = _write_mnist(tmp_path, np.arange(5) % 10, np.array([9, 8, 7, 6]), train_images=6)
    with pytest.raises(DatasetNotFoundError) as error:
        load_mnist(tmp_path)
    assert str(error.value) == (
        f"root: {raw / 'train-labels-idx1-ubyte'} holds 5 labels but {raw / 'train-images-idx3-ubyte'} holds 6 "
        "images; every image needs one label"
    )


BATCHES = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]


def _write_labelled_cifar(root: Path, labels: dict[str, list[int]] | None = None) -> Path:
    """Six pickle batches of two random images each (labels 0..9 unless `labels` names a batch's) and the meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in BATCHES:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        batch_labels = (labels or {}).get(name, rng.integers(0, 10, size=2).tolist())
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "data": data, "labels": batch_labels}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{index}" for index in range(10)]}, handle)
    return folder


def test_a_cifar_label_out_of_range_names_the_batch(tmp_path: Path) -> None:
    folder = _write_labelled_cifar(tmp_path, {"data_batch_3": [4, 12]})
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10(tmp_path, verify_checksums=False)
    assert str(error.value) == (
        f"root: {folder / 'data_batch_3'} holds label 12 at index 1 (1 out of range in all); labels must be in 0..9"
    )


def test_a_cifar_batch_with_fewer_labels_than_images_is_named(tmp_path: Path) -> None:
    folder = _write_labelled_cifar(tmp_path, {"test_batch": [3]})
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10(tmp_path, verify_checksums=False)
    assert str(error.value) == f"root: {folder / 'test_batch'} holds 2 images but 1 labels; every image needs one label"


def test_the_checksum_refusal_says_what_a_user_can_do(tmp_path: Path) -> None:
    """It repeated torchvision's 'You can use download=True' (flmarket never downloads) and advised an argument
    that no scenario key or command-line option reaches."""
    folder = _write_labelled_cifar(tmp_path)
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10(tmp_path)
    message = str(error.value)
    assert "download=True" not in message and "\n" not in message
    assert message.startswith(f"root: CIFAR-10 files in {folder} do not match the official release's MD5 checksums")
    assert f"({', '.join([*BATCHES, 'batches.meta'])})" in message  # every file of the fixture differs
    assert "flmarket never downloads" in message
    assert "from Python with verify_checksums=False" in message and "no scenario key or command-line option" in message
