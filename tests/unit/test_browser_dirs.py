"""Browser temp directories: owned by a live process or swept, with what still runs in them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from pipeline.browser_dirs import BrowserDir, processes_in, sweep

_OWNER = ("import sys, time, pathlib; from pipeline.browser_dirs import BrowserDir; "
          "d = BrowserDir.create('session', root=pathlib.Path(sys.argv[1])); "
          "print(d.path, flush=True); time.sleep(float(sys.argv[2]))")


def owner(root: Path, lives_s: float) -> tuple[subprocess.Popen[str], Path]:
    """A process that owns a directory under `root` for `lives_s` seconds."""
    child = subprocess.Popen([sys.executable, "-c", _OWNER, str(root), str(lives_s)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    path = Path(child.stdout.readline().strip())
    assert path.parent == root
    (path / "playwright_chromiumdev_profile-XYZ").mkdir(parents=True)
    return child, path


def test_a_directory_lives_while_its_owner_does(tmp_path: Path) -> None:
    mine = BrowserDir.create("host", root=tmp_path)
    foreign = tmp_path / "not-one-of-ours"
    foreign.mkdir()
    exited, dead = owner(tmp_path, 0)
    exited.wait(10)
    living, alive = owner(tmp_path, 60)
    try:
        # Its name is no proof: a pid seen from another PID namespace means nothing.
        renamed = alive.with_name("999999999-session-abcd")
        alive.rename(renamed)
        assert sweep(tmp_path) == [dead]
        assert mine.path.is_dir() and foreign.is_dir() and renamed.is_dir()
        assert not dead.exists()
        living.kill()
        living.wait(10)
        assert sweep(tmp_path) == [renamed], "its lock went with its owner"
    finally:
        living.kill()
        living.wait()
    mine.remove()
    assert not mine.path.exists()
    assert sweep(tmp_path / "missing") == []


def test_removing_a_directory_ends_what_runs_in_it(tmp_path: Path) -> None:
    temp = BrowserDir.create("session", root=tmp_path)
    env = temp.env({"PATH": "/usr/bin:/bin"})
    assert env["TMPDIR"] == env["TMP"] == str(temp.path)
    elsewhere = subprocess.Popen(["sleep", "60"])
    by_env = subprocess.Popen(["sleep", "60"], env=env)  # a Playwright driver or server
    named = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",  # Chromium
                              f"--user-data-dir={temp.path}/playwright_chromiumdev_profile-1"])
    try:
        found = {p.pid for p in processes_in(temp.path)}
        assert {by_env.pid, named.pid} <= found and elsewhere.pid not in found
        temp.remove()
        assert by_env.wait(5) is not None and named.wait(5) is not None
        assert not temp.path.exists()
        assert psutil.Process().is_running() and elsewhere.poll() is None
    finally:
        for process in (by_env, elsewhere, named):
            process.kill()
            process.wait()


def test_a_sweep_running_beside_creations_never_takes_a_live_directory(tmp_path) -> None:
    """Sessions starting at once each sweep: none may catch another's directory between
    its lock file appearing and being locked (that ended a session's start with EAGAIN)."""
    import threading

    made: list[BrowserDir] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def create(n: int) -> None:
        try:
            for _ in range(n):
                made.append(BrowserDir.create("session", tmp_path))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    def sweeping() -> None:
        while not stop.is_set():
            sweep(tmp_path)

    sweeper = threading.Thread(target=sweeping)
    sweeper.start()
    makers = [threading.Thread(target=create, args=(50,)) for _ in range(4)]
    try:
        for maker in makers:
            maker.start()
        for maker in makers:
            maker.join()
    finally:
        stop.set()
        sweeper.join()
    assert errors == []
    assert len(made) == 200 and all(d.path.exists() for d in made)
    for directory in made:
        directory.remove()
