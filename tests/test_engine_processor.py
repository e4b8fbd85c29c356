"""The engine as the processor's handler: journaled, replayed bit for bit, behind the breaker."""

import pytest

from ringlog import Breaker, BreakerConfig, Limit, Processor, ProcessorConfig
from ringlog.engine import Command, Engine, Report, Side, new_order, registry
from ringlog.engine.flow import demo_config, mixed_flow
from ringlog.journal import Journal, JournalReader


def run_flow(path, cfg, n, seed, snapshot_every=0, breaker=None):
    engine = Engine(cfg)
    pcfg = ProcessorConfig(slot_size=cfg.min_slot_size, durability="none",
                           snapshot_every=snapshot_every)
    p = Processor(engine, path, pcfg, breaker=breaker, registry=registry(cfg.l2_depth))
    p.start()
    cmds, types = mixed_flow(n, seed=seed, symbols=2, accounts=8)
    for i in range(n):
        p.publish(cmds[i:i + 1].tobytes(), int(types[i]), timestamp_ns=1_000 * i)
    p.drain(timeout=120)
    p.stop()
    return engine, cmds, types


def recorded_outputs(path):
    with Journal(path / "output") as j:
        return [(r.type_id, bytes(r.payload), r.producer_seq) for r in j.reader(0)]


def test_replay_from_the_journal_reproduces_state_and_every_output(tmp_path):
    cfg = demo_config(2, max_orders=1 << 14)
    live, cmds, types = run_flow(tmp_path, cfg, 3000, seed=11)
    outputs = recorded_outputs(tmp_path)
    # the handler path emits exactly what the engine computes, in order, tagged by cause
    direct = Engine(cfg)
    want = [(t, p, i) for i in range(len(cmds))
            for t, p in direct.apply(int(types[i]), cmds[i:i + 1].tobytes())]
    assert outputs == want
    fresh = Engine(cfg)
    p2 = Processor(fresh, tmp_path, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                    durability="none"))
    rep = p2.recover(verify=True)
    p2.stop()
    assert rep.replayed == 3000 and rep.first_divergence is None
    assert rep.verified_outputs == len(outputs)
    assert fresh.state_hash() == live.state_hash() == direct.state_hash()


def test_recovery_from_a_snapshot_plus_replay_matches_the_live_engine(tmp_path):
    cfg = demo_config(2, max_orders=1 << 14)
    live, _, _ = run_flow(tmp_path, cfg, 3000, seed=12, snapshot_every=700)
    fresh = Engine(cfg)
    p2 = Processor(fresh, tmp_path, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                    durability="none"))
    rep = p2.recover(verify=True)
    p2.stop()
    assert rep.snapshot_sequence == 2799 and rep.replayed == 200
    assert rep.first_divergence is None
    assert fresh.state_hash() == live.state_hash()
    assert fresh.dump_state() == live.dump_state()


def test_the_journal_schema_lets_tools_decode_engine_records(tmp_path):
    cfg = demo_config(2)
    run_flow(tmp_path, cfg, 50, seed=1)
    names = {d["type_id"]: d for d in JournalReader(tmp_path / "input").schema}
    assert names[Command.NEW]["name"] == "new"
    assert names[Report.L2]["fields"][0] == ["symbol", "<u4"]


def test_breaker_limits_outputs_per_account_and_holds_them(tmp_path):
    cfg = demo_config(1, market_data=False)
    trips = []
    breaker = Breaker(BreakerConfig(limits=[Limit(max_count=40, window_ns=10**9, per="key")]),
                      alert=trips.append)
    engine = Engine(cfg)
    p = Processor(engine, tmp_path, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                    durability="none"), breaker=breaker)
    p.start()
    # account 2 is quiet; account 1 runs away with 30 orders (2 outputs each) in 30 us
    p.publish(new_order(1, account=2, symbol=1, side=Side.BUY, price=9_990, qty=1), Command.NEW,
              timestamp_ns=0)
    for i in range(30):
        p.publish(new_order(100 + i, account=1, symbol=1, side=Side.SELL, price=10_010 + i,
                            qty=1), Command.NEW, timestamp_ns=1_000 * (i + 1))
    p.drain(timeout=30)
    p.stop()
    assert trips and trips[0].key == 1 and trips[0].limit
    assert p.breaker.state_name == "open" and p.breaker.held_count > 0
    # the 41st output of account 1 (its 21st order) trips; later input waits in the journal
    assert engine.stats()["commands"] == 1 + 21


@pytest.mark.parametrize("payload", [b"", b"\x00" * 7, b"\xff" * 200])
def test_garbage_payloads_are_rejected_not_fatal_to_the_loop(tmp_path, payload):
    cfg = demo_config(1)
    engine = Engine(cfg)
    got = []
    p = Processor(engine, tmp_path, ProcessorConfig(slot_size=256, durability="none"),
                  on_output=got.append)
    p.start()
    p.publish(payload, Command.NEW)
    p.publish(payload, 4242)
    p.drain(timeout=30)
    p.stop()
    assert [r.type_id for r in got] == [Report.REJECTED, Report.REJECTED]


def test_default_engine_config_runs_behind_the_default_processor_config(tmp_path):
    from ringlog.engine import EngineConfig, SymbolSpec

    cfg = EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=100)])
    got = []
    p = Processor(Engine(cfg), tmp_path, ProcessorConfig(durability="none"),
                  registry=registry(cfg.l2_depth), on_output=got.append)
    p.start()
    p.publish(new_order(1, account=1, symbol=1, side=Side.BUY, price=10, qty=1), Command.NEW)
    p.drain(timeout=30)
    p.stop()
    assert [r.type_id for r in got] == [Report.ACCEPTED, Report.RESTED, Report.L1]
    assert cfg.min_slot_size <= ProcessorConfig().slot_size


def _engine_behind_breaker(path, cfg, cmds, types, limit, allow):
    breaker = Breaker(BreakerConfig(limits=[Limit(max_count=limit, window_ns=10**9,
                                                  per="key")], allow_types=allow))
    p = Processor(Engine(cfg), path, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                     durability="none"),
                  breaker=breaker, registry=registry(cfg.l2_depth))
    p.start()
    for i in range(len(cmds)):
        p.publish(cmds[i:i + 1].tobytes(), int(types[i]), timestamp_ns=1_000 * i)
    p.drain(timeout=120)
    p.stop()
    with Journal(path / "output") as j:
        out = [(r.type_id, r.flags, bytes(r.payload), r.producer_seq) for r in j.reader(0)]
    b = p.breaker
    return out, b.held, b.counters(), b.last_trip


@pytest.mark.parametrize("limit", [7, 8, 9, 10])
def test_a_commands_outputs_pass_the_breaker_at_once_with_the_same_decisions(tmp_path, limit):
    # The loop checks one command's outputs to one account at once when they all pass
    # (BreakerCore.pass_run), else one by one. An allow-list of a type the engine never
    # emits turns the runs off (every output checked alone) and changes no decision: the
    # output journal, the held outputs, the counters and the trip are the same either way,
    # wherever the trip falls inside a command's outputs (limits 7-10 move it).
    cfg = demo_config(1, market_data=False, max_orders=1 << 12)
    cmds, types = mixed_flow(400, seed=5, symbols=1, accounts=3)
    runs = _engine_behind_breaker(tmp_path / "runs", cfg, cmds, types, limit, [])
    each = _engine_behind_breaker(tmp_path / "each", cfg, cmds, types, limit, [65_000])
    assert runs[3] is not None  # it tripped
    assert runs == each
