"""VerifyRepair's comparison of the windows before and after a repair."""

from __future__ import annotations

from auto_repair.outcomes import Verdict
from auto_repair.verification import compare, window_stats


def report(duration=100.0, size=128, used=60):
    return {
        "timestamp": "t",
        "message": f"REPORT RequestId: abc\tDuration: {duration} ms\tBilled Duration: "
        f"{int(duration) + 1} ms\tMemory Size: {size} MB\tMax Memory Used: {used} MB",
    }


def series(invocations, errors):
    return {"Invocations.Sum": [{"value": invocations}], "Errors.Sum": [{"value": errors}]}


OOM = {
    "timestamp": "t",
    "message": "RequestId: abc Error: Runtime exited with error: signal: killed\nRuntime.OutOfMemory",
}


def test_oom_before_and_clean_after_is_improved():
    before = window_stats(series(10, 6), [OOM] * 6 + [report(size=128, used=128)] * 10)
    after = window_stats(series(10, 0), [report(size=512, used=300)] * 10)
    verdict = compare(before, after, alarm_metric="Errors")
    assert verdict["status"] == Verdict.IMPROVED
    assert verdict["metricsComparison"]["before"] == 60.0 and verdict["metricsComparison"]["after"] == 0.0
    assert after.maxMemoryUtilization == 300 / 512


def test_errors_persisting_is_not_improved_and_worse_is_flagged():
    before = window_stats(series(10, 2), [report()] * 10)
    after = window_stats(series(10, 8), [report()] * 10)
    verdict = compare(before, after, alarm_metric="Errors")
    assert verdict["status"] == Verdict.NOT_IMPROVED
    assert verdict["worse"] is True


def test_oom_after_repair_is_not_improved():
    before = window_stats(series(5, 5), [OOM] * 5)
    after = window_stats(series(5, 1), [OOM] + [report(size=256, used=256)] * 4)
    assert compare(before, after)["status"] == Verdict.NOT_IMPROVED


def test_too_few_invocations_is_insufficient_data():
    before = window_stats(series(10, 6), [OOM] * 6)
    after = window_stats(series(1, 0), [report()])
    verdict = compare(before, after, min_invocations=3)
    assert verdict["status"] == Verdict.INSUFFICIENT_DATA
    assert "1 invocation" in verdict["reason"]


def test_duration_alarm_needs_a_faster_p95():
    before = window_stats({"Invocations.Sum": [{"value": 10}]}, [report(duration=9000)] * 10)
    same = window_stats({"Invocations.Sum": [{"value": 10}]}, [report(duration=8800)] * 10)
    faster = window_stats({"Invocations.Sum": [{"value": 10}]}, [report(duration=2000)] * 10)
    assert compare(before, same, alarm_metric="Duration")["status"] == Verdict.NOT_IMPROVED
    verdict = compare(before, faster, alarm_metric="Duration")
    assert verdict["status"] == Verdict.IMPROVED
    assert verdict["metricsComparison"]["improvement"].endswith("better")


def test_invocations_still_on_the_old_memory_do_not_count_after_the_repair():
    # GIVEN an invocation that started at 128 MB and was killed just after the update to 256 MB
    old = [
        {"timestamp": "t", "message": "RequestId: aaa Error: Runtime exited with error: signal: killed"},
        {
            "timestamp": "t",
            "message": "REPORT RequestId: aaa\tDuration: 90.0 ms\tBilled Duration: 90 ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 128 MB\tStatus: error",
        },
    ]
    new = [report(size=256, used=170)] * 4
    after = window_stats(series(5, 1), old + new, memory_size=256)
    # THEN only the four invocations at 256 MB are judged, and they are clean
    assert (after.invocations, after.errors, after.oom) == (4, 0, 0)
    before = window_stats(series(10, 10), [OOM] * 10)
    assert compare(before, after)["status"] == Verdict.IMPROVED
