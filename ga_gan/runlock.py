"""One writer per run folder: an advisory `flock` on `<run folder>/.ga-gan.lock`.

The lock is held for the life of the process (the open file descriptor holds it) and records
the holder's pid, host and start time, so a second `ga-gan` on the same folder refuses with
one line naming them instead of "resuming" a run that is still being written. The kernel
drops a flock when its process dies, however it dies (kill -9 included), so a lock left by a
dead process is simply taken over; the stale pid in the file is only a record.

Scope: a local (or NFS, where the client maps flock to POSIX locks) run folder. Checkpoints in
`checkpoint_dir=gs://...` are covered only through the run folder that owns them: two runs with
different `--out` folders pointed at one gs:// `checkpoint_dir` are not detected.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ga_gan.errors import UserError

LOCK_NAME = ".ga-gan.lock"


class RunLock:
    """Exclusive, non-blocking lock on a folder (created if missing)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.created_folder = False

    def acquire(self) -> "RunLock":
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created_folder = True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(_read(fd))
                os.close(fd)
                raise UserError(f"run folder {self.folder} is in use by {holder}; wait for it "
                                f"to finish or choose another --out") from None
            # The file may have been unlinked (by a holder cleaning up) between open and flock:
            # then our lock guards nothing, so try again on the file now at that path.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self, *, remove_created: bool = False) -> None:
        """Drop the lock; `remove_created`: also remove a folder this lock created, if it holds
        nothing else (a run that failed before writing anything leaves no trace)."""
        if self._fd is None:
            return
        if remove_created and self.created_folder:
            self.path.unlink(missing_ok=True)  # still locked: nobody can be using this inode
            try:
                self.folder.rmdir()
            except OSError:
                pass
        os.close(self._fd)
        self._fd = None

    def __del__(self):  # a Runner built but never run does not keep its folder locked
        self.release()


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(record: dict) -> str:
    if not record:
        return "another ga-gan process"
    return (f"another ga-gan process (pid {record.get('pid', '?')} on host "
            f"{record.get('host', '?')}, started {record.get('started', '?')})")
