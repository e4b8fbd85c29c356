"""The ``ringlog`` tools through a subprocess: journal info/dump/verify/tail/repair, replay and
snapshot, on journals and processor directories made here. Exit codes: 0 ok, 1 the thing
checked failed, 2 usage error."""

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from ringlog import EventRegistry, Journal
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

HERE = Path(__file__).parent
HANDLERS = HERE / "cli_handler.py"
T0 = 1_700_000_000_000_000_000
N = 3000
TICK = np.dtype([("px", "<i8"), ("qty", "<i4"), ("side", "u1")])


class Order(msgspec.Struct, array_like=True):
    account: int
    price: float
    sym: str


def ringlog(*args, input=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "ringlog", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def written(i):
    """What record i of the test journal holds: (type name, payload dict, correlation)."""
    if i % 2:
        return "Order", {"account": i % 10, "price": i * 1.5, "sym": "AB"}, i % 7
    return "Tick", {"px": i, "qty": i % 5, "side": i % 2}, 0


def make_journal(path, n=N, segment_size=1 << 16):
    reg = EventRegistry()
    reg.register(1, Order)
    reg.register(2, dtype=TICK, name="Tick")
    with Journal(path, registry=reg, segment_size=segment_size, durability="none") as j:
        for i in range(n):
            name, p, corr = written(i)
            if name == "Order":
                j.append_struct(Order(**p), timestamp_ns=T0 + i * 1000, correlation_id=corr)
            else:
                j.append(np.array([tuple(p.values())], TICK).tobytes(), 2,
                         timestamp_ns=T0 + i * 1000)
    return path


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    return make_journal(tmp_path_factory.mktemp("cli") / "j")


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- dump ---------------------------------------------------------------------------------
def test_dump_json_decodes_every_record_by_the_journal_schema_alone(journal):
    r = ringlog("journal", "dump", journal, "--json")
    assert r.returncode == 0, r.stderr
    rows = jsonl(r.stdout)
    assert [d["sequence"] for d in rows] == list(range(N))
    for d in rows:
        name, payload, corr = written(d["sequence"])
        assert (d["type"], d["payload"], d["correlation_id"]) == (name, payload, corr)
        assert d["timestamp_ns"] == T0 + d["sequence"] * 1000


def test_dump_filters_by_sequence_type_field_and_correlation(journal):
    r = ringlog("journal", "dump", journal, "--json", "--from", 1000, "--to", 2000,
                "--type", "Order", "--where", "price>2000", "--where", "account=3")
    want = [i for i in range(1000, 2001) if i % 2 and i * 1.5 > 2000 and i % 10 == 3]
    assert [d["sequence"] for d in jsonl(r.stdout)] == want and want
    r = ringlog("journal", "dump", journal, "--json", "--type", "2", "--where", "qty>=4",
                "--correlation-id", 0, "--limit", 5)
    assert [d["sequence"] for d in jsonl(r.stdout)] == [4, 14, 24, 34, 44]


def test_dump_time_filters_accept_iso_8601_with_nanoseconds_and_plain_ns(journal):
    since = "2023-11-14T22:13:20.002500000Z"  # T0 + 2_500_000 ns: sequence 2500
    r = ringlog("journal", "dump", journal, "--json", "--since", since,
                "--until", T0 + 2_600_000)
    assert [d["sequence"] for d in jsonl(r.stdout)] == list(range(2500, 2601))


def test_dump_table_has_aligned_columns_and_stops_quietly_when_the_pipe_closes(journal):
    with subprocess.Popen([sys.executable, "-m", "ringlog", "journal", "dump", str(journal)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        lines = [p.stdout.readline() for _ in range(4)]
        p.stdout.close()  # like `| head -4`
        assert p.wait(timeout=60) == 0
        assert p.stderr.read() == ""
    assert lines[0].split()[:2] == ["SEQUENCE", "TIME"]
    col = lines[0].index("PAYLOAD")
    assert all(line[col - 2:col] == "  " for line in lines[1:])
    assert "px=0 qty=0 side=0" in lines[1] and "account=1 price=1.5 sym=AB" in lines[2]


def test_dump_memory_stays_flat_on_a_journal_of_many_segments(tmp_path):
    # 40 MB of records in 1 MB segments; the dump unmaps each segment once read
    big = tmp_path / "big"
    with Journal(big, segment_size=1 << 20, durability="none") as j:
        j.append_many([b"x" * 4000] * 10_000)
    small = tmp_path / "small"
    with Journal(small, segment_size=1 << 20, durability="none") as j:
        j.append_many([b"x" * 4000] * 250)
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'ringlog',"
            " 'journal', 'dump', sys.argv[1], '--correlation-id', '9'], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    rss = [int(subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True,
                              text=True, timeout=120, check=True).stdout) for p in (small, big)]
    assert rss[1] - rss[0] < 12_000, rss  # KiB: far below the 40 MB journal


