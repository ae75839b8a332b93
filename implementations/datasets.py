"""Datasets: MNIST, Fashion-MNIST and a synthetic stand-in, as float32 NHWC arrays.

Every approach trains on exactly the arrays this module returns: images of
shape (N, 28, 28, 1), float32 in [0, 1] (the uint8 pixels divided by 255), and
int32 labels 0-9. Loading is kept out of the approaches so that none of them
gets an easier or harder copy of the data.

Where the files come from, in this order:

1. the ``data_dir`` argument (the CLI's ``--data-dir``);
2. the ``TFBENCH_DATA_DIR`` environment variable;
3. the system's copy: Debian's ``dataset-fashion-mnist`` package installs
   Fashion-MNIST in ``/usr/share/datasets/fashion-mnist/`` (see ``SYSTEM_DIRS``);
4. Keras's download cache (``$KERAS_HOME`` or ``~/.keras``, folder ``datasets/``);
5. Keras's own download (``keras.datasets.mnist.load_data()``).

A data directory holds one folder per dataset (``mnist/``, ``fashion_mnist/``
or ``fashion-mnist/``), or directly the four IDX files, gzipped or not. If a
directory is configured but lacks the dataset, that is an error (after a look
at the system's copy, which is as offline and checked as the configured one):
silently downloading something else instead would hide a typo in the path.

Files are checked before anyone trains on them: the IDX header must describe
28x28 uint8 images and uint8 labels 0-9, the file must hold exactly the bytes
its header promises, and the MD5 of its *uncompressed* content must match the
published one (the MD5 of the original .gz is accepted too, as a shortcut:
the same .gz holds the same content). The uncompressed content is what counts
because copies differ in their gzip bytes: Debian's .gz files carry another
gzip header, the offline MNIST copy other compression settings. A file that
is recognisably the other dataset's (MNIST in a ``fashion_mnist/`` folder) is
rejected with a message saying so. ``verify=False`` (the CLI's
``--no-verify``) skips only the checksums; a file that cannot be parsed is
never used.

``synthetic`` needs no files at all: it draws a small, learnable, seeded
dataset of the same shapes, for tests and for machines without MNIST.

This module does not import TensorFlow; Keras is imported only when it has to
download, since importing it takes seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np

from tfbench.errors import ConfigError, DatasetError

DATASETS = ("mnist", "fashion_mnist", "synthetic")
FILE_DATASETS = ("mnist", "fashion_mnist")  # the ones read from files
ENV_VAR = "TFBENCH_DATA_DIR"

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# What to tell the user to do when no copy can be found; the CLI flag and the env var both feed `data_dir`.
_HOW_TO_FIX = (
    f"pass --data-dir DIR or set {ENV_VAR}=DIR, DIR being a folder holding {{name}}/ with the four IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
)


class DatasetUnavailable(DatasetError):
    """No copy of the dataset could be found or downloaded; the message says where it looked."""


class DatasetCorrupt(DatasetError):
    """A dataset file exists but is damaged or is not what it claims to be; the message names the file."""


# --- the files -----------------------------------------------------------------

# The four IDX files, in the order train images, train labels, test images, test labels.
# MNIST and Fashion-MNIST use the same names (Fashion-MNIST was made as a drop-in replacement).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Folder names a data directory may use for each dataset. Keras's cache says "fashion-mnist".
FOLDERS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
}
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

# Where an operating system's package puts a dataset, looked at after the configured data directory and
# before Keras's cache. Debian: `apt-get install dataset-fashion-mnist`. (Debian packages no MNIST.)
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

# MD5 of each file's *uncompressed* content. This survives re-compression with other gzip
# settings (as in the offline copy this project is tested with), which a .gz checksum does not.
RAW_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    # Of the original files' content (../shared/data/README.md); Debian's .gz files hold the same.
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

# MD5 of the .gz files exactly as the original hosts serve them (and as Keras caches Fashion-MNIST).
GZ_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

# IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# IDX type codes; all multi-byte values in an IDX file are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- public types --------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Images and their labels; the arrays belong to the caller (the cache keeps its own uint8 copy)."""

    x: np.ndarray  # (N, 28, 28, 1) float32 in [0, 1]
    y: np.ndarray  # (N,) int32 labels 0..9


