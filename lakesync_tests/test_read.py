"""Read: every format streams in chunks with row numbers; unreadable files say why and where."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakesync.config.datasets import FormatOptions
from lakesync.read import ROW, FileReadError, ReadSpec, read_file


def read(path: Path, fmt: str, chunk_rows: int = 2, **options: object) -> pl.DataFrame:
    chunks = list(read_file(path, ReadSpec(fmt, FormatOptions(**options), chunk_rows=chunk_rows)))  # type: ignore[arg-type]
    return pl.concat(chunks, how="vertical_relaxed")


def test_parquet_streams_in_chunks_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": list(range(5))}), path, row_group_size=2)
    chunks = list(read_file(path, ReadSpec("parquet", FormatOptions(), chunk_rows=2)))
    assert [c.height for c in chunks] == [2, 2, 1]
    assert pl.concat(chunks)[ROW].to_list() == [1, 2, 3, 4, 5]


def test_a_zero_row_parquet_keeps_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), path)
    frame = read(path, "parquet")
    assert frame.height == 0 and "a" in frame.columns


def test_csv_is_read_as_text_with_its_options(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id;name\n1;"x;y"\n2;\n3;NA\n', encoding="utf-8")
    frame = read(path, "csv", delimiter=";", null_values=["", "NA"])
    assert frame.schema["id"] == pl.String
    assert frame["name"].to_list() == ["x;y", None, None]
    assert frame[ROW].to_list() == [1, 2, 3]


def test_csv_quoted_newlines_bom_and_latin1(tmp_path: Path) -> None:
    quoted = tmp_path / "q.csv"
    quoted.write_text('id,text\n1,"two\nlines"\n2,plain\n', encoding="utf-8")
    assert read(quoted, "csv")["text"].to_list() == ["two\nlines", "plain"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffid,x\n1,2\n".encode())
    assert read(bom, "csv").columns[-2:] == ["id", "x"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,city\n1,Zürich\n".encode("latin-1"))
    assert read(latin, "csv", encoding="latin1")["city"].to_list() == ["Zürich"]
    with pytest.raises(FileReadError, match="line 2: byte 11 is not valid utf-8"):
        read(latin, "csv")


def test_csv_without_header_names_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("1,x\n2,y\n", encoding="utf-8")
    assert read(path, "csv", header=False).columns[-2:] == ["column_1", "column_2"]


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("a,b\n1,2\n3,4,5\n", r"a record has more fields than the header \(3 fields, the header has 2\)", 3),
        ('a,b\n1,2\n3,"open\n4,5\n6,7\n', "malformed record: unexpected end of data", 3),
        (
            'a,b\n1,"two\nlines"\n3,4\n5,6,7\n',
            r"more fields than the header \(3 fields, the header has 2\)",
            5,
        ),
    ],
)
def test_broken_csv_names_the_line(tmp_path: Path, content: str, message: str, line: int) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FileReadError, match=message) as caught:
        read(path, "csv", chunk_rows=100)
    assert caught.value.line == line


def test_read_record_by_record_a_bad_record_comes_alone_with_its_line_and_text(tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text('a,b\n1,2\n3,"x,y",5\n6,7\n', encoding="utf-8")
    with pytest.raises(FileReadError) as caught:
        list(read_file(csv_file, ReadSpec("csv", FormatOptions())))
    assert caught.value.recoverable
    *good, broken = list(read_file(csv_file, ReadSpec("csv", FormatOptions(), tolerant=True)))
    assert pl.concat(good).select(ROW, "a", "b").rows() == [(1, "1", "2"), (3, "6", "7")]
    assert broken.rows() == [
        (2, "line 3: a record has more fields than the header (3 fields, the header has 2)", "3,x,y,5")
    ]
    lines = tmp_path / "bad.ndjson"
    lines.write_text('{"a": 1}\n\n{"a": \n[1]\n{"a": {"b": 2}}\n', encoding="utf-8")
    *good, broken = list(read_file(lines, ReadSpec("ndjson", FormatOptions(), tolerant=True)))
    assert pl.concat(good).rows() == [(1, "1"), (4, '{"b": 2}')]  # a key of mixed kinds is read as text
    assert [r[:2] for r in broken.rows()] == [
        (2, "line 3: not valid JSON: Expecting value (character 7)"),
        (3, "line 4: a JSON list where a record (an object) was expected"),
    ]


def test_a_record_with_missing_trailing_fields_reads_them_as_null(tmp_path: Path) -> None:
    # As Spark's PERMISSIVE mode: documented; the contract then decides (nullable or quarantine).
    path = tmp_path / "short.csv"
    path.write_text("a,b\n1,2\n3\n", encoding="utf-8")
    assert read(path, "csv")["b"].to_list() == ["2", None]


def test_duplicate_csv_header_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n", encoding="utf-8")
    with pytest.raises(FileReadError, match="'a' appears more than once"):
        read(path, "csv")


def test_header_only_csv_has_columns_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,b\n", encoding="utf-8")
    frame = read(path, "csv")
    assert frame.height == 0 and frame.columns[-2:] == ["a", "b"]


def test_ndjson_json_and_gzip(tmp_path: Path) -> None:
    records = [{"a": 1, "nested": {"x": [1, 2]}}, {"a": 2, "nested": None}]
    lines = "\n".join(json.dumps(r) for r in records) + "\n"
    (tmp_path / "a.ndjson").write_text(lines)
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(lines.encode()))
    for name, fmt in [("a.ndjson", "ndjson"), ("a.json", "json"), ("a.ndjson.gz", "ndjson")]:
        frame = read(tmp_path / name, fmt)
        assert frame["a"].to_list() == [1, 2], name
        assert frame[ROW].to_list() == [1, 2]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("empty.csv", b"", "csv", "the file is empty"),
        ("fake.parquet", b"this is not parquet", "parquet", "not a readable parquet file"),
        ("bad.csv.gz", b"\x1f\x8b\x08\x00garbage", "csv", "corrupt gzip data"),
        ("lines.json", b'{"a":1}\n{"a":2}\n', "json", "not a JSON array of records"),
        ("broken.ndjson", b'{"a":1}\n{"a":\n', "ndjson", "not valid JSON lines"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, name: str, content: bytes, fmt: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FileReadError, match=message):
        read(path, fmt)


def test_a_truncated_parquet_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(100))}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileReadError, match="not a readable parquet file"):
        read(path, "parquet")


def test_a_file_deleted_after_listing_is_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match="deleted or moved after it was listed"):
        read(tmp_path / "gone.csv", "csv")


def test_a_csv_read_with_the_wrong_delimiter_is_refused_with_the_likely_one(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c\n1;2;3\n", encoding="utf-8")
    with pytest.raises(
        FileReadError, match="line 1: the header is one column 'a;b;c': the delimiter is probably ';'"
    ):
        read(path, "csv")
