"""The size limit of ``taskledger up``'s service logs (cli/logpump.py)."""

from __future__ import annotations

import io
from pathlib import Path

from cli.logpump import LogPump, RotatingLog


def test_log_rotates_at_its_size_and_keeps_only_its_backups(tmp_path: Path) -> None:
    # given: 100-byte files, two backups
    log = RotatingLog(tmp_path / "worker.log", max_bytes=100, backups=2)
    lines = [f"line {n:02d}".encode().ljust(39, b".") + b"\n" for n in range(10)]  # 40 bytes
    # when: 10 lines = 400 bytes; two fit in a file, the third moves the file aside
    for line in lines:
        log.write(line)
    log.close()
    # then: never more than 3 files, none over the limit, the newest 6 lines kept in order
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["worker.log", "worker.log.1", "worker.log.2"]
    assert all((tmp_path / f).stat().st_size <= 100 for f in files)
    kept = b"".join((tmp_path / f).read_bytes() for f in reversed(files))
    assert kept == b"".join(lines[4:])


def test_log_appends_to_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "beat.log").write_bytes(b"a" * 90)
    log = RotatingLog(tmp_path / "beat.log", max_bytes=100, backups=1)
    log.write(b"b" * 20)  # 90 + 20 > 100: the old content moves aside first
    log.close()
    assert (tmp_path / "beat.log").read_bytes() == b"b" * 20
    assert (tmp_path / "beat.log.1").read_bytes() == b"a" * 90


def test_pump_copies_lines_and_sees_the_ready_marker(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "w.log")
    pump = LogPump(io.BytesIO(b"starting\nw1@host ready.\nworking\n"), log, b"ready.")
    pump.start()
    pump.join(5)
    log.close()
    assert pump.ready.is_set()
    assert (tmp_path / "w.log").read_bytes() == b"starting\nw1@host ready.\nworking\n"
