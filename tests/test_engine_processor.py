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