@dataclass(frozen=True)
class Data:
    """A dataset ready to train on: train, optional validation and test splits, and where they came from."""

    name: str
    train: Split
    val: Split | None  # None unless validation_fraction > 0
    test: Split
    source: str  # where the data came from and how it was checked, for the results and the logs


# --- loading -------------------------------------------------------------------


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.0,
    split_seed: int = 42,
    verify: bool = True,
    train_limit: int | None = None,
    synthetic_sizes: tuple[int, int] = (6000, 1000),
    seed: int = 0,
) -> Data:
    """The dataset `name` as float32 images in [0, 1] and int32 labels, ready to train on.

    validation_fraction: hold out this share of the training set, stratified by class
        (the tutorials use 0.2 with random_state 42, and 0.3); the test set is never touched.
    train_limit: keep only the first `train_limit` training examples, after the split.
    synthetic_sizes, seed: the train/test sizes and the seed of the "synthetic" dataset.

    Raises ConfigError for a bad argument, DatasetUnavailable if no copy can be
    found, DatasetCorrupt if a copy fails its checks.
    """
    _check_name(name, DATASETS)
    if not 0 <= validation_fraction < 1:  # also rejects NaN
        raise ConfigError(
            f"validation_fraction must be in [0, 1), got {validation_fraction!r}; "
            "use e.g. 0.2 to hold out 20% of the training set, or 0 for no validation set"
        )
    if train_limit is not None and (not isinstance(train_limit, (int, np.integer)) or train_limit < 1):
        raise ConfigError(
            f"train_limit must be a positive number of examples (or None for all), got {train_limit!r}"
        )

    if name == "synthetic":
        train, test = synthetic(*synthetic_sizes, seed=seed)
        source = f"synthetic(seed={seed})"
    else:
        (x_train, y_train), (x_test, y_test), source = load_arrays(name, data_dir, verify)
        train, test = _to_split(x_train, y_train), _to_split(x_test, y_test)

    val = None
    if validation_fraction > 0:
        train, val = stratified_split(train.x, train.y, validation_fraction, split_seed)
    if train_limit is not None:
        train = Split(train.x[:train_limit], train.y[:train_limit])
    return Data(name=name, train=train, val=val, test=test, source=source)


