"""Browser temp directories: owned by a live process or swept, with what still runs in them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from pipeline.browser_dirs import BrowserDir, processes_in, sweep


def dead_owner_dir(root: Path) -> Path:
    """A directory named as a process that has exited would have named it."""
    child = subprocess.run([sys.executable, "-c", "import sys, pathlib; from pipeline."
                            "browser_dirs import BrowserDir; print(BrowserDir.create("
                            "'session', root=pathlib.Path(sys.argv[1])).path)", str(root)],
                           capture_output=True, text=True, check=True)
    path = Path(child.stdout.strip())
    assert path.parent == root
    (path / "playwright_chromiumdev_profile-XYZ").mkdir(parents=True)
    return path


def test_a_directory_lives_while_its_owner_does(tmp_path: Path) -> None:
    mine = BrowserDir.create("host", root=tmp_path)
    foreign = tmp_path / "not-one-of-ours"
    foreign.mkdir()
    dead = dead_owner_dir(tmp_path)
    assert sweep(tmp_path) == [dead]
    assert mine.path.is_dir() and foreign.is_dir() and not dead.exists()
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
