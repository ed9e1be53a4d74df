"""Discover: list a lake, find what is new against the durable ledger, plan batches once."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakesync.config.storage import LocalLake
from lakesync.discover import LakeUnavailableError, discover, planning, split_batches, take_batch
from lakesync.discover.patterns import literal_prefix, matches
from lakesync.discover.sources import ListingSource
from lakesync.discover.stores import LocalStore
from lakesync.state import ledger_files
from lakesync.state.inbox import Announcement, Inbox
from lakesync.state.known import KnownFiles, lookup
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_files import FILE_COLUMNS
from lakesync.state.values import FileEntry, FileOutcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("orders/**/*.parquet", "orders/a.parquet", True),
        ("orders/**/*.parquet", "orders/2026/11/a.parquet", True),
        ("orders/**/*.parquet", "orders/2026/11/a.csv", False),
        ("orders/**/*.parquet", "other/a.parquet", False),
        ("exports/*.csv", "exports/a.csv", True),
        ("exports/*.csv", "exports/sub/a.csv", False),
        ("exports/day-??.csv", "exports/day-01.csv", True),
        ("exports/[ab]*.csv", "exports/b1.csv", True),
        ("exports/[!ab]*.csv", "exports/b1.csv", False),
        ("*.ndjson*", "x.ndjson.gz", True),
        ("data/file name #1 %20.csv", "data/file name #1 %20.csv", True),
    ],
)
def test_glob_patterns(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("orders/**/*.parquet", "orders/"),
        ("a/b/c/*.csv", "a/b/c/"),
        ("*.csv", ""),
        ("a/*/b/*.csv", "a/"),
        ("**/x", ""),
    ],
)
def test_listing_starts_at_the_longest_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def _files(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))


def test_local_listing_matches_the_pattern_and_reports_size_and_mtime(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "orders/2026/a.parquet",
            "orders/b.parquet",
            "orders/c.csv",
            "other/d.parquet",
            "orders/ü n#%.parquet",
        ],
    )
    store = LocalStore("eu", LocalLake(provider="local", root=str(tmp_path), datasets={}))
    found = sorted(store.list("orders/**/*.parquet"))
    assert [f.path for f in found] == ["orders/2026/a.parquet", "orders/b.parquet", "orders/ü n#%.parquet"]
    assert [f.size for f in found] == [1, 2, 5]
    assert all(f.modified.tzinfo is UTC for f in found)


def test_a_local_listing_goes_in_key_order_and_resumes_after_any_path(tmp_path: Path) -> None:
    """A local folder lists as object stores do, in the order of the paths as strings (a folder's
    files where ``folder/`` sorts, not where its name does), so a listing cut at a limit
    resumes after its last path; folders wholly before that path are not entered."""
    names = ["a-b.csv", "a/x.csv", "a/y/z.csv", "a.csv", "a0.csv", "b/c/d.csv", "B.csv", "ä.csv", "a/y.csv"]
    _files(tmp_path, names)
    store = LocalStore("eu", LocalLake(provider="local", root=str(tmp_path), datasets={}))
    listed = [f.path for f in store.list("**/*.csv")]
    assert listed == sorted(names)
    for after in [*names, "a/m", "a/", "", "zz"]:
        assert [f.path for f in store.list("**/*.csv", start_after=after)] == [
            n for n in sorted(names) if n > after
        ]


def test_a_listing_source_goes_through_the_lake_a_page_at_a_time(tmp_path: Path) -> None:
    """With a limit, a listing stops after that many files and says where the next one resumes;
    the pages together are the whole listing, each file once (8 files in pages of 4: two pages,
    the second knows nothing follows without a third)."""
    names = [f"d{i % 3}/f{i}.csv" for i in range(8)]
    _files(tmp_path, names)
    store = LocalStore("eu", LocalLake(provider="local", root=str(tmp_path), datasets={}))
    source = ListingSource(store, "**/*.csv")
    state = Ledger(Lakehouse(str(tmp_path / "lh"))).read("eu.o")
    first = source.scan(state, limit=4)
    assert first.files == 4 and first.started_after is None and first.resume_after == sorted(names)[3]
    second = source.scan(state, after=first.resume_after, limit=4)
    assert second.started_after == sorted(names)[3] and second.resume_after is None
    assert sorted(f.path for f in (*first.new, *second.new)) == sorted(names)
    assert not first.whole and not second.whole and source.scan(state).whole
    assert source.scan(state, limit=8).whole  # all of it in one page


def test_events_since_the_compaction_lie_above_the_compacted_hashes() -> None:
    """A path the events since the compaction touched is looked up in them, not in the
    compacted rows: its new tag, or not seen when its latest event is an announcement."""
    base = pl.DataFrame({"h1": [1, 5, 9], "h2": [1, 1, 1], "tag": [10, 50, 90]})
    tail = pl.DataFrame(
        {"h1": [5, 9, 12], "h2": [1, 1, 1], "tag": [51, 90, 120], "seen": [True, False, True]}
    )
    known = KnownFiles(base, tail)
    listed = pl.DataFrame({"h1": [1, 5, 9, 12, 7], "h2": [1, 1, 1, 1, 1]})
    seen, tags = known.lookup(listed)
    assert seen.to_list() == [True, True, False, True, False]
    assert tags.to_list()[:2] == [10, 51] and tags[3] == 120
    assert known.height == 3 and sorted(known.frame()["h1"].to_list()) == [1, 5, 12]


def test_a_missing_lake_folder_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStore("eu", LocalLake(provider="local", root=str(tmp_path / "gone"), datasets={}))
    with pytest.raises(LakeUnavailableError, match=r"lake 'eu': the folder .*gone does not exist"):
        list(store.list("*.csv"))


def entries(n: int, size: int = 10) -> list[FileEntry]:
    return [FileEntry(f"f{i:03d}.csv", size, T0 + timedelta(minutes=n - i)) for i in range(n)]


def test_batches_take_the_oldest_files_within_both_limits() -> None:
    files = entries(10, size=100)
    batch = take_batch(files, max_files=4, max_bytes=250)
    assert [f.path for f in batch] == ["f009.csv", "f008.csv"]
    assert take_batch([FileEntry("big", 10**9, T0)], max_files=5, max_bytes=10)[0].path == "big"
    assert sum(len(b) for b in split_batches(files, max_files=3, max_bytes=10**6)) == 10


def test_discover_separates_new_and_changed_files() -> None:
    listing = entries(3)
    known = {listing[0].path: listing[0].version_tag, listing[1].path: "other-tag"}
    found = discover(listing, known)
    assert [f.path for f in found.new] == ["f002.csv"]
    assert [f.path for f in found.changed] == ["f001.csv"]
    assert found.files == 3 and found.bytes == 30


def _reference(listing: list[FileEntry], known: dict[str, str]) -> tuple[list[str], list[str]]:
    """New and changed paths, one file at a time (what the join must give)."""
    order = sorted(listing, key=lambda e: (e.modified, e.path))
    new = [e.path for e in order if e.path not in known]
    changed = [e.path for e in order if e.path in known and known[e.path] != e.version_tag]
    return new, changed


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # path
            st.integers(0, 5),  # size
            st.integers(-(10**6), 10**15),  # microseconds from 2026 (before 1970 too)
            st.sampled_from([None, "", '"e1"', "e2"]),
            st.sampled_from(["new", "same", "other"]),
        ),
        max_size=40,
        unique_by=lambda t: t[0],
    ),
    st.booleans(),
    st.sampled_from([1, 3, planning.LISTING_CHUNK]),
)
def test_discover_by_join_gives_what_comparing_each_file_gives(
    rows: list[tuple[int, int, int, str | None, str]], naive: bool, chunk: int
) -> None:
    """... in chunks of any size (a listing of millions is compared a chunk at a time)."""
    base = datetime(2026, 1, 1, tzinfo=None if naive else UTC)
    listing = [
        FileEntry(f"d/f{p:03d}.csv", size, base + timedelta(microseconds=us), etag)
        for p, size, us, etag, _ in rows
    ]
    known = {
        e.path: e.version_tag if how == "same" else "another"
        for e, (*_, how) in zip(listing, rows, strict=True)
        if how != "new"
    }
    with mock.patch.object(planning, "LISTING_CHUNK", chunk):
        found = discover(iter(listing), known)  # as a store yields it
    new, changed = _reference(listing, known)
    assert [f.path for f in found.new] == new
    assert [f.path for f in found.changed] == changed
    assert found.files == len(listing) and found.bytes == sum(e.size for e in listing)
    utc = [e.modified if e.modified.tzinfo else e.modified.replace(tzinfo=UTC) for e in listing]
    assert found.newest == max(utc, default=None)


def test_the_tags_the_ledger_computes_are_the_tags_a_listing_computes(tmp_path: Path) -> None:
    """Recorded files listed again are neither new nor changed, whatever their mtime (sub-second,
    before 1970, far ahead) or etag (none, empty)."""
    ledger = Ledger(Lakehouse(str(tmp_path / "lh")))
    times = [
        datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2262, 1, 1, 0, 0, 0, 123_457, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 1),  # naive: UTC
    ]
    files = [FileEntry(f"t/{i}.csv", i, t, etag) for i, t in enumerate(times) for etag in (None, "", "x")]
    files = [FileEntry(f"{f.path}.{n}", f.size, f.modified, f.etag) for n, f in enumerate(files)]
    plan = ledger.plan("eu.t", "t", lambda s: discover(files, s.known).new, run_id="r1")
    assert plan is not None and len(plan.files) == len(files)
    ledger.record(
        plan, [FileOutcome(f, "ingested", 1, 1, 0) for f in plan.files], table_version=1, run_id="r1"
    )
    state = ledger.read("eu.t")
    again = discover(files, state.known)
    assert again.new == () and again.changed == ()
    assert state.untaken(files) == []
    touched = FileEntry(files[0].path, files[0].size, files[0].modified + timedelta(microseconds=1), None)
    assert [f.path for f in discover([touched], state.known).changed] == [touched.path]
    assert state.untaken([touched]) == [touched]


def test_the_ledger_plans_each_version_once_and_records_it_once(tmp_path: Path) -> None:
    ledger = Ledger(Lakehouse(str(tmp_path / "lh")))
    files = entries(5)
    plan = ledger.plan(
        "eu.orders",
        "orders",
        lambda s: take_batch(discover(files, s.known_tags()).new, max_files=2, max_bytes=10**9),
        run_id="r1",
    )
    assert plan is not None and plan.version == 1 and len(plan.files) == 2
    state = ledger.read("eu.orders")
    assert [p.version for p in state.pending] == [1]
    assert state.count("planned") == 2
    outcomes = [FileOutcome(f, "ingested", 3, 2, 1) for f in plan.files]
    assert ledger.record(plan, outcomes, table_version=7, run_id="r1") is True
    assert ledger.record(plan, outcomes, table_version=7, run_id="r1") is False  # a retry records nothing
    state = ledger.read("eu.orders")
    assert state.pending == () and state.count("ingested") == 2 and state.done_version == 1
    second = ledger.plan(
        "eu.orders",
        "orders",
        lambda s: take_batch(discover(files, s.known_tags()).new, max_files=2, max_bytes=10**9),
        run_id="r2",
    )
    assert second is not None and second.version == 2
    assert not {f.path for f in second.files} & {f.path for f in plan.files}
    events = ledger.all_events()
    assert events.filter(events["event"] == "ingested")["rows_quarantined"].to_list() == [1, 1]


def test_racing_planners_never_plan_the_same_file_twice(tmp_path: Path) -> None:
    ledger_uri = Lakehouse(str(tmp_path / "lh"))
    files = entries(40)
    plans = []
    errors: list[BaseException] = []

    def planner(n: int) -> None:
        ledger = Ledger(ledger_uri)
        try:
            for _ in range(4):
                plan = ledger.plan(
                    "eu.orders",
                    "orders",
                    lambda s: take_batch(discover(files, s.known_tags()).new, max_files=5, max_bytes=10**9),
                    run_id=f"p{n}",
                )
                if plan is not None:
                    plans.append(plan)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=planner, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    planned = [f.path for p in plans for f in p.files]
    assert len(planned) == len(set(planned)) == 40
    assert sorted(p.version for p in plans) == list(range(1, 9))


def test_ledgers_of_datasets_are_independent(tmp_path: Path) -> None:
    ledger = Ledger(Lakehouse(str(tmp_path / "lh")))
    files = entries(2)
    for key in ("eu.orders", "us.orders"):
        plan = ledger.plan(key, "orders", lambda s: discover(files, s.known_tags()).new, run_id="r")
        assert plan is not None and plan.version == 1
    assert ledger.read("eu.orders").count("planned") == 2


def _view(ledger: Ledger, dataset: str) -> dict[str, object]:
    """Everything a reader of a dataset's ledger sees."""
    state = ledger.read(dataset)
    return {
        "files": state.files.select(FILE_COLUMNS).sort("path").rows(),
        "known": state.known.frame().sort(["h1", "h2"]).rows(),
        "known_files": state.known.height,
        "announced": state.announced(),
        "pending": state.pending,
        "versions": (state.planned_version, state.done_version),
        "counts": {s: state.count(s) for s in ("announced", "planned", "ingested", "quarantined")},
        "last_recorded_at": state.last_recorded_at,
    }


