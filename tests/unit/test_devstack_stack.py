"""Pieces of the local stack that need no Docker: which program holds a port, copying only what a build changed,
and what the watcher reacts to (devstack.ports, devstack.stack, devstack.watch)."""

from __future__ import annotations

import os
import socket
import sys

from devstack import ports
from devstack.stack import sync_tree
from devstack.watch import changes, snapshot


def test_a_busy_port_is_reported_with_the_program_that_holds_it() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        reason = ports.busy_reason("sam local start-api", "127.0.0.1", port)
        assert reason is not None
        assert reason.startswith(f"port {port} (sam local start-api, 127.0.0.1) is in use by pid {os.getpid()} (")
        assert sys.executable.rsplit("/", 1)[-1] in reason or "python" in reason
        assert ports.held_by_group(port, os.getpgid(os.getpid()))
    assert ports.busy_reason("sam local start-api", "127.0.0.1", port) is None


def test_sync_copies_only_what_changed_and_names_where(tmp_path) -> None:
    staging, served = tmp_path / "staging", tmp_path / "build"
    for name, text in {"PageFunction/app.py": "v1", "Layer/python/lib.py": "lib", "template.yaml": "t"}.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    assert sync_tree(staging, served) == {"PageFunction", "Layer", "template.yaml"}
    layer_file = served / "Layer/python/lib.py"
    before = layer_file.stat().st_mtime_ns, layer_file.stat().st_ino

    (staging / "PageFunction/app.py").write_text("v2")
    (staging / "Layer/python/lib.py").write_text("lib")  # rewritten by the build, same content
    (staging / "OldFunction").mkdir()
    assert sync_tree(staging, served) == {"PageFunction", "OldFunction"}
    assert (served / "PageFunction/app.py").read_text() == "v2"
    assert (layer_file.stat().st_mtime_ns, layer_file.stat().st_ino) == before, "an unchanged file is not touched"

    (staging / "OldFunction").rmdir()
    assert sync_tree(staging, served) == {"OldFunction"}
    assert not (served / "OldFunction").exists()
    assert sync_tree(staging, served) == set()


def test_the_watcher_sees_sources_and_ignores_state_caches_and_docs(tmp_path) -> None:
    for name in ("template.yaml", "functions/page/app.py", "layers/connect/connect_lambda/qsh.py", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    for ignored in (".local/stack/logs/start-api.log", "functions/page/__pycache__/app.pyc", ".aws-sam/build/t"):
        (tmp_path / ignored).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ignored).write_text("x")
    before = snapshot(tmp_path)
    assert set(before) == {"template.yaml", "functions/page/app.py", "layers/connect/connect_lambda/qsh.py"}
    (tmp_path / "functions/page/app.py").write_text("xy")
    (tmp_path / ".local/stack/logs/start-api.log").write_text("more")
    assert changes(before, snapshot(tmp_path)) == ["functions/page/app.py"]