# -- info ---------------------------------------------------------------------------------
def test_info_reports_segments_ranges_counts_schema_and_version(journal):
    r = ringlog("journal", "info", journal, "--json")
    d = json.loads(r.stdout)
    assert (d["first_sequence"], d["last_sequence"], d["records"]) == (0, N - 1, N)
    assert d["counts_by_type"] == {"Tick (2)": N // 2, "Order (1)": N // 2}
    assert sum(s["records"] for s in d["segments"]) == N and len(d["segments"]) > 1
    assert [s["first_sequence"] for s in d["segments"][1:]] == [
        s["last_sequence"] + 1 for s in d["segments"][:-1]]
    assert d["format_version"] == 1 and d["appender_pid"] is None
    assert {t["name"]: t["kind"] for t in d["schema"]} == {"Order": "msgpack", "Tick": "record"}
    human = ringlog("journal", "info", journal).stdout
    assert "Order v1 (msgpack)" in human and f"0 .. {N - 1}" in human


# -- verify -------------------------------------------------------------------------------
def test_verify_finds_a_flipped_bit_at_its_record_offset_and_exits_1(tmp_path):
    j = make_journal(tmp_path / "j")
    assert ringlog("journal", "verify", j).returncode == 0
    _, seg, off = JournalReader(j).locate(1500)
    with open(seg.path, "r+b") as f:
        f.seek(off + 8 + 20)  # a bit in the header of record 1500
        b = f.read(1)
        f.seek(off + 8 + 20)
        f.write(bytes([b[0] ^ 0x10]))
    r = ringlog("journal", "verify", j, "--json")
    assert r.returncode == 1
    p = json.loads(r.stdout)["problem"]
    assert (p["kind"], p["path"], p["offset"], p["sequence"]) == ("corrupt", seg.path, off, 1500)
    r = ringlog("journal", "verify", j)
    assert r.returncode == 1 and f"offset {off}" in r.stderr and "sequence 1500" in r.stderr


def test_verify_reports_a_missing_segment_as_a_gap(tmp_path):
    j = make_journal(tmp_path / "j")
    segs = sorted(j.glob("*.seg"))
    segs[1].unlink()
    r = ringlog("journal", "verify", j, "--json")
    p = json.loads(r.stdout)["problem"]
    assert r.returncode == 1 and p["kind"] == "gap" and p["path"] == str(segs[2])


# -- repair -------------------------------------------------------------------------------
def tear_last_record(j):
    """A power loss mid-write: the last record's length is there, its body half written."""
    last = N - 1
    _, seg, off = JournalReader(j).locate(last)
    with open(seg.path, "r+b") as f:
        f.seek(off)
        before = f.read(8 + 72)
        f.seek(off + 8 + 40)
        f.write(b"\0" * 16)
    return seg.path, off, before


def test_repair_truncates_a_torn_tail_saves_it_and_keeps_every_intact_record(tmp_path):
    j = make_journal(tmp_path / "j")
    path, _off, _ = tear_last_record(j)
    assert json.loads(ringlog("journal", "verify", j, "--json").stdout)["problem"]["kind"] == (
        "torn_tail")
    declined = ringlog("journal", "repair", j, input="n\n")
    assert declined.returncode == 1 and "nothing changed" in declined.stderr
    assert ringlog("journal", "verify", j).returncode == 1  # untouched
    side = tmp_path / "side"
    r = ringlog("journal", "repair", j, "--yes", "--side-dir", side)
    assert r.returncode == 0, r.stderr
    assert ringlog("journal", "verify", j).returncode == 0
    rows = jsonl(ringlog("journal", "dump", j, "--json").stdout)
    assert [d["sequence"] for d in rows] == list(range(N - 1))
    assert all(d["payload"] == written(d["sequence"])[1] for d in rows)
    (saved,) = side.iterdir()
    assert saved.read_bytes()[:8] != b"\0" * 8 and saved.name.startswith(Path(path).name)
    with Journal(j) as jj:  # the journal continues at the torn record's sequence
        assert jj.recovery is None and jj.append(b"next") == N - 1


def test_repair_refuses_mid_journal_corruption_unless_forced_and_lists_what_it_drops(tmp_path):
    j = make_journal(tmp_path / "j")
    _, seg, off = JournalReader(j).locate(1000)
    with open(seg.path, "r+b") as f:
        f.seek(off + 60)
        f.write(b"\xff")
    r = ringlog("journal", "repair", j, "--yes")
    assert r.returncode == 1 and "--force" in r.stderr
    assert ringlog("journal", "verify", j).returncode == 1
    r = ringlog("journal", "repair", j, "--yes", "--force", "--side-dir", tmp_path / "side")
    assert r.returncode == 0
    assert f"drops sequences 1000..{N - 1} ({N - 1000} committed records)" in r.stdout
    assert ringlog("journal", "verify", j).returncode == 0
    assert [d["sequence"] for d in jsonl(ringlog("journal", "dump", j, "--json").stdout)] == (
        list(range(1000)))


# -- tail ---------------------------------------------------------------------------------
def test_tail_follows_records_appended_by_another_process(tmp_path):
    j = tmp_path / "live"
    with Journal(j, durability="none") as jj:
        for i in range(5):
            jj.append(struct.pack("<q", i), 3)
        with subprocess.Popen([sys.executable, "-m", "ringlog", "journal", "tail", str(j),
                               "-n", "2", "--count", "7", "--json", "--idle-exit", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
            first = p.stdout.readline()  # it is running: append the rest now
            for i in range(5, 10):
                jj.append(struct.pack("<q", i), 3)
            rest = [p.stdout.readline() for _ in range(6)]  # --idle-exit bounds the wait
            assert p.wait(timeout=60) == 0, p.stderr.read()
    seqs = [d["sequence"] for d in jsonl(first + "".join(rest))]
    assert seqs == [3, 4, 5, 6, 7, 8, 9]


# -- replay and snapshots -----------------------------------------------------------------
def book_events(n, seed=7):
    rng = np.random.default_rng(seed)
    return [struct.pack("<qq", int(a), int(q)) for a, q in
            zip(rng.integers(1, 6, n), rng.integers(-50, 50, n), strict=True)]


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory):
    """A processor directory of 600 events with snapshots every 100, and the live state of
    the handler after every sequence."""
    sys.path.insert(0, str(HERE))
    try:
        import cli_handler
    finally:
        sys.path.remove(str(HERE))
    d = tmp_path_factory.mktemp("proc")
    cli_handler.Book.history = {}
    try:
        cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                              durability="none", snapshot_every=100)
        p = Processor(cli_handler.Book(), d, cfg)
        p.start()
        for i, e in enumerate(book_events(600)):
            p.publish(e, 1, timestamp_ns=T0 + i * 1_000_000)
        p.drain(timeout=60)
        p.stop()
        history = dict(cli_handler.Book.history)
    finally:
        cli_handler.Book.history = None
    return d, history


def tree_digest(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def test_replay_to_a_sequence_reproduces_the_live_state_there_and_writes_nothing(processor_dir,
                                                                                 tmp_path):
    d, history = processor_dir
    before = tree_digest(d)
    out = tmp_path / "state.json"
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--to", 437, "--dump-state", out,
                "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res["snapshot_sequence"], res["first_sequence"], res["last_sequence"]) == (
        399, 400, 437)  # newest snapshot at or before the target, then the journal
    doc = json.loads(out.read_text())
    assert doc["sequence"] == 437 and doc["state"] == history[437]
    # from no snapshot at all, to an event time: the same state as live
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--snapshot", "none",
                "--until", T0 + 250 * 1_000_000, "--dump-state", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["state"] == history[250]
    assert tree_digest(d) == before  # read-only


def test_replay_verify_passes_then_finds_an_injected_divergence(processor_dir):
    d, _ = processor_dir
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--snapshot", "none", "--verify",
                "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 0 and res["verified_outputs"] == 600 and res["divergence"] is None
    r = ringlog("journal", "verify", d)  # a processor directory: every journal in it
    assert r.returncode == 0 and [line.split()[1] for line in r.stdout.splitlines()] == [
        f"{d / 'input'}:", f"{d / 'output'}:"]
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:DivergentBook", "--snapshot", "none",
                "--verify", "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 1
    assert (res["divergence"]["input_sequence"], res["divergence"]["output_index"]) == (250, 250)
    assert "DIVERGENCE at input sequence 250" in r.stderr


def test_replay_names_the_sequence_where_the_handler_raised(processor_dir):
    d, _ = processor_dir
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Crashy", "--snapshot", "none")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "raised at input sequence 123" in r.stderr and "no such account" in r.stderr


def test_replay_dumps_opaque_state_as_base64_and_shows_progress_on_request(processor_dir,
                                                                           tmp_path):
    d, _ = processor_dir
    out = tmp_path / "s.json"
    r = ringlog("replay", d / "input", "--handler", f"{HANDLERS}:Counter", "--dump-state", out,
                "--progress")
    assert r.returncode == 0, r.stderr
    assert "ev/s" in r.stderr and "ETA" in r.stderr and "100.0%" in r.stderr
    import base64
    assert struct.unpack("<q", base64.b64decode(json.loads(out.read_text())["state_base64"])) == (
        (600,))


def test_snapshot_take_list_and_verify(tmp_path, processor_dir):
    src, history = processor_dir
    d = tmp_path / "p"
    import shutil
    shutil.copytree(src, d)
    r = ringlog("snapshot", "take", d, "--handler", f"{HANDLERS}:Book", "--to", 450)
    assert r.returncode == 0, r.stderr
    rows = jsonl(ringlog("snapshot", "list", d, "--json").stdout)
    assert [x["sequence"] for x in rows] == [99, 199, 299, 399, 450, 499, 599]
    assert all(x["valid"] for x in rows)
    r = ringlog("snapshot", "verify", d, "--handler", f"{HANDLERS}:Book")
    assert r.returncode == 0 and r.stdout.count("replay reproduces it") == 7, r.stdout
    # the taken snapshot is one a replay (and a processor restart) starts from
    out = tmp_path / "s.json"
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--to", 460, "--dump-state", out,
                "--json")
    assert json.loads(r.stdout)["snapshot_sequence"] == 450
    assert json.loads(out.read_text())["state"] == history[460]
    snap = d / "snapshots" / f"{450:020d}.snap"
    data = bytearray(snap.read_bytes())
    data[-1] ^= 1
    snap.write_bytes(bytes(data))
    assert ringlog("snapshot", "verify", d).returncode == 1
    r = ringlog("snapshot", "list", d)
    assert r.returncode == 1 and "checksum mismatch" in r.stdout