def load_arrays(
    name: str, data_dir: str | os.PathLike | None = None, verify: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """((x_train, y_train), (x_test, y_test), source) as stored: uint8 images (N, 28, 28), uint8 labels.

    Only for the datasets read from files (mnist, fashion_mnist). The arrays are
    shared with an in-process cache and therefore read-only: copy them before
    changing them.
    """
    if name == "synthetic":
        raise ConfigError("load_arrays reads dataset files; 'synthetic' is generated: use load('synthetic') instead")
    _check_name(name, FILE_DATASETS)

    # 1 and 2: a configured directory. If it is set, only the system's copy may stand in for it.
    try:
        directory = find_data_dir(name, data_dir)
    except _NoCopyIn as error:
        system = _system_dir(name)
        if system is None:
            raise DatasetUnavailable(f"{error}{_system_dirs_looked_at(name, '; also looked in')}") from None
        return _load_idx_dir(system, name, verify)
    if directory is not None:
        return _load_idx_dir(directory, name, verify)

    # 3: the system's copy (a Debian package).
    tried = [f"no data directory configured (--data-dir not given, {ENV_VAR} not set)"]
    system = _system_dir(name)
    if system is not None:
        return _load_idx_dir(system, name, verify)
    if name in SYSTEM_DIRS:
        tried.append(_system_dirs_looked_at(name, "nothing in").strip())

    # 4: what Keras has downloaded before.
    looked_at = []
    for cache in _keras_cache_dirs():
        if name == "mnist":
            npz = cache / "mnist.npz"
            if npz.is_file():
                return _load_npz(npz, npz.stat().st_mtime_ns)
            looked_at.append(str(npz))
        else:
            folder = cache / "fashion-mnist"
            if all(_find_file(folder, stem) for stem in IDX_FILES):
                return _load_idx_dir(folder, name, verify)
            looked_at.append(f"{folder}/")
    tried.append(f"nothing in the Keras cache ({', '.join(looked_at)})")

    # 5: Keras's download; a failure becomes one clause of a one-line error saying everything that was tried.
    try:
        (x_train, y_train), (x_test, y_test) = _keras_download(name)
    except Exception as exc:  # every reason to fail (no network, proxy, disk full...) is reported alike
        tried.append(f"the Keras download failed ({_short_reason(exc)})")
        raise DatasetUnavailable(
            f"{name} is not available: " + "; ".join(tried) + ". To fix: " + _HOW_TO_FIX.format(name=name)
        ) from None  # the urllib traceback would bury the message
    where = f"keras.datasets.{name}.load_data()"
    _check_arrays(x_train, y_train, f"{where} train set")
    _check_arrays(x_test, y_test, f"{where} test set")
    arrays = tuple(_read_only(a) for a in (x_train, y_train, x_test, y_test))
    return (arrays[0], arrays[1]), (arrays[2], arrays[3]), f"Keras download ({where}, shapes checked)"


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding `name`'s four IDX files, from `data_dir` or else $TFBENCH_DATA_DIR.

    None if neither is set (the caller may then try Keras's cache). Raises
    DatasetUnavailable if one is set but holds no complete copy: it was set on
    purpose, so falling through to a download would hide the mistake.
    """
    _check_name(name, FILE_DATASETS)
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "data_dir / --data-dir"
    elif os.environ.get(ENV_VAR):
        root, origin = Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR
    else:
        return None

    if not root.is_dir():
        raise DatasetUnavailable(
            f"data directory {root} (from {origin}) does not exist or is not a directory; "
            f"point it at the folder that holds {name}/"
        )
    candidates = [root / folder for folder in FOLDERS[name]]
    # The files may also sit directly in the directory, unless its name says it holds another dataset
    # (asking a folder called "mnist" for Fashion-MNIST must not return MNIST).
    other_folders = {f for other, folders in FOLDERS.items() if other != name for f in folders}
    if root.name not in other_folders:
        candidates.append(root)

    partial = []
    for candidate in candidates:
        found = [_find_file(candidate, stem) for stem in IDX_FILES]
        if all(found):
            return candidate
        if any(found):
            missing = [stem for stem, path in zip(IDX_FILES, found) if path is None]
            partial.append(f"{candidate} lacks {', '.join(missing)}")
    looked = ", ".join(f"{c}/" for c in candidates)
    detail = f" ({'; '.join(partial)})" if partial else ""
    raise (DatasetUnavailable if partial else _NoCopyIn)(
        f"no {name} in data directory {root} (from {origin}): looked in {looked} for "
        f"{', '.join(IDX_FILES)} (.gz or not){detail}; put the four IDX files in {root / FOLDERS[name][0]}/ "
        f"or fix the path"
    )


class _NoCopyIn(DatasetUnavailable):
    """The configured data directory exists but holds no file of the dataset at all (not even part of a copy)."""


def _system_dir(name: str) -> Path | None:
    """The first of the system's folders (``SYSTEM_DIRS``) holding all four files of ``name``, or None."""
    for folder in SYSTEM_DIRS.get(name, ()):
        if all(_find_file(folder, stem) for stem in IDX_FILES):
            return folder
    return None


def _system_dirs_looked_at(name: str, lead: str) -> str:
    """' <lead> <folders>/ (Debian's dataset-... package)' for the "where I looked" messages; '' if none
    (no system package holds this dataset)."""
    folders = SYSTEM_DIRS.get(name, ())
    if not folders:
        return ""
    package = f"dataset-{name.replace('_', '-')}"
    return f" {lead} {', '.join(f'{f}/' for f in folders)} (Debian's {package} package)"


def _find_file(folder: Path, stem: str) -> Path | None:
    """The file for `stem` in `folder`: gzipped or not, and also in the common 'train-images.idx3-ubyte' spelling."""
    dotted = stem.replace("-idx", ".idx")
    for filename in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        path = folder / filename
        if path.is_file():
            return path
    return None


def _keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloaded datasets: $KERAS_HOME/datasets, else ~/.keras/datasets.

    Keras itself falls back to /tmp/.keras when its home is not writable, so look there too in that case.
    """
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    dirs = [home / "datasets"]
    if not os.access(home, os.W_OK):
        dirs.append(Path("/tmp/.keras/datasets"))
    return dirs


def _keras_download(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Keras's own loader, which downloads into its cache. Tests replace this function."""
    import keras  # here, not at the top: importing Keras imports TensorFlow, which takes seconds

    module = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
    return module.load_data()


def _short_reason(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, shortened, so that it fits in a one-line error."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- IDX files -----------------------------------------------------------------


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (gzipped if its name ends in .gz) into an array of the shape its header gives.

    Raises DatasetCorrupt if the file is not IDX, or holds more or fewer bytes than its header promises.
    """
    path = Path(path)
    _, raw = _read_bytes(path)
    return _parse_idx(raw, path)[1]


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    """(the file's bytes, its uncompressed content): the same object twice for a file that is not gzipped."""
    blob = path.read_bytes()
    if path.suffix != ".gz":
        return blob, blob
    try:
        return blob, gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError means cut short
        raise DatasetCorrupt(
            f"{path} is not a valid gzip file ({_short_reason(exc)}); re-download it or remove it"
        ) from None


def _parse_idx(raw: bytes, path: Path) -> tuple[int, np.ndarray]:
    """(magic number, array) from the uncompressed bytes of an IDX file."""
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic is None or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        shown = "none (file shorter than 4 bytes)" if magic is None else f"0x{magic:08x}"
        raise DatasetCorrupt(
            f"{path} is not an IDX file: magic number {shown}, expected 0x{IMAGES_MAGIC:08x} (images) "
            f"or 0x{LABELS_MAGIC:08x} (labels); re-download it or remove it"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorrupt(
            f"{path} is truncated: its {ndim}-dimensional header needs {header} bytes, the file has {len(raw)}; "
            "re-download it"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetCorrupt(
            f"{path} is {what}: header promises shape {dims}, i.e. {expected} bytes (uncompressed), "
            f"but it holds {len(raw)} bytes; re-download it"
        )
    # frombuffer does not copy; the array is read-only because `raw` is an immutable bytes object.
    array = np.frombuffer(raw, dtype, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))  # big-endian to native, for the rare non-byte IDX file
    return magic, array


def _verify_checksum(name: str, stem: str, path: Path, blob: bytes, raw: bytes) -> bool:
    """True if a known checksum matches, False if none is known; DatasetCorrupt if one is known but none matches.

    Either route counts: the MD5 of the uncompressed content, or the MD5 of the .gz as originally published.
    """
    checks = []
    if path.suffix == ".gz" and stem in GZ_MD5.get(name, {}):
        checks.append((".gz MD5", GZ_MD5[name][stem], blob))  # first: the .gz is ~5x smaller to hash
    if stem in RAW_MD5.get(name, {}):
        checks.append(("uncompressed MD5", RAW_MD5[name][stem], raw))
    if not checks:
        return False
    mismatches, actual_md5s = [], []
    for what, expected, data in checks:
        actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if actual == expected:
            return True
        mismatches.append(f"{what} is {actual}, expected {expected}")
        actual_md5s.append(actual)
    if not any(what.startswith("uncompressed") for what, _, _ in checks):  # the content may identify the file
        actual_md5s.append(hashlib.md5(raw, usedforsecurity=False).hexdigest())
    known = _known_file(actual_md5s)
    if known is not None and known != (name, stem):
        other, other_stem = known
        where = f" (it belongs in a {FOLDERS[other][0]}/ folder)" if other != name else ""
        raise DatasetCorrupt(
            f"{path} is {DISPLAY_NAMES[other]}'s {other_stem}, not {DISPLAY_NAMES[name]}'s {stem}{where}; "
            f"put {DISPLAY_NAMES[name]}'s {stem} in {path.parent}/ instead"
        )
    raise DatasetCorrupt(
        f"{path} fails its checksum: {' and '.join(mismatches)}; re-download it (or remove it), "
        "or pass --no-verify (tfbench train / run) to use it anyway"
    )


def _known_file(md5s: list[str]) -> tuple[str, str] | None:
    """(dataset, file stem) of a published file whose content or .gz has one of these MD5s, or None."""
    for table in (RAW_MD5, GZ_MD5):
        for dataset, files in table.items():
            for stem, md5 in files.items():
                if md5 in md5s:
                    return dataset, stem
    return None


@dataclass(frozen=True)
class _IdxFile:
    """One IDX file as the cache sees it: everything its decoded, verified content depends on."""

    path: Path
    stem: str  # canonical name, e.g. "train-images-idx3-ubyte", whatever the file is called
    size: int  # size and mtime: a file rewritten on disk is read again
    mtime_ns: int
    raw_md5: str | None  # the checksums in force, so that changing the tables is not masked by the cache
    gz_md5: str | None


def _load_idx_dir(directory: Path, name: str, verify: bool):
    """The four IDX files in `directory`, decoded and checked (from the in-process cache if unchanged)."""
    files = []
    for stem in IDX_FILES:
        path = _find_file(directory, stem)
        if path is None:  # find_data_dir saw it a moment ago; someone is moving files about
            raise DatasetUnavailable(f"{directory} lost {stem} while loading; check the folder and try again")
        stat = path.stat()
        files.append(_IdxFile(path.resolve(), stem, stat.st_size, stat.st_mtime_ns,
                              RAW_MD5.get(name, {}).get(stem), GZ_MD5.get(name, {}).get(stem)))
    return _load_idx_files(name, tuple(files), verify)


@lru_cache(maxsize=8)
def _load_idx_files(name: str, files: tuple[_IdxFile, ...], verify: bool):
    arrays, unverified = [], []
    for file, expected_magic in zip(files, (IMAGES_MAGIC, LABELS_MAGIC, IMAGES_MAGIC, LABELS_MAGIC)):
        blob, raw = _read_bytes(file.path)
        magic, array = _parse_idx(raw, file.path)
        if magic != expected_magic:
            kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
            raise DatasetCorrupt(
                f"{file.path} has magic number 0x{magic:08x}, expected 0x{expected_magic:08x} ({kind}); "
                "the file is damaged or misnamed: re-download it"
            )
        if verify and not _verify_checksum(name, file.stem, file.path, blob, raw):
            unverified.append(file.path)
        arrays.append(array)
    x_train, y_train, x_test, y_test = arrays
    _check_arrays(x_train, y_train, f"{files[0].path} with {files[1].path.name}")
    _check_arrays(x_test, y_test, f"{files[2].path} with {files[3].path.name}")

    if not verify:
        checked = "structure checked; checksums skipped (--no-verify)"
    elif not unverified:
        checked = "checksums verified"
    else:
        which = ("uncompressed files" if all(p.suffix != ".gz" for p in unverified)
                 else ", ".join(p.name for p in unverified))
        verified = len(files) - len(unverified)
        checked = f"checksums verified for {verified} of {len(files)} files, " if verified else ""
        checked += f"structure checked; no known checksum for {which}"
    return (x_train, y_train), (x_test, y_test), f"{files[0].path.parent} (IDX, {checked})"


@lru_cache(maxsize=2)
def _load_npz(path: Path, mtime_ns: int):
    """Keras's cached mnist.npz. No MD5 to check it against here; shapes, dtypes and labels are checked."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            x_train, y_train, x_test, y_test = (npz[key] for key in keys)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetCorrupt(
            f"{path} is not a readable MNIST .npz ({_short_reason(exc)}); delete it so Keras downloads it again, "
            "or pass --data-dir"
        ) from None
    _check_arrays(x_train, y_train, f"{path} (x_train, y_train)")
    _check_arrays(x_test, y_test, f"{path} (x_test, y_test)")
    x_train, y_train, x_test, y_test = (_read_only(a) for a in (x_train, y_train, x_test, y_test))
    return (x_train, y_train), (x_test, y_test), f"{path} (Keras cache, shapes checked)"


def _check_arrays(x: np.ndarray, y: np.ndarray, where: str) -> None:
    """Images (N, 28, 28) uint8 and as many labels, integers 0..9; DatasetCorrupt naming `where` otherwise."""
    fix = "re-download it or remove it"
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DatasetCorrupt(f"{where}: images are {x.dtype} {x.shape}, expected uint8 (N, 28, 28); {fix}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetCorrupt(f"{where}: labels are {y.dtype} {y.shape}, expected integers (N,); {fix}")
    if len(x) != len(y):
        raise DatasetCorrupt(f"{where}: {len(x)} images but {len(y)} labels; the files do not belong together; {fix}")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DatasetCorrupt(f"{where}: labels range over {y.min()}..{y.max()}, expected 0..{NUM_CLASSES - 1}; {fix}")


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view, so a caller cannot change the cached copy for everyone else."""
    view = array.view()
    view.flags.writeable = False
    return view


def _to_split(x: np.ndarray, y: np.ndarray) -> Split:
    """uint8 (N, 28, 28) images and integer labels -> float32 (N, 28, 28, 1) in [0, 1] and int32 labels."""
    images = x.astype(np.float32).reshape(-1, *IMAGE_SHAPE, 1)  # a fresh copy: the cache is untouched
    images /= 255.0  # in place: one 188 MB array for MNIST's train set rather than two
    return Split(images, y.astype(np.int32))


def _check_name(name: str, valid: tuple[str, ...]) -> None:
    if name not in valid:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(valid)}")


# --- splits --------------------------------------------------------------------


def stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[Split, Split]:
    """(train, val): `fraction` of every class goes to val, picked at random with `seed`.

    Each class gives floor or ceil of its exact share, and the total is
    round(fraction * N) (as with sklearn's stratified train_test_split), so the
    class proportions of both parts match the whole to within one example per
    class. Both parts keep the original order; shuffling is the training loop's job.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be in (0, 1), got {fraction!r}; e.g. 0.2")
    if len(x) != len(y):
        raise ConfigError(f"stratified_split got {len(x)} images but {len(y)} labels; pass matching arrays")
    n_val_total = round(fraction * len(y))
    if not 0 < n_val_total < len(y):
        raise ConfigError(
            f"a validation fraction of {fraction} of {len(y)} examples leaves an empty train or validation set; "
            "use a fraction that leaves at least one example on each side"
        )

    classes, counts = np.unique(y, return_counts=True)
    exact = counts * fraction
    n_val = np.floor(exact).astype(np.int64)
    # Largest remainder: the examples still missing from the total go to the classes rounded down the most.
    leftover = n_val_total - int(n_val.sum())
    n_val[np.argsort(-(exact - n_val), kind="stable")[:leftover]] += 1

    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(y), dtype=bool)
    for label, k in zip(classes, n_val):
        in_val[rng.permutation(np.flatnonzero(y == label))[:k]] = True
    return Split(x[~in_val], y[~in_val]), Split(x[in_val], y[in_val])


# --- synthetic data ------------------------------------------------------------

_SYNTHETIC_GRID = 7  # each prototype is a random 7x7 field, upsampled: smooth blobs, not pixel noise
_SYNTHETIC_SHARPNESS = 3.0  # the sigmoid that turns the field into blobs with fairly sharp edges
_SYNTHETIC_BRIGHTNESS = (0.5, 1.0)  # per-example contrast, so that no single pixel value gives the class away
_SYNTHETIC_NOISE = 0.2  # standard deviation of the per-pixel Gaussian noise
_CHUNK = 8192  # examples generated at a time: keeps the temporaries in cache instead of 188 MB each

# Gaussian noise through a lookup table: 256 equally likely values (the quantiles of N(0, sigma)),
# indexed by random bytes. Several times faster than rng.standard_normal, and 256 levels are plenty
# for images that real datasets store as 8-bit pixels.
_NOISE_TABLE = np.array(
    [NormalDist(0.0, _SYNTHETIC_NOISE).inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32
)


def synthetic(n_train: int, n_test: int, seed: int = 0) -> tuple[Split, Split]:
    """(train, test): a learnable stand-in for MNIST, deterministic for a seed.

    Ten smooth random prototype images are drawn from the seed; each example is
    its class's prototype at a random brightness plus Gaussian noise, clipped to
    [0, 1]. A small MLP learns it to well over 90% in one epoch, yet no single
    pixel separates the classes. Classes are balanced (equal counts up to one).
    Train and test come from independent streams of the seed, so the test set
    does not change with n_train.
    """
    for what, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"synthetic {what} must be a number of examples >= 0, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"the synthetic dataset's seed must be an integer >= 0, got {seed!r}")
    prototype_rng, train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    prototypes = _prototypes(prototype_rng)
    return _synthetic_split(prototypes, int(n_train), train_rng), _synthetic_split(prototypes, int(n_test), test_rng)


def _prototypes(rng: np.random.Generator) -> np.ndarray:
    """(10, 784) float32 prototypes: a coarse random field, bilinearly upsampled to 28x28, through a sigmoid."""
    coarse = rng.standard_normal((NUM_CLASSES, _SYNTHETIC_GRID, _SYNTHETIC_GRID))
    # Bilinear upsampling is linear, so it is one matrix applied to the rows and columns: U @ field @ U^T.
    positions = np.linspace(0, _SYNTHETIC_GRID - 1, IMAGE_SHAPE[0])
    low = np.minimum(np.floor(positions).astype(int), _SYNTHETIC_GRID - 2)
    weight = positions - low
    upsample = np.zeros((IMAGE_SHAPE[0], _SYNTHETIC_GRID))
    upsample[np.arange(IMAGE_SHAPE[0]), low] = 1 - weight
    upsample[np.arange(IMAGE_SHAPE[0]), low + 1] = weight
    field = upsample @ coarse @ upsample.T
    prototypes = 1 / (1 + np.exp(-_SYNTHETIC_SHARPNESS * field))
    return prototypes.reshape(NUM_CLASSES, -1).astype(np.float32)


def _synthetic_split(prototypes: np.ndarray, n: int, rng: np.random.Generator) -> Split:
    y = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int32)
    brightness = rng.uniform(*_SYNTHETIC_BRIGHTNESS, size=(n, 1)).astype(np.float32)
    x = np.empty((n, prototypes.shape[1]), np.float32)
    for start in range(0, n, _CHUNK):
        chunk = x[start:start + _CHUNK]  # a view: writing into it fills x
        np.multiply(prototypes[y[start:start + _CHUNK]], brightness[start:start + _CHUNK], out=chunk)
        chunk += _NOISE_TABLE[np.frombuffer(rng.bytes(chunk.size), np.uint8)].reshape(chunk.shape)
        np.clip(chunk, 0.0, 1.0, out=chunk)
    return Split(x.reshape(n, *IMAGE_SHAPE, 1), y)
