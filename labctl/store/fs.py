"""Where a store lives: a local directory or any pyarrow filesystem URI (``s3://bucket/prefix``).

Everything the store writes goes through ``write_atomic``: locally a hidden temporary
file, fsynced and renamed; on object storage a single PUT, which is atomic by itself
(an object is either there whole or not at all). Readers never see half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def is_remote(root: str | Path) -> bool:
    text = str(root)
    return "://" in text and not text.startswith("file://")


class StoreFS:
    def __init__(self, root: str | Path) -> None:
        import pyarrow.fs as pafs

        self.uri = str(root)
        self.remote = is_remote(root)
        if self.remote:
            try:
                self.fs, self.base = pafs.FileSystem.from_uri(self.uri)
            except (ValueError, OSError) as err:
                from labctl.errors import UsageError

                from labctl.redact import redact

                raise UsageError(redact(f"data location {self.uri!r}: {err}")) from None
        else:
            self.fs = pafs.LocalFileSystem()
            self.base = str(Path(str(root).removeprefix("file://")).absolute())

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def display(self) -> str:
        from labctl.redact import redact

        return redact(self.uri) if self.remote else self.base

    # ---- writing -------------------------------------------------------------------

    def write_atomic(self, path: str, data: bytes | memoryview) -> None:
        if self.remote:
            with self.fs.open_output_stream(path) as sink:
                sink.write(data)
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as sink:
                os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the lab's data from the lab
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temporary, path)
        except BaseException:
            _unlink_quietly(temporary)  # a full disk must not also be left holding half a file
            raise
        _fsync_directory(directory)

    def write_table_atomic(self, path: str, table: Any, **options: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = pa.BufferOutputStream()  # Arrow's own buffer: no copy of the file on the way out
        pq.write_table(table, buffer, **options)
        self.write_atomic(path, memoryview(buffer.getvalue()))

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def rename_dir(self, source: str, target: str) -> None:
        """Atomically (local stores only: object storage has no directories to rename)."""
        os.rename(source, target)
        _fsync_directory(os.path.dirname(target))

    def remove_dirs(self, parent: str, prefix: str) -> None:
        """Remove the directories under ``parent`` whose names start with ``prefix`` (local stores)."""
        import shutil

        if self.remote or not os.path.isdir(parent):
            return
        for name in os.listdir(parent):
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)

    def makedirs(self, path: str) -> None:
        if not self.remote:
            os.makedirs(path, exist_ok=True)

    # ---- reading -------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as source:
                return source.read()
        except (FileNotFoundError, OSError):
            return None

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` (empty when it does not exist)."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError:
            return []
        return sorted(info.base_name for info in infos)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(path: str) -> None:
    """Make a rename durable (POSIX); harmless where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