@pytest.mark.parametrize("args", [
    ["journal", "dump", "/nonexistent/dir"],
    ["journal", "dump", "{j}", "--where", "price~1"],
    ["journal", "dump", "{j}", "--since", "yesterday"],
    ["replay", "{j}", "--handler", "no_such_module:X"],
    ["replay", "{j}", "--handler", "x:Y", "--to", "5", "--until", "6"],
    ["replay", "{j}", "--handler", f"{HANDLERS}:Book", "--snapshot", "newest"],
    ["journal"],
])
def test_usage_errors_exit_2_with_a_message(journal, args):
    r = ringlog(*[a.format(j=journal) for a in args])
    assert r.returncode == 2 and r.stderr.strip()
    assert "Traceback" not in r.stderr


def test_every_command_has_help_with_examples():
    for cmd in (["journal", "dump"], ["journal", "verify"], ["journal", "repair"], ["replay"],
                ["snapshot", "take"]):
        r = ringlog(*cmd, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout, cmd
    assert os.path.exists(HANDLERS)


def test_replay_with_the_breaker_halts_and_resumes_where_the_live_run_did(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import cli_handler
    finally:
        sys.path.remove(str(HERE))
    from ringlog.breaker import Breaker

    ms = 1_000_000
    config = {"limits": [{"max_count": 10, "window_ns": 1000 * ms}]}
    (tmp_path / "breaker.json").write_text(json.dumps(config))
    d = tmp_path / "proc"
    h = cli_handler.Book()
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                          durability="none")
    p = Processor(h, d, cfg, breaker=Breaker(config))
    p.start()
    for i, e in enumerate(book_events(30)):
        p._in.publish(e, 1, timestamp_ns=i * ms)  # all in the ring before the trip
    p.reset_breaker(timestamp_ns=10_000 * ms)  # journaled operator commands, in order
    p.release_held(timestamp_ns=10_001 * ms)
    p.reset_breaker(timestamp_ns=20_000 * ms)
    p.drain(timeout=60)
    p.stop()
    live = h.dump_state()
    outputs = len(list(JournalReader(d / "output")))
    assert any(r.type_id == 0xFFFF_FF10 for r in JournalReader(d / "output"))  # it tripped
    out = tmp_path / "state.json"
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--breaker",
                tmp_path / "breaker.json", "--verify", "--json", "--dump-state", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verified_outputs"] == outputs
    assert json.loads(out.read_text())["state"] == live
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--breaker", "none", "--verify",
                "--json")
    assert r.returncode == 1  # without the breaker the outputs differ at the first trip
    # by default the breaker the processor ran with comes from DIR/processor.json
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:Book", "--verify", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verified_outputs"] == outputs
    # control events by name, in both journals; trip reports decoded from msgpack
    resets = jsonl(ringlog("journal", "dump", d, "--type", "breaker_reset", "--json").stdout)
    assert [x["timestamp_ns"] for x in resets] == [10_000 * ms, 20_000 * ms]
    trips = jsonl(ringlog("journal", "dump", d, "--journal", "output", "--type",
                          "breaker_tripped", "--json").stdout)
    assert len(trips) == 2 and trips[0]["payload"][0] == trips[0]["producer_seq"]


