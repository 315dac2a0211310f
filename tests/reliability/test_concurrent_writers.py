"""Two writers of one output path at the same time: exactly one wins, the other is told; nothing is lost."""

from __future__ import annotations

import threading

import pytest

from sparsesel.atomic import write_atomic


def _race(path, force: bool, count: int = 8):
    """``count`` threads write ``path`` at once; each writes its own bytes after a shared barrier."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def writer(i: int) -> None:
        def write(stream):
            barrier.wait()  # every writer holds a finished temporary file before any publishes
            stream.write(f"writer {i}".encode())

        try:
            write_atomic(path, write, force=force)
            outcomes[i] = "ok"
        except FileExistsError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.reliability("clear_error")
def test_concurrent_writers_without_force_exactly_one_wins(tmp_path):
    path = tmp_path / "out.bin"
    outcomes = _race(path, force=False)
    winners = [i for i, o in enumerate(outcomes) if o == "ok"]
    assert len(winners) == 1
    assert path.read_bytes() == f"writer {winners[0]}".encode()
    losers = [o for o in outcomes if o != "ok"]
    assert all(isinstance(o, FileExistsError) and "another process" in str(o) for o in losers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary file left behind


@pytest.mark.reliability("right_result")
def test_concurrent_writers_with_force_leave_one_whole_file(tmp_path):
    path = tmp_path / "out.bin"
    outcomes = _race(path, force=True)
    assert outcomes == ["ok"] * len(outcomes)
    assert path.read_bytes() in {f"writer {i}".encode() for i in range(len(outcomes))}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.reliability("clear_error")
def test_an_existing_file_is_never_replaced_without_force(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="pass --force"):
        write_atomic(path, lambda stream: stream.write(b"new"))
    assert path.read_bytes() == b"keep"
