"""Tests of implementations.datasets: file formats, where data is looked for, checks, splits, synthetic data.

No test touches the network: Keras's download is replaced by a stub and
KERAS_HOME points into tmp_path. The IDX files are small random ones written
here; only the tests under "the real thing" read real data, from $TFBENCH_DATA_DIR if set.
The system's dataset folders (Debian's /usr/share/datasets/...) are replaced by folders
in tmp_path, so that what is installed on the machine does not change the outcome.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tfbench.errors import ConfigError, DatasetError
from tfbench.implementations import datasets
from tfbench.implementations.datasets import (
    DATASETS,
    Data,
    DatasetCorrupt,
    DatasetUnavailable,
    Split,
    find_data_dir,
    load,
    load_arrays,
    read_idx,
    stratified_split,
    synthetic,
)

# Read before the autouse fixture below removes it from the environment of every test.
REAL_DATA_DIR = os.environ.get("TFBENCH_DATA_DIR")

N_TRAIN, N_TEST = 50, 20


# --- helpers -------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file holding a uint8 array: magic 0x0000080<ndim>, the dims, the data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as an IDX file, gzipped if the name ends in .gz (mtime=0: the same bytes every time)."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def make_dataset(folder: Path, gz: bool = True, seed: int = 0) -> dict:
    """Four small random IDX files in `folder`; returns the arrays and the MD5s of every file."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        # Every class present, so that splits are meaningful.
        "train-labels-idx1-ubyte": rng.permutation(np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(np.arange(N_TEST) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    raw_md5, file_md5, paths = {}, {}, {}
    for stem, array in arrays.items():
        path = write_idx(folder / (f"{stem}.gz" if gz else stem), array)
        paths[stem] = path
        raw_md5[stem] = hashlib.md5(idx_bytes(array)).hexdigest()
        file_md5[stem] = hashlib.md5(path.read_bytes()).hexdigest()
    return {"arrays": arrays, "raw_md5": raw_md5, "file_md5": file_md5, "paths": paths}


def debian_gzip(data: bytes) -> bytes:
    """`data` gzipped as Debian's dataset-fashion-mnist ships it: no file name in the header, another mtime.

    The original Fashion-MNIST .gz files carry the file name (header flag FNAME); Debian's carry none, so
    their bytes, and their MD5, differ while the content is the same.
    """
    return gzip.compress(data, mtime=1591380717)


def original_gzip(data: bytes, name: str) -> bytes:
    """`data` gzipped with the file name in the header, as the original hosts serve the files."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buffer, mtime=1504177651) as handle:
        handle.write(data)
    return buffer.getvalue()


def trust(monkeypatch, name: str, raw: dict | None = None, gz: dict | None = None) -> None:
    """Replace the checksum tables of `name` (the real ones cannot match generated files)."""
    monkeypatch.setitem(datasets.RAW_MD5, name, raw or {})
    monkeypatch.setitem(datasets.GZ_MD5, name, gz or {})


def same_arrays(loaded, made: dict) -> bool:
    (x_train, y_train), (x_test, y_test), _ = loaded
    return all(np.array_equal(got, made["arrays"][stem])
               for got, stem in zip((x_train, y_train, x_test, y_test), datasets.IDX_FILES))


class Downloads:
    """Stands in for Keras's download: records calls, fails like an offline machine unless given arrays."""

    def __init__(self):
        self.calls: list[str] = []
        self.result = None

    def __call__(self, name):
        self.calls.append(name)
        if self.result is None:
            raise Exception(  # what Keras raises offline, urllib's reason and all
                "URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz: "
                "None -- [Errno -3] Temporary failure in name resolution\nsecond line"
            )
        return self.result


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path) -> Downloads:
    """Every test: no data dir configured, an empty Keras home, and a download that fails without the network."""
    monkeypatch.delenv("TFBENCH_DATA_DIR", raising=False)
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()  # it must exist and be writable, or the loader also looks in /tmp/.keras as Keras does
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    downloads = Downloads()
    monkeypatch.setattr(datasets, "_keras_download", downloads)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"fashion_mnist": (tmp_path / "system" / "fashion-mnist",)})
    return downloads