def test_the_compacted_ledger_reads_what_the_whole_ledger_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's compacted state (each path's latest event, rewritten every 25 batches) plus
    the events recorded since gives every reader what folding every event gives: after more
    batches, a pending plan, announcements, a revert that changes an old file's status, the
    ledger's own file compaction, and with hashes of another polars version (then unused)."""
    lakehouse = Lakehouse(str(tmp_path / "lh"))
    ledger = Ledger(lakehouse)
    files = [FileEntry(f"o/{i:03d}.csv", 10 + i, T0 + timedelta(minutes=i)) for i in range(120)]
    for n in range(30):
        batch = files[n * 3 : n * 3 + 3]
        plan = ledger.plan("eu.o", "o", lambda s, b=batch: discover(b, s.known).new, run_id=f"r{n}")
        assert plan is not None and len(plan.files) == 3
        outcomes = [
            FileOutcome(f, "quarantined" if i == 2 else "ingested", 1, 1 if i < 2 else 0, 0)
            for i, f in enumerate(plan.files)
        ]
        ledger.record(plan, outcomes, table_version=n + 1, run_id=f"r{n}")
    compacted = lakehouse.open(lakehouse.ledger_files_uri)
    assert compacted is not None, "batch 25 compacts the ledger"
    # After the compaction: a pending plan, two announcements, a revert of batch 2's files.
    assert ledger.plan("eu.o", "o", lambda s: discover(files[90:93], s.known).new, run_id="p") is not None
    Inbox(lakehouse).announce(
        [Announcement("eu.o", "o", e, "event") for e in (files[100], files[0])], run_id="a"
    )
    assert ledger.record_reverted(
        "eu.o", {files[3].path: 1, files[4].path: 1}, reason="revert", app="revert:1"
    )
    # A listing: everything known, one file changed, 19 never seen.
    changed = FileEntry(files[5].path, files[5].size + 1, files[5].modified)
    listing = [*files[:5], changed, *files[6:]]
    seen = ledger.read("eu.o")
    found = discover(listing, seen.known)
    assert [f.path for f in found.changed] == [changed.path]
    assert {f.path for f in found.new} == {f.path for f in files[93:]}
    # batches 26-30 (three events each), a plan, an announcement, a revert
    assert seen.state.base is not None and seen.state.tail.height == 5 * 3 + 3 + 1 + 2
    # The compacted rows are written sorted by h1 and used as read; the events since lie above.
    assert seen.known.base["h1"].flags["SORTED_ASC"] and seen.known.base.height == 75
    assert seen.known.height == 90 + 3  # ingested or quarantined, planned; not the announcements
    assert seen.count("quarantined") == 30 + 2  # one file of each batch, and the two reverted
    with_state = _view(ledger, "eu.o")
    monkeypatch.setattr(ledger_files, "HASHER", "polars-0.0.0")  # hashes of another version: unused
    assert ledger.read("eu.o").state.base is None
    assert _view(ledger, "eu.o") == with_state
    monkeypatch.undo()
    shutil.rmtree(lakehouse.ledger_files_uri)  # no compacted state at all: the whole ledger
    assert _view(ledger, "eu.o") == with_state
    assert ledger_files.compact(lakehouse, "eu.o")
    assert ledger.read("eu.o").state.tail.is_empty()
    assert _view(ledger, "eu.o") == with_state
    snapshot = lakehouse.open(ledger.uri)
    assert snapshot is not None
    snapshot.optimize.compact()  # the ledger's files rewritten: their events fold in again
    assert not ledger.read("eu.o").state.tail.is_empty()
    assert _view(ledger, "eu.o") == with_state


def test_a_path_whose_first_hash_collides_with_another_is_still_found_with_its_own_tag() -> None:
    """The ledger's lookup goes by binary search on ``h1``; paths sharing an ``h1`` (a 64-bit
    collision) are told apart by ``h2`` whichever of them the search lands on."""
    stored = pl.DataFrame({"h1": [5, 5, 5, 9], "h2": [1, 2, 3, 1], "tag": [10, 20, 30, 40]})
    listed = pl.DataFrame(
        {"h1": [5, 5, 5, 9, 9, 7, 1, 12], "h2": [3, 1, 4, 1, 2, 1, 1, 1], "tag": [30, 11, 0, 40, 0, 0, 0, 0]}
    )
    seen, tags = lookup(stored, listed)
    assert seen.to_list() == [True, True, False, True, False, False, False, False]
    assert [t for t, s in zip(tags.to_list(), seen.to_list(), strict=True) if s] == [30, 10, 40]
    nothing, _ = lookup(stored.clear(), listed)
    assert not nothing.any()
