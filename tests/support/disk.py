"""A real small filesystem (tmpfs) that tests fill up: disk-full faults without mocks.

Mounting needs root (CAP_SYS_ADMIN); where it is refused the tests that need it skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path


class SmallDisk:
    """A tmpfs of `size_kb` mounted on a fresh directory until `close()`."""

    def __init__(self, size_kb: int = 2048):
        self.path = Path(tempfile.mkdtemp(prefix="smalldisk-"))
        self.mounted = False
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            self.path.rmdir()
            raise OSError(f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}")
        self.mounted = True

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Fill the filesystem up to `leave` free bytes with a ballast file."""
        with open(self.path / ".ballast", "ab") as f:
            while self.free() > leave:
                try:
                    f.write(b"\0" * min(65536, max(1, self.free() - leave)))
                    f.flush()
                except OSError:
                    break

    def release(self) -> None:
        """Give the ballast back (the disk has room again)."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / ".ballast").unlink()

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False
        with contextlib.suppress(OSError):
            self.path.rmdir()