# --- IDX parsing ---------------------------------------------------------------


def test_read_idx_gzip_and_raw_agree(tmp_path):
    gz, raw = make_dataset(tmp_path / "gz", gz=True), make_dataset(tmp_path / "raw", gz=False)
    for stem, array in gz["arrays"].items():
        from_gz, from_raw = read_idx(gz["paths"][stem]), read_idx(raw["paths"][stem])
        assert from_gz.dtype == np.uint8 and from_gz.shape == array.shape
        assert np.array_equal(from_gz, array) and np.array_equal(from_raw, array)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DatasetCorrupt, match="not an IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "0x12345678" in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_file_and_byte_counts(tmp_path, gz):
    made = make_dataset(tmp_path, gz=False)
    stem = "train-images-idx3-ubyte"
    data = made["paths"][stem].read_bytes()[:-100]
    path = tmp_path / (f"{stem}.gz" if gz else stem)
    made["paths"][stem].unlink()
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = 16 + N_TRAIN * 28 * 28
    with pytest.raises(DatasetCorrupt, match="truncated") as info:
        load_arrays("mnist", tmp_path, verify=False)
    message = str(info.value)
    assert str(path) in message and str(expected) in message and str(expected - 100) in message


def test_cut_gzip_stream_is_corrupt(tmp_path):
    made = make_dataset(tmp_path, gz=True)
    path = made["paths"]["t10k-labels-idx1-ubyte"]
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetCorrupt, match="gzip") as info:
        load_arrays("mnist", tmp_path, verify=False)
    assert str(path) in str(info.value)


def test_images_and_labels_swapped_is_corrupt(tmp_path):
    made = make_dataset(tmp_path, gz=False)
    images, labels = made["paths"]["train-images-idx3-ubyte"], made["paths"]["train-labels-idx1-ubyte"]
    images_bytes = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(images_bytes)
    with pytest.raises(DatasetCorrupt, match="0x00000801, expected 0x00000803"):
        load_arrays("mnist", tmp_path, verify=False)


def test_labels_out_of_range_are_corrupt(tmp_path):
    make_dataset(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(N_TEST, 12, np.uint8))
    with pytest.raises(DatasetCorrupt, match=r"expected 0\.\.9"):
        load_arrays("mnist", tmp_path, verify=False)


def test_image_and_label_counts_must_agree(tmp_path):
    make_dataset(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(N_TEST + 1, np.uint8))
    with pytest.raises(DatasetCorrupt, match=f"{N_TEST} images but {N_TEST + 1} labels"):
        load_arrays("mnist", tmp_path, verify=False)


def test_images_must_be_28x28(tmp_path):
    make_dataset(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((N_TEST, 32, 32), np.uint8))
    with pytest.raises(DatasetCorrupt, match=r"expected uint8 \(N, 28, 28\)"):
        load_arrays("mnist", tmp_path, verify=False)


# --- layouts -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["root", "direct"])
def test_layouts(tmp_path, layout, gz):
    """A root with mnist/ in it, or the folder holding the files itself; gzipped or not."""
    folder = tmp_path / "data" / "mnist" if layout == "root" else tmp_path / "files"
    made = make_dataset(folder, gz=gz)
    given = tmp_path / "data" if layout == "root" else folder
    assert find_data_dir("mnist", given) == folder
    assert same_arrays(load_arrays("mnist", given, verify=False), made)


def test_dotted_file_names(tmp_path):
    made = make_dataset(tmp_path, gz=False)
    for path in made["paths"].values():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))  # train-images.idx3-ubyte
    assert same_arrays(load_arrays("mnist", tmp_path, verify=False), made)


