"""Known-bad sizes and trim-undone markers in the state table (moto in-process)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from auto_repair import memory_history as mh

NOW = 1_800_000_000.0
DAY = 86400


@pytest.fixture
def table(aws):
    return aws.resource("dynamodb").Table("state")


def test_known_bad_is_remembered_with_its_evidence(table):
    # GIVEN an out-of-memory death at 256 MB WHEN recorded THEN it is read back while fresh
    assert mh.record_known_bad(table, "orders", 256, at=NOW, execution_id="ex-1", evidence="OOM 4/4 at 256 MB")
    item = mh.known_bad(table, "orders", now=NOW + DAY)
    assert item is not None
    assert (item["sizeMb"], item["executionId"], item["evidence"]) == (256, "ex-1", "OOM 4/4 at 256 MB")
    assert mh.known_bad_size(table, "orders", now=NOW) == 256


def test_a_smaller_size_never_replaces_a_larger_fresh_one(table):
    # GIVEN known-bad 512 WHEN a later death at 256 is recorded THEN 512 stays; a death at 1024 replaces it
    mh.record_known_bad(table, "orders", 512, at=NOW, execution_id="ex-1", evidence="")
    assert not mh.record_known_bad(table, "orders", 256, at=NOW + 60, execution_id="ex-2", evidence="")
    assert mh.known_bad_size(table, "orders", now=NOW + 120) == 512
    assert mh.record_known_bad(table, "orders", 1024, at=NOW + 180, execution_id="ex-3", evidence="")
    assert mh.known_bad_size(table, "orders", now=NOW + 240) == 1024


def test_known_bad_goes_stale_after_30_days_and_then_anything_replaces_it(table):
    mh.record_known_bad(table, "orders", 512, at=NOW, execution_id="ex-1", evidence="")
    later = NOW + 31 * DAY
    # THEN stale (TTL deletion is lazy: the read checks the age itself)
    assert mh.known_bad(table, "orders", now=later) is None
    assert mh.record_known_bad(table, "orders", 256, at=later, execution_id="ex-2", evidence="")
    assert mh.known_bad_size(table, "orders", now=later) == 256


def test_known_bad_is_per_function(table):
    mh.record_known_bad(table, "orders", 512, at=NOW, execution_id="ex-1", evidence="")
    assert mh.known_bad(table, "billing", now=NOW) is None


def test_trim_undone_blocks_trims_for_30_days(table):
    # GIVEN a trim to 256 undone by a raise to 512 THEN trims are blocked for 30 days, then allowed again
    mh.record_trim_undone(table, "orders", at=NOW, execution_id="ex-9", trimmed_to=256, raised_to=512)
    blocked = mh.trim_blocked(table, "orders", now=NOW + 29 * DAY)
    assert blocked is not None and blocked["trimmedTo"] == 256 and blocked["raisedTo"] == 512
    assert mh.trim_blocked(table, "orders", now=NOW + 30 * DAY + 1) is None
    assert mh.trim_blocked(table, "billing", now=NOW) is None


def test_an_unreadable_table_is_an_error_not_a_silent_none(aws):
    # GIVEN a table that does not exist WHEN read THEN MemoryHistoryError (callers refuse to lower memory)
    missing = aws.resource("dynamodb").Table("nope")
    with pytest.raises(mh.MemoryHistoryError):
        mh.known_bad(missing, "orders", now=NOW)
    with pytest.raises(mh.MemoryHistoryError):
        mh.record_known_bad(missing, "orders", 128, at=NOW, execution_id="x", evidence="")
    assert issubclass(mh.MemoryHistoryError, Exception) and not issubclass(ClientError, mh.MemoryHistoryError)
