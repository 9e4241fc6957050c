"""The files module alone: atomic writes with a fixed mode, no symlinks followed, restore,
the lock in the private state directory, and the record of what NGINX loaded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lbsync import files
from lbsync.errors import ConfigError, Locked, SyncError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_is_atomic_with_a_fixed_mode_not_the_old_files(tmp_path: Path) -> None:
    out = tmp_path / "up.conf"
    out.write_text("old\n")
    out.chmod(0o666)  # a mode planted by someone else is not inherited
    files.write_atomic(out, b"new\n")
    assert out.read_bytes() == b"new\n" and mode(out) == 0o644
    fresh = tmp_path / "fresh.conf"
    files.write_atomic(fresh, b"x\n")
    assert mode(fresh) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    link = tmp_path / "up.conf"
    link.symlink_to(victim)
    with pytest.raises(SyncError, match="symlink"):
        files.write_atomic(link, b"owned\n")
    with pytest.raises(SyncError, match="symlink"):
        files.read(link)
    assert victim.read_text() == "root:x:0:0\n"


@pytest.mark.parametrize("previous", [b"before\n", None])
def test_restore_puts_back_the_same_bytes_or_no_file(tmp_path: Path,
                                                     previous: bytes | None) -> None:
    out = tmp_path / "up.conf"
    files.write_atomic(out, b"new\n")
    files.restore(out, previous)
    assert files.read(out) == previous


def test_lock_excludes_a_second_holder_and_lives_in_the_state_dir(tmp_path: Path) -> None:
    out, state = tmp_path / "up.conf", tmp_path / "state"
    with files.locked(out, state), pytest.raises(Locked) as err, files.locked(out, state):
        pass
    assert "locked by another lbsync process" in str(err.value)
    with files.locked(out, state):  # released again
        pass
    assert mode(state) == 0o700
    (lock,) = state.glob("*.lock")
    assert mode(lock) == 0o600 and not list(tmp_path.glob(".*lock"))
    # Another output has its own lock in the same directory.
    with files.locked(out, state), files.locked(tmp_path / "other.conf", state):
        pass


def test_state_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    with pytest.raises(SyncError, match="writable by others"), \
            files.locked(tmp_path / "up.conf", state):
        pass
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(SyncError, match="not a directory"):
        files.state_dir(link)


def test_planted_lock_symlink_is_not_followed(tmp_path: Path) -> None:
    out, state = tmp_path / "up.conf", files.state_dir(tmp_path / "state")
    with files.locked(out, state):
        pass
    (lock,) = state.glob("*.lock")
    lock.unlink()
    target = tmp_path / "nologin"
    lock.symlink_to(target)
    with pytest.raises(SyncError, match="cannot open lock file"), files.locked(out, state):
        pass
    assert not target.exists()


def test_record_round_trip_and_forget(tmp_path: Path) -> None:
    out, state = tmp_path / "up.conf", tmp_path / "state"
    assert files.read_record(out, state) is None
    files.write_record(out, state, {"digest": "abc", "upstreams": {"u": ["10.0.0.1:1"]}})
    assert files.read_record(out, state) == {"digest": "abc", "upstreams": {"u": ["10.0.0.1:1"]}}
    (record,) = state.glob("*.applied.json")
    assert mode(record) == 0o600
    record.write_text("{not json")
    assert files.read_record(out, state) is None  # damaged: one more test and reload
    files.forget_record(out, state)
    assert files.read_record(out, state) is None


def test_digest_depends_on_paths_and_bytes() -> None:
    a = files.digest({Path("/x"): b"1", Path("/y"): b"2"})
    assert a == files.digest({Path("/y"): b"2", Path("/x"): b"1"})
    assert a != files.digest({Path("/x"): b"1", Path("/y"): b"3"})
    assert a != files.digest({Path("/x"): b"1", Path("/z"): b"2"})


def test_private_files_are_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "kubeconfig"
    files.write_private(path, "token: x\n")
    assert path.read_text() == "token: x\n"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_template_must_be_as_trusted_as_the_config(tmp_path: Path) -> None:
    path = tmp_path / "t.j2"
    path.write_text("{{ version }}\n")
    path.chmod(0o644)
    assert files.read_template(path) == "{{ version }}\n"
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by no one else"):
        files.read_template(path)
    link = tmp_path / "link.j2"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="symlink"):
        files.read_template(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule is about lbsync running as root")
def test_as_root_only_a_directory_of_root_or_the_service_user_is_written(tmp_path: Path
                                                                         ) -> None:
    """Before: `lbsync once` as root, with the output directory owned by another user,
    replaced a pretend /etc/passwd through a planted symlink."""
    mine = tmp_path / "servers"
    mine.mkdir()
    files.check_output_dir(mine)
    os.chown(mine, 65534, 65534)  # nobody's
    with pytest.raises(SyncError, match="owned by uid 65534; as root"):
        files.check_output_dir(mine)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(SyncError, match="not a directory"):
        files.check_output_dir(link)