@pytest.mark.parametrize("folder", ["fashion_mnist", "fashion-mnist"])
def test_fashion_mnist_folder_names(tmp_path, monkeypatch, folder):
    made = make_dataset(tmp_path / folder, gz=True)
    trust(monkeypatch, "fashion_mnist", gz=made["file_md5"])
    data = load("fashion_mnist", data_dir=tmp_path)
    assert data.name == "fashion_mnist"
    assert data.train.x.shape == (N_TRAIN, 28, 28, 1) and data.test.y.shape == (N_TEST,)
    assert np.array_equal(data.train.y, made["arrays"]["train-labels-idx1-ubyte"])
    assert "checksums verified" in data.source and folder in data.source


def test_folder_named_for_another_dataset_is_not_used_directly(tmp_path):
    """Asking a folder called mnist/ for Fashion-MNIST must not hand back MNIST."""
    make_dataset(tmp_path / "mnist", gz=True)
    with pytest.raises(DatasetUnavailable, match="no fashion_mnist"):
        load_arrays("fashion_mnist", tmp_path / "mnist", verify=False)


# --- where the data comes from ---------------------------------------------------


def test_explicit_dir_beats_env_var(tmp_path, monkeypatch, offline):
    explicit = make_dataset(tmp_path / "explicit" / "mnist", seed=1)
    make_dataset(tmp_path / "env" / "mnist", seed=2)
    monkeypatch.setenv("TFBENCH_DATA_DIR", str(tmp_path / "env"))
    loaded = load_arrays("mnist", tmp_path / "explicit", verify=False)
    assert same_arrays(loaded, explicit) and str(tmp_path / "explicit") in loaded[2]
    assert offline.calls == []


def test_env_var_used_when_no_dir(tmp_path, monkeypatch, offline):
    made = make_dataset(tmp_path / "env" / "mnist")
    monkeypatch.setenv("TFBENCH_DATA_DIR", str(tmp_path / "env"))
    assert find_data_dir("mnist") == tmp_path / "env" / "mnist"
    assert same_arrays(load_arrays("mnist", verify=False), made)
    assert offline.calls == []


def write_npz(path: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def test_keras_cache_npz_used_when_nothing_configured(tmp_path, offline):
    npz = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    arrays = write_npz(npz)
    assert find_data_dir("mnist") is None
    (x_train, y_train), (x_test, y_test), source = load_arrays("mnist")
    assert np.array_equal(x_train, arrays["x_train"]) and np.array_equal(y_test, arrays["y_test"])
    assert str(npz) in source and "Keras cache" in source
    assert offline.calls == []


def test_broken_keras_cache_npz_is_corrupt(tmp_path):
    npz = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"not a zip file")
    with pytest.raises(DatasetCorrupt, match="delete it") as info:
        load_arrays("mnist")
    assert str(npz) in str(info.value)


def test_keras_cache_fashion_folder(tmp_path, monkeypatch, offline):
    made = make_dataset(tmp_path / "keras_home" / "datasets" / "fashion-mnist", gz=True)
    trust(monkeypatch, "fashion_mnist", gz=made["file_md5"])
    loaded = load_arrays("fashion_mnist")
    assert same_arrays(loaded, made) and "checksums verified" in loaded[2]
    assert offline.calls == []


def test_download_is_tried_last(offline):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, N_TRAIN, dtype=np.uint8)
    offline.result = ((x, y), (x[:N_TEST], y[:N_TEST]))
    data = load("mnist")
    assert offline.calls == ["mnist"]
    assert "Keras download" in data.source
    np.testing.assert_array_equal(data.train.y, y)


def test_configured_dir_without_the_files_raises_without_downloading(tmp_path, monkeypatch, offline):
    empty = tmp_path / "empty"
    empty.mkdir()
    for configure in ("argument", "env"):
        if configure == "env":
            monkeypatch.setenv("TFBENCH_DATA_DIR", str(empty))
        with pytest.raises(DatasetUnavailable) as info:
            load("mnist", data_dir=empty if configure == "argument" else None)
        message = str(info.value)
        assert str(empty) in message and "train-images-idx3-ubyte" in message and "\n" not in message
        assert ("--data-dir" if configure == "argument" else "TFBENCH_DATA_DIR") in message
    assert offline.calls == []


def test_configured_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load("mnist", data_dir=tmp_path / "nowhere")


