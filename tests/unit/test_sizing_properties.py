"""Property tests for the sizing invariants: within [current, MaxMemory], never lower, multiple of 64 when raised."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_repair.sizing import bounded, size_for_cpu, size_for_hidden_peak, size_for_observed_peak

current_st = st.integers(min_value=128, max_value=10240)
max_st = st.integers(min_value=128, max_value=10240)


def _check(result, current: int, max_memory: int) -> None:
    rec = result.recommended_mb
    assert rec >= current
    assert rec == current or rec <= max_memory
    assert rec == current or rec % 64 == 0
    assert result.lower_bound_mb <= rec <= result.upper_bound_mb
    assert result.upper_bound_mb == current or result.upper_bound_mb <= max_memory


@settings(max_examples=300)
@given(
    target=st.floats(min_value=-1e6, max_value=1e7, allow_nan=False), current=current_st, max_memory=max_st
)
def test_bounded_invariants(target: float, current: int, max_memory: int) -> None:
    rec = bounded(target, current, max_memory)
    assert rec >= current
    assert rec == current or (rec % 64 == 0 and rec <= max_memory)


@settings(max_examples=300)
@given(
    peak=st.floats(min_value=1, max_value=20000),
    current=current_st,
    max_memory=max_st,
    headroom=st.floats(min_value=0, max_value=1),
    growth=st.floats(min_value=0, max_value=5000),
)
def test_observed_peak_invariants(
    peak: float, current: int, max_memory: int, headroom: float, growth: float
) -> None:
    _check(
        size_for_observed_peak(peak, current, max_memory, headroom=headroom, growth_mb=growth),
        current,
        max_memory,
    )


@settings(max_examples=300)
@given(
    current=current_st,
    max_memory=max_st,
    f=st.floats(min_value=0, max_value=1),
    peaks=st.lists(st.floats(min_value=1, max_value=10240), max_size=20),
    ok_ms=st.none() | st.floats(min_value=1, max_value=900000),
    oom_ms=st.none() | st.floats(min_value=1, max_value=900000),
    alloc=st.none() | st.floats(min_value=0.1, max_value=1e9),
)
def test_hidden_peak_invariants_and_bounded_step(current, max_memory, f, peaks, ok_ms, oom_ms, alloc) -> None:
    result = size_for_hidden_peak(
        current,
        max_memory,
        ok_peaks=peaks,
        failure_fraction=f,
        ok_median_ms=ok_ms,
        oom_median_ms=oom_ms,
        requested_allocation_mb=alloc,
    )
    _check(result, current, max_memory)
    if alloc is None:
        # Without a stated allocation the step is geometric and bounded: at most x2 (plus 64 MB rounding).
        assert result.recommended_mb <= max(current * 2 + 64, current)


@settings(max_examples=300)
@given(
    current=current_st,
    max_memory=max_st,
    slow=st.floats(min_value=1, max_value=900000),
    target=st.floats(min_value=1, max_value=900000),
    censored=st.booleans(),
)
def test_cpu_never_beyond_one_vcpu(current, max_memory, slow, target, censored) -> None:
    result = size_for_cpu(current, max_memory, slow_ms=slow, target_ms=target, censored=censored)
    _check(result, current, max_memory)
    # Single-threaded code gains nothing past 1769 MB (1 vCPU), rounded up to 1792.
    assert result.recommended_mb <= max(current, 1792)