def test_repair_refuses_while_an_appender_holds_the_journal(tmp_path):
    j = make_journal(tmp_path / "j")
    idx = sorted(j.glob("*.idx"))
    with Journal(j, durability="none"):
        idx[0].write_bytes(idx[1].read_bytes())  # a stale index: something to repair
        r = ringlog("journal", "repair", j, "--yes")
        assert r.returncode == 1 and f"pid {os.getpid()}" in r.stderr
    assert ringlog("journal", "repair", j, "--yes").returncode == 0
    assert ringlog("journal", "verify", j).returncode == 0


def test_replay_rebuilds_the_matching_engine_book_at_a_sequence(tmp_path):
    from ringlog.engine import Engine, registry
    from ringlog.engine.flow import demo_config, mixed_flow

    cfg = demo_config(2, max_orders=1 << 14)
    live = Engine(cfg)
    d = tmp_path / "engine"
    p = Processor(live, d, ProcessorConfig(slot_size=cfg.min_slot_size, durability="none",
                                           snapshot_every=700),
                  registry=registry(cfg.l2_depth))
    p.start()
    cmds, types = mixed_flow(2000, seed=5, symbols=2, accounts=8)
    for i in range(2000):
        p.publish(cmds[i:i + 1].tobytes(), int(types[i]), timestamp_ns=T0 + 1000 * i)
    p.drain(timeout=120)
    p.stop()
    direct = Engine(cfg)  # the engine's state after each command, computed directly
    for i in range(1500):
        direct.apply(int(types[i]), cmds[i:i + 1].tobytes())
    out = tmp_path / "book.json"
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:engine", "--to", 1499, "--verify",
                "--json", "--dump-state", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["snapshot_sequence"] == 1399 and res["divergence"] is None
    assert json.loads(out.read_text())["state"] == json.loads(msgspec.json.encode(
        direct.dump_state()))
    r = ringlog("replay", d, "--handler", f"{HANDLERS}:engine", "--dump-state", out)
    assert json.loads(out.read_text())["state"] == json.loads(msgspec.json.encode(
        live.dump_state()))
    # the journal decodes by its own schema: engine commands by name and field
    rows = jsonl(ringlog("journal", "dump", d, "--type", "new", "--where", "side=1",
                         "--json", "--limit", 5).stdout)
    assert len(rows) == 5 and all(x["type"] == "new" and x["payload"]["side"] == 1
                                  for x in rows)
    assert rows[0]["payload"]["order_id"] == int(cmds[rows[0]["sequence"]]["order_id"])


def test_dump_type_names_match_any_case_and_padding_fields_are_not_shown(tmp_path):
    from ringlog.engine import registry
    from ringlog.engine.records import REPORT_DTYPE, Report

    rec = np.zeros(1, REPORT_DTYPE)
    rec["order_id"], rec["qty"] = 5, 7
    with Journal(tmp_path / "j", registry=registry(), durability="none") as j:
        j.append(rec.tobytes(), Report.ACCEPTED)
        j.append(rec.tobytes(), Report.RESTED)
    rows = jsonl(ringlog("journal", "dump", tmp_path / "j", "--type", "ACCEPTED",
                         "--json").stdout)
    assert len(rows) == 1 and rows[0]["payload"]["order_id"] == 5
    assert not [k for k in rows[0]["payload"] if k.startswith("_")]


def test_replay_of_a_handler_that_needs_arguments_is_a_usage_error_naming_a_factory(tmp_path):
    with Journal(tmp_path / "p" / "input", durability="none") as j:
        j.append(b"x", 1)
    r = ringlog("replay", tmp_path / "p", "--handler", "ringlog.engine:Engine")
    assert r.returncode == 2 and "factory" in r.stderr and "Traceback" not in r.stderr