def test_partial_copy_names_the_missing_files(tmp_path):
    made = make_dataset(tmp_path / "mnist")
    made["paths"]["t10k-labels-idx1-ubyte"].unlink()
    with pytest.raises(DatasetUnavailable, match="lacks t10k-labels-idx1-ubyte"):
        load_arrays("mnist", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_offline_with_nothing_is_one_clear_error(tmp_path, offline, name):
    with pytest.raises(DatasetUnavailable) as info:
        load(name)
    message = str(info.value)
    assert "\n" not in message
    assert "--data-dir" in message and "TFBENCH_DATA_DIR" in message  # how to fix it
    assert str(tmp_path / "keras_home" / "datasets") in message  # where it looked
    assert "Temporary failure in name resolution" in message  # why the download failed
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no urllib traceback
    assert offline.calls == [name]


# --- checksums -----------------------------------------------------------------


def test_wrong_checksum_names_file_and_both_checksums(tmp_path, monkeypatch):
    made = make_dataset(tmp_path, gz=False)
    wrong = {stem: "0" * 32 for stem in made["raw_md5"]}
    trust(monkeypatch, "mnist", raw=wrong)
    with pytest.raises(DatasetCorrupt) as info:
        load_arrays("mnist", tmp_path)
    message = str(info.value)
    assert str(made["paths"]["train-images-idx3-ubyte"]) in message
    assert "0" * 32 in message and made["raw_md5"]["train-images-idx3-ubyte"] in message
    assert "--no-verify" in message and "\n" not in message
    # verify=False (the CLI's --no-verify) is the documented way round it.
    assert "checksums skipped" in load_arrays("mnist", tmp_path, verify=False)[2]


def test_wrong_checksum_on_gz_reports_both_routes(tmp_path, monkeypatch):
    made = make_dataset(tmp_path, gz=True)
    trust(monkeypatch, "mnist", raw={s: "a" * 32 for s in made["raw_md5"]}, gz={s: "b" * 32 for s in made["raw_md5"]})
    with pytest.raises(DatasetCorrupt) as info:
        load_arrays("mnist", tmp_path)
    message = str(info.value)
    stem = "train-images-idx3-ubyte"
    for md5 in ("a" * 32, "b" * 32, made["raw_md5"][stem], made["file_md5"][stem]):
        assert md5 in message


def test_the_real_tables_reject_generated_files(tmp_path):
    make_dataset(tmp_path, gz=True)
    with pytest.raises(DatasetCorrupt, match="6bbc9ace898e44ae57da46a324031adb"):
        load_arrays("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_checksum_of_uncompressed_content_passes(tmp_path, monkeypatch, gz):
    """The route the offline MNIST copy takes: re-gzipped files, original content."""
    made = make_dataset(tmp_path, gz=gz)
    trust(monkeypatch, "mnist", raw=made["raw_md5"], gz={s: "f" * 32 for s in made["raw_md5"]})
    assert "(IDX, checksums verified)" in load_arrays("mnist", tmp_path)[2]


def test_checksum_of_gz_file_passes(tmp_path, monkeypatch):
    """The route of files as the original hosts serve them."""
    made = make_dataset(tmp_path, gz=True)
    trust(monkeypatch, "mnist", raw={s: "f" * 32 for s in made["raw_md5"]}, gz=made["file_md5"])
    assert "(IDX, checksums verified)" in load_arrays("mnist", tmp_path)[2]


def test_uncompressed_fashion_mnist_is_verified(tmp_path, monkeypatch):
    made = make_dataset(tmp_path / "fashion_mnist", gz=False)
    trust(monkeypatch, "fashion_mnist", raw=made["raw_md5"])
    loaded = load_arrays("fashion_mnist", tmp_path)
    assert same_arrays(loaded, made) and "(IDX, checksums verified)" in loaded[2]


def test_the_real_tables_hold_fashion_mnists_uncompressed_checksums(tmp_path):
    """The MD5s of ../shared/data/README.md: without them, any uncompressed file passed as Fashion-MNIST."""
    assert datasets.RAW_MD5["fashion_mnist"] == {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }
    make_dataset(tmp_path / "fashion_mnist", gz=False)
    with pytest.raises(DatasetCorrupt, match="f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        load_arrays("fashion_mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_in_the_fashion_mnist_folder_is_named_as_mnist(tmp_path, monkeypatch, gz):
    made = make_dataset(tmp_path / "fashion_mnist", gz=gz)
    trust(monkeypatch, "mnist", raw=made["raw_md5"])  # these files are "MNIST" for this test
    trust(monkeypatch, "fashion_mnist", raw={s: "e" * 32 for s in made["raw_md5"]},
          gz={s: "d" * 32 for s in made["raw_md5"]})
    with pytest.raises(DatasetCorrupt) as info:
        load_arrays("fashion_mnist", tmp_path)
    message = str(info.value)
    assert "is MNIST's train-images-idx3-ubyte, not Fashion-MNIST's" in message, message
    assert "mnist/ folder" in message and "\n" not in message


def test_a_checksum_message_names_the_command_line_way_out(tmp_path, monkeypatch):
    made = make_dataset(tmp_path / "mnist", gz=True)
    trust(monkeypatch, "mnist", raw={s: "0" * 32 for s in made["raw_md5"]})
    with pytest.raises(DatasetCorrupt, match="--no-verify"):
        load_arrays("mnist", tmp_path)


def test_debians_gzip_header_is_accepted_by_its_content(tmp_path, monkeypatch):
    """Debian's .gz files differ from the originals in the gzip header only: verified by their content."""
    made = make_dataset(tmp_path / "fashion_mnist", gz=True)
    originals = {stem: original_gzip(idx_bytes(array), stem) for stem, array in made["arrays"].items()}
    for stem, path in made["paths"].items():
        path.write_bytes(debian_gzip(idx_bytes(made["arrays"][stem])))
        assert path.read_bytes() != originals[stem]
    trust(monkeypatch, "fashion_mnist", raw=made["raw_md5"],
          gz={stem: hashlib.md5(blob).hexdigest() for stem, blob in originals.items()})
    loaded = load_arrays("fashion_mnist", tmp_path)
    assert same_arrays(loaded, made) and "checksums verified" in loaded[2]


def test_the_system_copy_comes_after_the_configured_dir_and_before_keras(tmp_path, monkeypatch, offline):
    system = datasets.SYSTEM_DIRS["fashion_mnist"][0]
    # Nothing anywhere: the "where I looked" message names the system folder and its package.
    with pytest.raises(DatasetUnavailable) as info:
        load_arrays("fashion_mnist")
    assert f"{system}/" in str(info.value) and "dataset-fashion-mnist" in str(info.value)
    offline.calls.clear()

    made = make_dataset(system, gz=True, seed=3)
    trust(monkeypatch, "fashion_mnist", gz=made["file_md5"])
    loaded = load_arrays("fashion_mnist")  # nothing configured: the system's copy, not Keras's
    assert same_arrays(loaded, made) and str(system) in loaded[2] and offline.calls == []

    configured = make_dataset(tmp_path / "data" / "fashion_mnist", gz=True, seed=4)
    trust(monkeypatch, "fashion_mnist", gz=configured["file_md5"])
    assert same_arrays(load_arrays("fashion_mnist", tmp_path / "data"), configured)  # the configured dir first

    # A configured dir that holds MNIST only: Fashion-MNIST from the system.
    trust(monkeypatch, "fashion_mnist", gz=made["file_md5"])
    only_mnist = tmp_path / "only_mnist"
    make_dataset(only_mnist / "mnist")
    assert same_arrays(load_arrays("fashion_mnist", only_mnist), made)
    # A partial copy in the configured dir is still an error (it was meant to be used).
    (tmp_path / "data" / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetUnavailable, match="lacks t10k-labels-idx1-ubyte"):
        load_arrays("fashion_mnist", tmp_path / "data")


def test_a_configured_dir_without_fashion_mnist_says_it_also_looked_at_the_system(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DatasetUnavailable) as info:
        load_arrays("fashion_mnist", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "also looked in" in message and "dataset-fashion-mnist" in message


# --- conversion and caching ------------------------------------------------------


def test_load_converts_to_float_nhwc(tmp_path):
    made = make_dataset(tmp_path / "mnist")
    data = load("mnist", data_dir=tmp_path, verify=False)
    assert isinstance(data, Data) and isinstance(data.train, Split) and data.val is None
    assert data.train.x.shape == (N_TRAIN, 28, 28, 1) and data.train.x.dtype == np.float32
    assert data.test.x.shape == (N_TEST, 28, 28, 1)
    assert data.train.y.dtype == np.int32 and data.test.y.dtype == np.int32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    expected = made["arrays"]["train-images-idx3-ubyte"].astype(np.float32)[..., None] / 255
    np.testing.assert_array_equal(data.train.x, expected)


def test_arrays_are_cached_read_only_and_reread_when_a_file_changes(tmp_path):
    make_dataset(tmp_path, gz=False, seed=1)
    first = load_arrays("mnist", tmp_path, verify=False)
    again = load_arrays("mnist", tmp_path, verify=False)
    assert again[0][0] is first[0][0]  # from the cache
    with pytest.raises(ValueError):
        first[0][0][0, 0, 0] = 1  # read-only: nobody can spoil the cached copy
    data = load("mnist", data_dir=tmp_path, verify=False)
    data.train.x[0] = 0.5  # load's float arrays are the caller's own to change
    assert load_arrays("mnist", tmp_path, verify=False)[0][0] is first[0][0]

    path = tmp_path / "train-labels-idx1-ubyte"
    write_idx(path, np.zeros(N_TRAIN, np.uint8))
    os.utime(path, ns=(0, 0))  # a different mtime even on coarse-grained file systems
    assert not load_arrays("mnist", tmp_path, verify=False)[0][1].any()


# --- splits --------------------------------------------------------------------


def test_stratified_split_proportions_and_determinism():
    rng = np.random.default_rng(0)
    y = rng.choice(10, size=1003, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum()).astype(np.int32)
    x = np.arange(len(y), dtype=np.float32)  # the example's index, to check which went where
    for fraction in (0.2, 0.3):
        train, val = stratified_split(x, y, fraction, seed=42)
        assert len(val.y) == round(fraction * len(y)) and len(train.y) + len(val.y) == len(y)
        assert set(train.x.astype(int)).isdisjoint(val.x.astype(int))
        np.testing.assert_array_equal(y[train.x.astype(int)], train.y)  # images stay with their labels
        total, in_val = np.bincount(y, minlength=10), np.bincount(val.y, minlength=10)
        assert np.all(np.abs(in_val - fraction * total) < 1)  # within one example per class
        again_train, again_val = stratified_split(x, y, fraction, seed=42)
        np.testing.assert_array_equal(again_val.x, val.x)
        np.testing.assert_array_equal(again_train.x, train.x)
        other_train, other_val = stratified_split(x, y, fraction, seed=7)
        assert not np.array_equal(other_val.x, val.x)
        np.testing.assert_array_equal(np.bincount(other_val.y, minlength=10), in_val)


def test_load_with_validation_fraction_and_train_limit(tmp_path):
    make_dataset(tmp_path / "mnist")
    data = load("mnist", data_dir=tmp_path, verify=False, validation_fraction=0.2)
    assert len(data.val.y) == 10 and len(data.train.y) == 40  # 5 of each class in train, so 1 each to val
    assert np.array_equal(np.bincount(data.val.y, minlength=10), np.ones(10))
    assert len(data.test.y) == N_TEST  # the test set is never split
    limited = load("mnist", data_dir=tmp_path, verify=False, validation_fraction=0.2, train_limit=7)
    np.testing.assert_array_equal(limited.train.x, data.train.x[:7])  # the first ones, after the split
    np.testing.assert_array_equal(limited.val.y, data.val.y)


def test_train_limit_without_split():
    data = load("synthetic", train_limit=100, synthetic_sizes=(500, 50))
    full = load("synthetic", synthetic_sizes=(500, 50))
    assert len(data.train.y) == 100 and len(data.test.y) == 50
    np.testing.assert_array_equal(data.train.x, full.train.x[:100])


# --- synthetic -----------------------------------------------------------------


def test_synthetic_shapes_dtypes_range_and_balance():
    train, test = synthetic(1000, 200, seed=3)
    assert train.x.shape == (1000, 28, 28, 1) and test.x.shape == (200, 28, 28, 1)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int32
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    assert np.array_equal(np.bincount(train.y, minlength=10), np.full(10, 100))


def test_synthetic_is_deterministic_per_seed():
    a_train, a_test = synthetic(300, 100, seed=0)
    b_train, b_test = synthetic(300, 100, seed=0)
    assert a_train.x.tobytes() == b_train.x.tobytes() and a_test.y.tobytes() == b_test.y.tobytes()
    c_train, _ = synthetic(300, 100, seed=1)
    assert not np.array_equal(a_train.x, c_train.x)
    # The test set is its own random stream: it does not depend on how much training data was asked for.
    _, d_test = synthetic(50, 100, seed=0)
    assert a_test.x.tobytes() == d_test.x.tobytes()


def test_synthetic_is_learnable_but_not_by_one_pixel():
    train, test = synthetic(3000, 1000, seed=0)
    x_train, x_test = train.x.reshape(len(train.x), -1), test.x.reshape(len(test.x), -1)
    # Nearest class mean, a linear classifier a small MLP easily matches, is nearly perfect...
    means = np.stack([x_train[train.y == c].mean(0) for c in range(10)])
    distances = (x_test**2).sum(1)[:, None] - 2 * x_test @ means.T + (means**2).sum(1)[None, :]
    assert (distances.argmin(1) == test.y).mean() > 0.95
    # ...while the best rule on any single pixel (the majority class per tenth of its range) is far from it.
    best = 0.0
    train_bins, test_bins = np.minimum(x_train * 10, 9).astype(int), np.minimum(x_test * 10, 9).astype(int)
    for pixel in range(x_train.shape[1]):
        table = np.zeros((10, 10))
        np.add.at(table, (train_bins[:, pixel], train.y), 1)
        best = max(best, (table.argmax(1)[test_bins[:, pixel]] == test.y).mean())
    assert best < 0.5


def test_load_synthetic():
    data = load("synthetic", seed=5, synthetic_sizes=(200, 40), validation_fraction=0.25)
    assert data.source == "synthetic(seed=5)"
    assert (len(data.train.y), len(data.val.y), len(data.test.y)) == (150, 50, 40)


# --- bad arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"name": "cifar10"}, ["cifar10", "mnist, fashion_mnist, synthetic"]),
        ({"name": "mnist", "validation_fraction": 1.0}, ["validation_fraction", "1.0", "[0, 1)"]),
        ({"name": "mnist", "validation_fraction": -0.1}, ["validation_fraction", "-0.1"]),
        ({"name": "mnist", "validation_fraction": float("nan")}, ["validation_fraction", "nan"]),
        ({"name": "mnist", "train_limit": 0}, ["train_limit", "0"]),
        ({"name": "synthetic", "synthetic_sizes": (-1, 10)}, ["n_train", "-1"]),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, words, offline):
    name = kwargs.pop("name")
    with pytest.raises(ConfigError) as info:
        load(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words)
    assert offline.calls == []  # checked before any loading


def test_other_bad_arguments():
    with pytest.raises(ConfigError, match="synthetic"):
        load_arrays("synthetic")
    with pytest.raises(ConfigError, match="unknown dataset"):
        find_data_dir("emnist")
    with pytest.raises(ConfigError, match="validation fraction"):
        stratified_split(np.zeros(10), np.zeros(10), 0.0, seed=0)
    with pytest.raises(ConfigError, match="empty"):
        stratified_split(np.zeros(10), np.zeros(10), 0.01, seed=0)


def test_error_hierarchy():
    assert issubclass(DatasetCorrupt, DatasetError) and issubclass(DatasetUnavailable, DatasetError)
    assert DATASETS == ("mnist", "fashion_mnist", "synthetic")


# --- the real thing --------------------------------------------------------------


def has_real(name: str) -> bool:
    if not REAL_DATA_DIR:
        return False
    try:
        return find_data_dir(name, REAL_DATA_DIR) is not None
    except DatasetError:
        return False


@pytest.mark.skipif(not has_real("mnist"), reason="set TFBENCH_DATA_DIR to a folder holding mnist/ to run this")
def test_real_mnist():
    data = load("mnist", data_dir=REAL_DATA_DIR)
    assert data.train.x.shape == (60000, 28, 28, 1) and data.test.x.shape == (10000, 28, 28, 1)
    assert "checksums verified" in data.source
    assert abs(float(data.train.x.mean()) - 0.1307) < 0.0005
    assert np.array_equal(np.unique(data.train.y), np.arange(10))


needs_real_fashion = pytest.mark.skipif(not has_real("fashion_mnist"),
                                        reason="set TFBENCH_DATA_DIR to a folder holding fashion_mnist/ to run this")


def _strip_file_name(blob: bytes) -> bytes:
    """A .gz with its header's file name removed (flag FNAME cleared): Debian's form of the same stream."""
    flags = blob[3]
    assert blob[:3] == b"\x1f\x8b\x08" and flags & ~0x08 == 0, "only the FNAME flag is expected"
    body = blob[blob.index(b"\x00", 10) + 1:] if flags & 0x08 else blob[10:]
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 1591380717) + blob[8:10] + body


@needs_real_fashion
def test_real_fashion_mnist_and_its_debian_form(tmp_path):
    data = load("fashion_mnist", data_dir=REAL_DATA_DIR)
    assert data.train.x.shape == (60000, 28, 28, 1) and data.test.x.shape == (10000, 28, 28, 1)
    assert "checksums verified" in data.source
    assert abs(float(data.train.x.mean()) - 0.2860) < 0.0005
    # The same compressed streams under Debian's header, in the system folder: accepted by their content.
    source = find_data_dir("fashion_mnist", REAL_DATA_DIR)
    system = datasets.SYSTEM_DIRS["fashion_mnist"][0]
    system.mkdir(parents=True)
    for stem in datasets.IDX_FILES:
        original = (source / f"{stem}.gz").read_bytes()
        (system / f"{stem}.gz").write_bytes(_strip_file_name(original))
        assert hashlib.md5((system / f"{stem}.gz").read_bytes()).hexdigest() != datasets.GZ_MD5["fashion_mnist"][stem]
    debian = load_arrays("fashion_mnist")
    assert "checksums verified" in debian[2] and str(system) in debian[2]
    assert np.array_equal(debian[0][1], data.train.y)
    # Real MNIST files in a fashion_mnist/ folder: rejected, named as MNIST.
    if has_real("mnist"):
        wrong = tmp_path / "wrong" / "fashion_mnist"
        shutil.copytree(find_data_dir("mnist", REAL_DATA_DIR), wrong)
        with pytest.raises(DatasetCorrupt, match="is MNIST's train-images-idx3-ubyte, not Fashion-MNIST's"):
            load_arrays("fashion_mnist", wrong.parent)


@pytest.mark.slow
@needs_real_fashion
def test_one_epoch_of_real_fashion_mnist_reaches_85_percent():
    from tfbench.implementations import build
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig

    data = load("fashion_mnist", data_dir=REAL_DATA_DIR)
    trainer = build("custom_tape", "cnn", TrainConfig(optimizer=OptimizerSpec("adam", 1e-3)))
    # Batches of 64: 0.872 here (batches of 128 reach 0.858, too close to the bar to be a steady test).
    history = trainer.fit(data.train.x, data.train.y, epochs=1, batch_size=64,
                          eval_sets={"test": (data.test.x, data.test.y)})
    assert history[-1]["test_accuracy"] >= 0.85, history[-1]
