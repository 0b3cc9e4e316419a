"""The cycle collector is held off inside a sync phase and restored as it was found."""

import gc

import pytest

from sync.gcpause import gc_paused


def test_collector_is_off_inside_and_on_again_after():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pause_leaves_the_outer_one_in_force():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collector_is_restored_when_the_phase_fails():
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("the phase failed")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
