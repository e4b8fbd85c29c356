"""Compatibility: journals and snapshots written by format version 1 (committed under
tests/fixtures/v1 by tests/fixtures/make_fixtures.py) open, verify and replay to the same
state hash with this build. A later format must keep passing this, or refuse the files with
a named version error and a documented upgrade (docs/journal-format.md)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ringlog import JournalCorruptError
from ringlog.journal import Journal, JournalReader
from ringlog.journaltool import check
from ringlog.processor import Processor, read_manifest
from ringlog.replay import Replayer
from ringlog.snapshot import SnapshotStore

FIX = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIX))
sys.path.insert(0, str(Path(__file__).parent))

from cli_handler import Book  # noqa: E402
from make_fixtures import Order, records_digest, registry, state_hash  # noqa: E402

V1 = FIX / "v1"
EXPECTED = json.loads((V1 / "EXPECTED.json").read_text())


@pytest.fixture
def v1(tmp_path):
    """A copy: opening a journal may write (the durable mark), never the committed files."""
    shutil.copytree(V1, tmp_path / "v1")
    return tmp_path / "v1"


def test_v1_journals_verify_clean_with_the_same_records(v1):
    for sub, key in (("journal", "journal_digest"), ("proc/input", "proc_input_digest"),
                     ("proc/output", "proc_output_digest")):
        res = check(v1 / sub)
        assert res.problem is None, (sub, res.problem)
        assert records_digest(v1 / sub) == EXPECTED[key], sub
        JournalReader(v1 / sub).verify_all()


def test_v1_journal_opens_and_decodes_by_its_schema(v1):
    with Journal(v1 / "journal", segment_size=8192, registry=registry()) as j:
        assert j.next_sequence == EXPECTED["journal_records"] and not j.decisions
        orders = [rec.decode(j.registry) for rec in j.reader()]
    assert orders[:3] == [Order(0, 100, 1), Order(1, 101, 2), Order(2, 102, 3)]
    assert len(orders) == 200 and orders[-1] == Order(199 % 5, 100 + 199 % 13, 1 + 199 % 4)


@pytest.mark.parametrize("snapshot", ["none", "latest"])
def test_v1_processor_directory_replays_to_the_same_state_hash(v1, snapshot):
    book = Book()
    result = Replayer(v1 / "proc", book).run(snapshot=snapshot, verify=True)
    assert state_hash(book) == EXPECTED["proc_state_hash"]
    assert book.count == EXPECTED["proc_count"] or snapshot == "latest"
    assert result.divergence is None


def test_v1_processor_recovers_to_the_same_state_hash(v1):
    for seq in SnapshotStore(v1 / "proc" / "snapshots").sequences():
        SnapshotStore(v1 / "proc" / "snapshots").load(seq)
    book = Book()
    p = Processor(book, v1 / "proc", read_manifest(v1 / "proc").config)
    report = p.recover()
    assert state_hash(book) == EXPECTED["proc_state_hash"]
    assert report.first_divergence is None
    p.stop()


def test_a_newer_format_version_is_refused_by_name(v1):
    seg = next((v1 / "journal").glob("*.seg"))
    raw = bytearray(seg.read_bytes())
    raw[8] = 2  # format version 2
    seg.write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="format version 2; this build reads "
                                                  "version 1"):
        Journal(v1 / "journal", segment_size=8192)
