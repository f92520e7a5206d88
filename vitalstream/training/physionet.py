"""Reading PhysioNet/CinC 2019 challenge files (`.psv`, one ICU stay per file, one row an hour).

Only the inputs a bedside monitor or wearable really has are kept: heart rate, SpO2,
temperature, systolic/mean/diastolic pressure and respiration rate, plus age, sex and
ICU length of stay. Laboratory columns are never read into the model's inputs; FiO2 is
read only to give the NEWS2 baseline its supplemental-oxygen points (FiO2 above 0.21). The ICU
type (Unit1 medical, Unit2 surgical) is read only to split the pseudo-external check
(`vitalstream.training.transfer`); it is not a model input.

>>> cohort = read_psv_dir(SAMPLE_DIR)
>>> cohort.n_stays > 10 and cohort.values.shape[1] == len(KEPT_COLUMNS)
True
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

# Columns read from each file, in this order. SepsisLabel is NaN when a file has none
# (the challenge's hidden test files are written without it).
KEPT_COLUMNS: tuple[str, ...] = (
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "Age", "Gender", "ICULOS", "SepsisLabel",
    "Unit1", "Unit2", "FiO2",
)
COL: dict[str, int] = {name: i for i, name in enumerate(KEPT_COLUMNS)}

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "physionet2019_sample"
SET_A_ARCHIVE = "physionet2019_training_setA.tar.gz"
HOW_TO_GET = (
    "get the PhysioNet/CinC Challenge 2019 training data from "
    "https://physionet.org/content/challenge-2019/ (training_setA), then point "
    "--data-dir or VITALSTREAM_DATA_DIR at the folder holding "
    f"{SET_A_ARCHIVE} or the extracted .psv files"
)


class DataMissing(Exception):
    """The data files are not where they were looked for; the message says how to get them."""


@dataclasses.dataclass(frozen=True)
class Cohort:
    """Stays stacked row-wise: rows of stay ``i`` are ``values[offsets[i]:offsets[i+1]]``."""

    names: list[str]
    offsets: np.ndarray
    values: np.ndarray

    @property
    def n_stays(self) -> int:
        return len(self.names)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, COL[name]]

    def stay_index(self) -> np.ndarray:
        """The stay number of every row."""
        return np.repeat(np.arange(self.n_stays), np.diff(self.offsets))

    def has_labels(self) -> bool:
        return bool(len(self.values)) and not np.isnan(self.column("SepsisLabel")).any()

    def subset(self, stays: Sequence[int] | np.ndarray) -> Cohort:
        stays = np.asarray(stays, dtype=np.int64)
        lengths = np.diff(self.offsets)[stays]
        rows = np.concatenate(
            [np.arange(self.offsets[i], self.offsets[i + 1]) for i in stays]
        ) if len(stays) else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Cohort([self.names[i] for i in stays], offsets, self.values[rows])


def parse_psv(text: bytes) -> np.ndarray:
    """One `.psv` file's bytes to its rows of KEPT_COLUMNS (NaN where missing or absent)."""
    header, _, body = text.partition(b"\n")
    columns = header.decode("ascii").strip().split("|")
    n_cols = len(columns)
    with warnings.catch_warnings():  # fromstring in text mode is the fast path numpy keeps
        warnings.simplefilter("ignore", DeprecationWarning)
        flat = np.fromstring(body.replace(b"|", b" ").replace(b"\n", b" "), sep=" ")
    if n_cols == 0 or flat.size % n_cols:
        raise ValueError("rows do not all have the header's number of columns")
    table = flat.reshape(-1, n_cols)
    out = np.full((len(table), len(KEPT_COLUMNS)), np.nan)
    for j, name in enumerate(KEPT_COLUMNS):
        if name in columns:
            out[:, j] = table[:, columns.index(name)]
    if "ICULOS" not in columns:  # keep the hourly clock even if the column is absent
        out[:, COL["ICULOS"]] = np.arange(1, len(table) + 1)
    return out


def _stack(named_tables: Iterable[tuple[str, np.ndarray]]) -> Cohort:
    names: list[str] = []
    tables: list[np.ndarray] = []
    for name, table in named_tables:
        names.append(name)
        tables.append(table)
    lengths = [len(t) for t in tables]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate(tables) if tables else np.zeros((0, len(KEPT_COLUMNS)))
    return Cohort(names, offsets, values)


def psv_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The `.psv` files of a folder, sorted by name; raises DataMissing when there are none."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataMissing(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".psv" and p.is_file())
    if not files:
        raise DataMissing(f"no .psv files in {folder}")
    return files


def read_psv_dir(directory: str | os.PathLike[str], progress: bool = False) -> Cohort:
    """Every `.psv` file of a folder; a file that cannot be parsed raises ValueError naming it."""
    files = psv_files(directory)

    def tables() -> Iterator[tuple[str, np.ndarray]]:
        for path in _progress(files, progress, "reading"):
            try:
                yield path.stem, parse_psv(path.read_bytes())
            except ValueError as exc:
                raise ValueError(f"{path.name}: {exc}") from exc

    return _stack(tables())


def read_psv_tar(archive: str | os.PathLike[str], progress: bool = False) -> Cohort:
    """Every `.psv` member of a challenge tarball, read without extracting, sorted by name."""
    found: list[tuple[str, np.ndarray]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in _progress(tar, progress, "reading"):
            if member.isfile() and member.name.endswith(".psv"):
                handle = tar.extractfile(member)
                if handle is not None:
                    found.append((Path(member.name).stem, parse_psv(handle.read())))
    found.sort(key=lambda item: item[0])
    return _stack(found)


def default_data_dir() -> Path:
    """VITALSTREAM_DATA_DIR, else ``../shared/data`` beside the project checkout."""
    env = os.environ.get("VITALSTREAM_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def load_set_a(data_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> Cohort:
    """Training set A from a folder holding the tarball, ``training_setA/`` or the .psv files."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if (folder / SET_A_ARCHIVE).is_file():
        return read_psv_tar(folder / SET_A_ARCHIVE, progress)
    for candidate in (folder / "training_setA", folder):
        if candidate.is_dir() and any(candidate.glob("*.psv")):
            return read_psv_dir(candidate, progress)
    raise DataMissing(f"no PhysioNet 2019 set A in {folder}: {HOW_TO_GET}")


def _progress(items: Iterable, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=" files", leave=False)
