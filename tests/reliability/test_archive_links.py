"""Image-folder archives with links or absolute names that point outside the archive.

Archives are read in memory and never extracted, so nothing can be written anywhere; these
tests check that such members are refused with a message naming the archive and the member
(by the library, the CLI and the job queue), that the file a link points at is never even
opened, and that nothing appears on disk outside the test's own files.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from cifar_archives import write_cifar100_archive, write_image_folder
from file_access import watch
from many_runs import folder_digest

from cifar_core.cli import main
from cifar_core.data import count_training_images, load_dataset
from cifar_core.errors import DataError
from cifar_core.jobs import submit_job
from cifar_core.runs.store import runs_root


@pytest.fixture(scope="module")
def valid_tree(tmp_path_factory) -> Path:
    """images/{train,test}/<class>/*.png: a valid data set to hide the hostile member in."""
    return write_image_folder(tmp_path_factory.mktemp("valid"))


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside every archive, with a file a link could point at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.png").write_bytes(b"secret: must never be read through the archive")
    return folder


def _member(kind: str, outside: Path) -> tarfile.TarInfo:
    secret = outside / "secret.png"
    if kind == "symlink-absolute":
        info = tarfile.TarInfo("images/train/cat/9990.png")
        info.type, info.linkname = tarfile.SYMTYPE, str(secret)
    elif kind == "symlink-relative":
        info = tarfile.TarInfo("images/train/cat/9991.png")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../../outside/secret.png"
    elif kind == "symlink-folder":
        info = tarfile.TarInfo("images/train/bird")
        info.type, info.linkname = tarfile.SYMTYPE, str(outside)
    elif kind == "hardlink-absolute":
        info = tarfile.TarInfo("images/train/cat/9992.png")
        info.type, info.linkname = tarfile.LNKTYPE, str(secret)
    elif kind == "hardlink-relative":
        info = tarfile.TarInfo("images/train/cat/9993.png")
        info.type, info.linkname = tarfile.LNKTYPE, "../../outside/secret.png"
    elif kind == "absolute-name":
        info = tarfile.TarInfo(str(outside / "images" / "train" / "cat" / "evil.png"))
    else:
        raise ValueError(kind)
    return info


def _hostile_archive(path: Path, valid_tree: Path, member: tarfile.TarInfo,
                     first: bool) -> Path:
    payload = b"\x89PNG written by the archive"
    with tarfile.open(path, "w:gz") as tar:
        if not first:
            tar.add(valid_tree, arcname="images")
        if member.isfile():
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            tar.addfile(member)
        if first:
            tar.add(valid_tree, arcname="images")
    return path


KINDS = ["symlink-absolute", "symlink-relative", "symlink-folder", "hardlink-absolute",
         "hardlink-relative", "absolute-name"]


@pytest.mark.parametrize("first", [True, False], ids=["first", "last"])
@pytest.mark.parametrize("kind", KINDS)
def test_link_and_absolute_members_are_refused_and_nothing_is_written(
        tmp_path, valid_tree, outside, kind, first):
    member = _member(kind, outside)
    archive = _hostile_archive(tmp_path / f"{kind}.tar.gz", valid_tree, member, first)
    before = {p: folder_digest(p) for p in (tmp_path, valid_tree.parent)}
    with watch(outside) as touched:
        for load in (lambda: load_dataset(archive, show_progress=False),
                     lambda: count_training_images(archive)):
            with pytest.raises(DataError) as info:
                load()
            message = str(info.value)
            assert str(archive) in message and member.name in message
            assert "link member" in message or "outside the archive" in message
    assert touched == []  # the secret was never opened, listed or written
    assert {p: folder_digest(p) for p in before} == before  # nothing written anywhere
    assert not (outside / "images").exists()


def test_cli_and_job_queue_refuse_the_archive_before_any_run_folder(
        tmp_path, valid_tree, outside, capsys):
    archive = _hostile_archive(tmp_path / "evil.tar.gz", valid_tree,
                               _member("symlink-absolute", outside), first=False)
    artifacts = tmp_path / "artifacts"
    code = main(["train", "--model", "1", "--profile", "quick", "--epochs", "1",
                 "--data", str(archive), "--artifacts", str(artifacts)])
    err = capsys.readouterr().err
    assert code == 2 and "refused link member 'images/train/cat/9990.png'" in err
    assert "Traceback" not in err
    with pytest.raises(DataError, match="refused link member"):
        submit_job(artifacts, model=1, data=str(archive), overrides={"epochs": 1})
    assert not runs_root(artifacts).exists()  # no run folder, no job process


def test_cifar100_archive_with_a_link_member_is_refused(tmp_path, outside):
    archive = tmp_path / "cifar-100-python.tar.gz"
    write_cifar100_archive(archive)
    # Rebuild it with `train` replaced by a link to the secret.
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            if info.name.endswith("/train"):
                info = tarfile.TarInfo(info.name)
                info.type, info.linkname = tarfile.SYMTYPE, str(outside / "secret.png")
                tar.addfile(info)
            else:
                tar.addfile(info, io.BytesIO(data))
    with watch(outside) as touched, pytest.raises(DataError) as info:
        load_dataset(archive)
    assert "cifar-100-python/train: not a regular file" in str(info.value)
    assert touched == []


def test_image_folder_with_a_symlink_out_of_it_is_refused(tmp_path, outside):
    folder = write_image_folder(tmp_path / "data")
    (folder / "train" / "cat" / "9999.png").symlink_to(outside / "secret.png")
    with watch(outside) as touched:
        for load in (lambda: load_dataset(folder, show_progress=False),
                     lambda: count_training_images(folder)):
            with pytest.raises(DataError, match="refused symlink pointing outside"):
                load()
    assert touched == []
