"""Where a number came from: the library's source hash, package versions, the git commit, the machine."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_hash(length: int = 12) -> str:
    """SHA-256 over every ``.py`` file of ``kr_lib`` (path and content), truncated to ``length`` hex digits.

    Executed pages print it and the book build keys its cache on it, so a change to the library
    re-executes the pages that depend on it (jupyter-cache alone keys on cell code only).
    """
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:length]


def files_hash(paths, root: Path | None = None, length: int = 12) -> str:
    """SHA-256 over the files at ``paths`` (files, or folders taken whole; relative to the checkout), path
    and content, in sorted order, truncated to ``length`` hex digits. A missing path counts as empty, so
    an installed package without the notebooks still gets a (different) hash rather than an error.

    Unlike the commit, it is the code that was on disk, uncommitted changes included: records that share it
    ran the same code whatever commit they name.
    """
    root = root or PACKAGE_DIR.parent
    digest = hashlib.sha256()
    for rel in sorted(map(str, paths)):
        path = root / rel
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        else:
            files = [path] if path.is_file() else []
        digest.update(rel.encode())
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:length]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        root = PACKAGE_DIR.parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of the libraries that decide a result."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("kr-lib", "torch", "torchvision", "tensorly", "numpy", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    out["kr_lib_source"] = source_hash()
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str | int | None]:
    """The machine a run happened on: CPU (model and the instruction set torch's kernels use), core count,
    GPU name when there is one. The instruction set matters for reproduction: oneDNN and ATen pick their
    kernels by it, so the same run rounds differently on an AVX2 and an AVX-512 CPU (``kr reproduce``)."""
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(), "gpu": gpu}


def stamp() -> str:
    """One line for the top of an executed page: library version, source hash and torch version."""
    import torch

    from . import __version__

    commit = git_commit()
    short = (commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")) if commit else "n/a"  # fits a page line
    return f"kr_lib {__version__} (source {source_hash()}), torch {torch.__version__}, commit {short}"


def code_changes(commits, paths, root: Path | None = None) -> list[dict] | None:
    """The commits that changed any of ``paths`` between the oldest and the newest of ``commits`` (in commit
    order): one dict per commit with ``commit`` (short hash), ``subject`` and ``files`` (those of ``paths``
    it touched). ``[]`` when none did. None when it cannot be told here: no git, or a commit missing from
    this checkout's history (a shallow clone, a commit never pushed).

    Records name the commit they ran at; a sweep that ran while the library was being developed spans many
    commits, and this says whether anything that decides a run's numbers changed in between.
    """
    root = root or PACKAGE_DIR.parent
    commits = sorted({str(c).removesuffix("-dirty") for c in commits if c})
    if not commits:
        return []

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        full = []
        for c in commits:
            out = git("rev-parse", "--verify", "--quiet", f"{c}^{{commit}}")
            if out.returncode != 0:
                return None
            full.append(out.stdout.strip())
        # order by the history itself (topological, newest first), not by timestamps that can tie
        order = git("rev-list", "--topo-order", *full)
        if order.returncode != 0:
            return None
        position = {sha: i for i, sha in enumerate(order.stdout.split())}
        ranked = sorted(set(full), key=position.__getitem__)
        newest, oldest = ranked[0], ranked[-1]
        log = git("log", "--reverse", "--format=%x00%h %s", "--name-only", f"{oldest}..{newest}", "--",
                  *map(str, paths))
        if log.returncode != 0:
            return None
    except (OSError, subprocess.SubprocessError):
        return None
    changes = []
    for entry in log.stdout.split("\x00")[1:]:
        head, *files = entry.strip().splitlines()
        short, _, subject = head.partition(" ")
        changes.append({"commit": short, "subject": subject, "files": [f for f in files if f]})
    return changes


def display_path(path) -> str:
    """A path as a page may print it: relative to the checkout when inside it, ``~/...`` under the home
    folder, else as is (system folders such as a Debian package's name no machine)."""
    path = Path(path).resolve()
    for root, prefix in ((PACKAGE_DIR.parent, ""), (Path.home(), "~/")):
        try:
            rel = path.relative_to(root.resolve())
        except ValueError:
            continue
        return f"{prefix}{rel}" if str(rel) != "." else (prefix.rstrip("/") or ".")
    return str(path)
