"""The collector pause is counted across overlapping batches and restores what it found."""

from __future__ import annotations

import gc
import threading

from gateway.gc_pause import gc_paused


def test_overlapping_pauses_resume_after_the_last() -> None:
    assert gc.isenabled()
    entered, release = threading.Event(), threading.Event()

    def other_batch() -> None:
        with gc_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other_batch)
    with gc_paused():
        assert not gc.isenabled()
        thread.start()
        entered.wait(5)
    assert not gc.isenabled()  # the other batch is still running
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_in_the_block_still_resumes() -> None:
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
