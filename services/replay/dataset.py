"""Where the replay's readings come from: the Parking Birmingham CSV packaged with
Parkmate (`birmingham/parking-birmingham.csv.gz` in this package, so a wheel or a fresh
clone has it), or a CSV file the user names. docs/data.md describes the data set, its
licence and attribution (also in `birmingham/NOTICE`).
"""

import gzip
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


def packaged() -> Traversable:
    """The packaged copy: gzip-compressed CSV, 1,479,909 bytes once decompressed."""
    return files("services.replay") / "birmingham" / "parking-birmingham.csv.gz"


def read_text(path: Path | None = None) -> str:
    """The CSV text of `path` (plain or gzip-compressed, told apart by its first bytes),
    or of the packaged copy when `path` is None.

    Raises OSError when the file cannot be read or is a broken or truncated gzip file,
    and ValueError (UnicodeDecodeError) when it is not UTF-8 text.
    """
    raw = packaged().read_bytes() if path is None else path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise OSError(f"{path or 'the packaged data'} is a gzip file cut short") from None
    return raw.decode("utf-8")
