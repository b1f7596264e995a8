"""PID 1 of the ``unshare`` backend: prepares the new namespaces, then runs the program.

Runs as root (or root of a user namespace) inside fresh PID, mount, network, IPC and UTS
namespaces, started as ``python -I -S -B -c SOURCE CONFIG_JSON`` by
:func:`rft.sandbox.commands.unshare_argv`. It makes the mounts private, puts tmpfs over
``/tmp`` and the hidden directories, binds the read-only directories at their own paths
(read-only, even inside ``/tmp`` or a hidden directory: the interpreter's installation
when the sandbox uid could not reach it, libraries offered to sandboxed Python), copies
the input files into a new working directory,
forks the program as the sandbox uid and stays as PID 1 until it exits (PID 1 exiting
kills everything left in the PID namespace). It exits with the program's status, or
``128 + N`` when the program died of signal N.

Standard library only; importing this module runs nothing.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

TYPE_CHECKING = False  # typing itself is not imported: every run pays for what PID 1 imports
if TYPE_CHECKING:
    from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
#: The program's working directory, on the private ``/tmp``.
WORKDIR = "/tmp/sandbox"
#: Where a Python installation is bound read-only for a config that names it as
#: ``rebind`` (rftkit now binds such an installation at its own path, see ``read_only``).
REBIND_DIR = "/tmp/.rft-python"
#: Flags of a read-only remount (``nosuid``/``nodev`` kept: a user namespace may not drop them).
RO_REMOUNT = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV


def mount(libc: Any, src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """``mount(2)`` through libc; raises OSError naming ``target`` on failure."""

    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def tmpfs_options(disk: int, writable: bool) -> str:
    """Mount options of a tmpfs: ``disk`` bytes, world-writable (sticky), or a small read-only-ish one.

    >>> tmpfs_options(1024, True), tmpfs_options(1024, False)
    ('size=1024,mode=1777', 'size=4096,mode=755')
    """
    return f"size={disk},mode=1777" if writable else "size=4096,mode=755"


def relocate(argv: list[str], rebind: str | None) -> list[str]:
    """``argv`` with its interpreter moved under :data:`REBIND_DIR` when it lies in ``rebind``.

    >>> relocate(["/root/py/bin/python", "x"], "/root/py")
    ['/tmp/.rft-python/bin/python', 'x']
    >>> relocate(["/usr/bin/python3"], "/root/py")
    ['/usr/bin/python3']
    """
    out = list(argv)
    if rebind and out and out[0].startswith(rebind + "/"):
        out[0] = REBIND_DIR + out[0][len(rebind) :]
    return out


def open_read_only(dirs: list[str]) -> list[tuple[int, str]]:
    """``O_PATH`` handles on the read-only directories, taken before ``/tmp`` and the hidden
    directories are covered (a handle still reaches a directory that is covered later)."""
    return [(os.open(d, os.O_PATH | os.O_DIRECTORY), d) for d in dirs]


def bind_read_only(libc: Any, fd: int, target: str) -> None:
    """Bind the directory behind ``fd`` at ``target`` (created if missing), read-only."""
    os.makedirs(target, 0o755, exist_ok=True)
    mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    mount(libc, None, target, None, RO_REMOUNT)
    os.close(fd)


def read_inputs(host_dir: str, names: list[str]) -> dict[str, bytes]:
    """The input files, read from the host directory before ``/tmp`` is covered."""
    inputs = {}
    for name in names:
        with open(os.path.join(host_dir, name), "rb") as f:
            inputs[name] = f.read()
    return inputs


def write_inputs(work: str, inputs: dict[str, bytes], uid: int | None) -> None:
    """Create ``work`` with the input files in it, owned by ``uid`` when one is given."""
    os.mkdir(work, 0o755)
    for name, data in inputs.items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    if uid is not None:
        for root, dirs, names in os.walk(work):
            for n in [root] + [os.path.join(root, x) for x in names + dirs]:
                os.chown(n, uid, uid)


def exit_status(wait_status: int) -> int:
    """The status PID 1 exits with: the program's own, or ``128 + N`` for death by signal N.

    >>> exit_status(3 << 8), exit_status(signal.SIGKILL)
    (3, 137)
    """
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> None:
    """Set up the namespaces as ``argv[1]`` (JSON) says, run the program, exit with its status."""
    cfg = json.loads(argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    inputs = read_inputs(cfg["host_dir"], cfg["files"])
    read_only = open_read_only(cfg.get("read_only", []))
    mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options(cfg["disk"], True))
    prog = cfg["argv"]
    if cfg["rebind"]:
        os.mkdir(REBIND_DIR, 0o755)
        mount(libc, cfg["rebind"], REBIND_DIR, None, MS_BIND | MS_REC)
        mount(libc, None, REBIND_DIR, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
        prog = relocate(prog, cfg["rebind"])
    for d, writable in cfg["hide"]:
        if os.path.isdir(d) and not os.path.islink(d):
            mount(libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options(cfg["disk"], writable))
    for fd, d in read_only:  # at their own paths, also inside /tmp or a hidden directory
        bind_read_only(libc, fd, d)
    uid = cfg["uid"]
    write_inputs(WORKDIR, inputs, uid)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(WORKDIR)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.execve(prog[0], prog, cfg["env"])
        except BaseException as err:  # reported on the program's stderr; 127 = could not start
            os.write(2, f"sandbox: cannot start {prog[0]!r}: {err}\n".encode())
        os._exit(127)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die (and take the namespace along) with unshare
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            os._exit(127)
        if done == pid:
            break
    os._exit(exit_status(status))


if __name__ == "__main__":
    main(sys.argv)
