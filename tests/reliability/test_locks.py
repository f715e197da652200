"""The rig lock against the ways around it: another name for the same rig, another
user, a deleted lock directory, an unusable one, and records left by refused runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_hostile_input import labctl_main

from labctl.rigs.config import resolve_chip
from labctl.rigs.lock import ChipBusy, chip_lock, lock_dir, resource_key
from labctl_sims.server import RigServer, TwinRig


@pytest.mark.parametrize(("a", "b"), [
    ("TCPIP::127.0.0.1::5025::SOCKET", "TCPIP0::localhost::5025::SOCKET"),
    ("TCPIP::127.0.0.1::5025::SOCKET", "tcpip::127.0.0.2::5025::socket"),
    ("TCPIP::localhost::5025::SOCKET", "socket://127.0.0.1:5025"),
    ("GPIB0::12::INSTR", "gpib::12::instr"),
])
def test_one_instrument_one_key_however_it_is_spelled(a, b):
    assert resource_key(a) == resource_key(b)


def test_a_serial_link_is_its_device(tmp_path):
    device = tmp_path / "ttyACM0"
    device.touch()
    link = tmp_path / "by-id-usb-board"
    link.symlink_to(device)
    assert resource_key(str(link)) == resource_key(f"ASRL{device}::INSTR") == resource_key(str(device))
    assert resource_key("TCPIP::127.0.0.1::5025::SOCKET") != resource_key("TCPIP::127.0.0.1::5026::SOCKET")


@pytest.fixture(scope="module")
def two_names(tmp_path_factory):
    """One served rig under two chip names: its TCP resources spelled two ways."""
    workdir = tmp_path_factory.mktemp("locks")
    with RigServer(TwinRig.build("pcm", seed=1, rows=8, cols=8), pty=False) as server:
        lines = []
        for chip, host in (("rigA", "127.0.0.1"), ("rigB", "localhost")):
            lines.append(f"[chips.{chip}]")
            for name in ("board", "smu", "temperature"):
                lines.append(f'{name} = "{server.visa_resource(name).replace("127.0.0.1", host)}"')
        config = workdir / "lab.toml"
        config.write_text("\n".join(lines) + "\n")
        yield workdir, config


def test_the_same_rig_under_another_name_is_refused(two_names):
    workdir, config = two_names
    a = resolve_chip("rigA", config=config)
    with chip_lock("rigA", "labctl drift", a.resources):
        code, _, err = labctl_main(["calibrate", "rigB", "--config", str(config), "-q", "--data", str(workdir / "d")])
    assert code == 1 and "rigB's instrument loopback:" in err and "labctl drift on rigA" in err, err
    assert not (workdir / "d").exists()


def test_deleting_the_lock_directory_mid_run_lets_no_one_in():
    with chip_lock("chipD", "labctl calibrate"):
        shutil.rmtree(lock_dir())
        with pytest.raises(ChipBusy):
            with chip_lock("chipD"):
                pass
    with chip_lock("chipD"):  # released as usual
        pass


def test_the_default_lock_directory_is_one_for_every_user(monkeypatch, tmp_path):
    monkeypatch.delenv("LABCTL_LOCK_DIR")
    seen = set()
    for user in ("alice", "bob"):
        monkeypatch.setenv("HOME", str(tmp_path / user))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / user / ".cache"))
        seen.add(lock_dir())
    assert len(seen) == 1


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
def test_another_user_is_refused_and_a_root_owned_lock_file_blocks_no_one(tmp_path_factory):
    shared = Path(f"/tmp/labctl-locktest-{os.getpid()}")
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    try:
        def as_nobody() -> str:
            """chip_lock in a forked child that has become ``nobody`` (no exec: nobody may
            not read this interpreter's installation)."""
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                os.close(read)
                try:
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                    try:
                        with chip_lock("chipU", "as nobody"):
                            answer = "held"
                    except ChipBusy as err:
                        answer = f"busy {err}"
                except BaseException as err:  # noqa: BLE001 - reported to the parent
                    answer = f"error {type(err).__name__}: {err}"
                os.write(write, answer.encode())
                os._exit(0)
            os.close(write)
            with os.fdopen(read) as pipe:
                answer = pipe.read()
            os.waitpid(pid, 0)
            return answer

        os.environ["LABCTL_LOCK_DIR"] = str(shared)  # restored by the autouse fixture
        with chip_lock("chipU", "as root"):
            assert as_nobody().startswith("busy") and "as root" in as_nobody()
            files = list(shared.glob("*.lock"))
        for path in files:
            os.chmod(path, 0o644)  # as an older labctl (or a umask) left it: others may only read it
        assert as_nobody().startswith("held")
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("kind", ["file", "under a file"])
def test_an_unusable_lock_directory_is_one_line_and_exit_2(tmp_path, monkeypatch, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(blocker if kind == "file" else blocker / "locks"))
    code, _, err = labctl_main(["calibrate", "--size", "8x8", "-q", "--data", str(tmp_path / "d")])
    assert code == 2 and "lock directory" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_lock_file_still_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path))
    with chip_lock("chipR"):
        pass
    for path in tmp_path.glob("*.lock"):
        path.chmod(0o444)
    with chip_lock("chipR"):
        with pytest.raises(ChipBusy):
            with chip_lock("chipR"):
                pass


def test_a_run_refused_inside_the_lock_leaves_no_holder_behind(tmp_path):
    wrong = tmp_path / "targets.npy"
    np.save(wrong, np.full((4, 4), 5.0))  # the 8x8 twin is known to be 8x8 only once its board answers
    code, _, err = labctl_main(["calibrate", "--size", "8x8", "-q", "--targets", str(wrong),
                                "--data", str(tmp_path / "d")])
    assert code == 2, err
    with chip_lock("chip0") as holder:
        assert holder["took_over"] is None
