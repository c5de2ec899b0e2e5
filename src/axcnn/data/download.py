"""Fetching dataset files over HTTP(S) without ever leaving a half-written file in place.

Every file is streamed into a temporary file beside its destination and renamed onto it only
once it is complete (and its MD5 matches, where one is known). Archives are extracted into a
temporary folder, member by member after checking each name (no absolute paths, no ``..``,
no links or devices), and the finished folder is renamed into place.

The base URL of every dataset can be replaced by a mirror, given as ``mirror=`` or by the
environment variable ``AXCNN_DATASET_MIRROR``; files are then fetched from
``{mirror}/{dataset}/{filename}``, e.g. ``http://127.0.0.1:8000/mnist/train-images-idx3-ubyte.gz``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from axcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MIRROR_ENV = "AXCNN_DATASET_MIRROR"
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset and the official URLs it is published at (tried in order)."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None


def _idx_files(bases: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(n, tuple(b + n for b in bases)) for n in names)


#: Official sources. IDX files carry no checksum here because re-packaged copies (Debian,
#: mirrors) differ in their gzip bytes; their content is validated when parsed.
SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _idx_files(("https://ossci-datasets.s3.amazonaws.com/mnist/",
                         "http://yann.lecun.com/exdb/mnist/")),
    "fashion_mnist": _idx_files(("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)),
    "cifar10": (RemoteFile("cifar-10-python.tar.gz",
                           ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                           md5="c58f30108f718f92721af3b95e74349a"),),
    "cifar100": (RemoteFile("cifar-100-python.tar.gz",
                            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                            md5="eb9058c3a382ffc7106e4002c42a8d85"),),
}


def resolve_mirror(mirror: str | None = None) -> str | None:
    """The mirror base URL: the argument, else ``$AXCNN_DATASET_MIRROR``, else None."""
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror is not None:
        scheme = urllib.parse.urlparse(mirror).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(
                f"dataset mirror {mirror!r} is not an http(s) URL; expected e.g. "
                f"'http://127.0.0.1:8000' (set by mirror= or ${MIRROR_ENV})."
            )
    return mirror


def urls_for(dataset: str, remote: RemoteFile, mirror: str | None = None) -> tuple[str, ...]:
    """Where to fetch ``remote`` from: ``{mirror}/{dataset}/{filename}`` or the official URLs."""
    mirror = resolve_mirror(mirror)
    if mirror:
        return (f"{mirror.rstrip('/')}/{dataset}/{remote.filename}",)
    return remote.urls


def download_file(
    urls: tuple[str, ...] | list[str] | str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    offline_hint: str = "",
) -> Path:
    """Fetch the first URL that works into ``dest`` atomically; DataError if none does."""
    dest = Path(dest)
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            failures.append(f"{url}: not an http(s) URL")
            continue
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s -> %s", url, dest)
            digest = hashlib.md5()
            received = 0
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                expected_len = resp.headers.get("Content-Length")
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if expected_len is not None and int(expected_len) != received:
                raise OSError(f"received {received} of {expected_len} bytes (connection cut)")
            if md5 is not None and digest.hexdigest() != md5:
                raise OSError(f"MD5 {digest.hexdigest()} differs from the expected {md5} (corrupt or altered file)")
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise DataError(
        f"could not download {dest.name}: " + "; ".join(failures)
        + ". Check the network connection or the mirror URL"
        + (f". Offline alternatives: {offline_hint}" if offline_hint else ".")
    )


def file_md5(path: str | os.PathLike) -> str:
    """The hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, md5: str | None) -> None:
    """DataError unless the file's MD5 is ``md5`` (None: nothing to check)."""
    if md5 is not None and (actual := file_md5(path)) != md5:
        raise DataError(
            f"{path} has MD5 {actual}, expected {md5}: it is incomplete, altered or another "
            "release. Delete it and download it again (download=True)."
        )


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise DataError(
            f"archive {archive} contains the unsafe member name {name!r} (absolute or with '..'); "
            "refusing to extract it. Delete the archive and obtain a genuine copy."
        )
    return path


def extract_tar(archive: str | os.PathLike, dest_dir: str | os.PathLike, top: str) -> Path:
    """Extract the folder ``top`` of a tar archive into ``dest_dir/top``, safely and atomically.

    Only regular files and folders under ``top/`` are accepted; anything else (links, devices,
    absolute or ``..`` paths, members outside ``top``) raises DataError. An existing
    ``dest_dir/top`` is renamed aside to ``top.old-<time>`` first.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    rel = _safe_member_path(member.name, archive)
                    if not rel.parts or rel.parts[0] != top:
                        raise DataError(
                            f"archive {archive} has the member {member.name!r} outside the "
                            f"expected folder {top!r}; is it the right archive?"
                        )
                    target = staging.joinpath(*rel.parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        assert src is not None
                        with src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
                    else:
                        raise DataError(
                            f"archive {archive} has the member {member.name!r} that is not a "
                            "regular file or folder (link or device); refusing to extract it."
                        )
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(
                f"cannot extract {archive}: {exc}. The archive is truncated or corrupt; delete it "
                "and download it again."
            ) from exc
        if not (staging / top).is_dir():
            raise DataError(f"archive {archive} does not contain the folder {top!r}; is it the right archive?")
        final = dest_dir / top
        if final.exists():
            aside = dest_dir / f"{top}.old-{time.strftime('%Y%m%d-%H%M%S')}"
            log.warning("moving the existing incomplete %s aside to %s", final, aside)
            os.replace(final, aside)
        os.replace(staging / top, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
