"""A seccomp filter for the sandbox's candidate process, written as classic BPF with ctypes (no libseccomp).

It answers EPERM to the system calls a test program never needs and that widen the kernel's attack
surface or leave the sandbox: new namespaces (`unshare`, `setns`, `clone` with a CLONE_NEW* flag),
mounts and the new mount API, `ptrace` and cross-process memory access, kernel modules, kexec, bpf,
perf, keyrings, userfaultfd, io_uring, handle-based opens, swap, reboot, clock setting. `clone3`
answers ENOSYS (its flags sit behind a pointer the filter cannot read), so libc falls back to `clone`,
whose flags it can. A call from another ABI (x32, i386) kills the process. x86-64 only: elsewhere
`available()` is False and the sandbox runs without it (README, threat model).
"""
import ctypes
import errno
import os

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
AUDIT_ARCH_X86_64, X32_SYSCALL_BIT = 0xC000003E, 0x40000000
LD_W_ABS, JEQ_K, JSET_K, JGE_K, RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
RET_ALLOW, RET_KILL_PROCESS, RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
SYS_CLONE, SYS_CLONE3 = 56, 435
DENIED = {  # x86-64 numbers
    "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153, "pivot_root": 155, "adjtimex": 159,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
    "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442, "memfd_secret": 447,
}


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def available():
    return os.uname().machine == "x86_64"


def program():
    """The filter as (code, jt, jf, k) instructions."""
    eperm = RET_ERRNO | errno.EPERM
    prog = [(LD_W_ABS, 0, 0, OFF_ARCH), (JEQ_K, 1, 0, AUDIT_ARCH_X86_64), (RET_K, 0, 0, RET_KILL_PROCESS),
            (LD_W_ABS, 0, 0, OFF_NR), (JGE_K, 0, 1, X32_SYSCALL_BIT), (RET_K, 0, 0, RET_KILL_PROCESS),
            (JEQ_K, 0, 1, SYS_CLONE3), (RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
            # clone: refuse a flag word with any CLONE_NEW* bit (its low 32 bits are args[0] at offset 16)
            (JEQ_K, 0, 4, SYS_CLONE), (LD_W_ABS, 0, 0, OFF_ARG0), (JSET_K, 0, 1, CLONE_NEW_FLAGS),
            (RET_K, 0, 0, eperm), (RET_K, 0, 0, RET_ALLOW)]
    for nr in sorted(DENIED.values()):
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, eperm)]
    return prog + [(RET_K, 0, 0, RET_ALLOW)]


def install(libc):
    """Install the filter on this process (and all it forks); needs no_new_privs set first. OSError on failure."""
    prog = program()
    filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
    fprog = SockFprog(len(prog), ctypes.cast(filters, ctypes.POINTER(SockFilter)))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {errno.errorcode.get(err, err)}")
