import msgspec
import numpy as np
import pytest

from ringlog import HEADER_DTYPE, HEADER_SIZE, EventRegistry, SchemaError, slot_dtype


class Order(msgspec.Struct, array_like=True):
    id: int
    qty: int


class OrderV2(msgspec.Struct, array_like=True):
    id: int
    qty: int
    price: int = 0


def test_header_dtype_is_48_bytes_matching_the_c_struct():
    assert HEADER_DTYPE.itemsize == HEADER_SIZE == 48
    assert HEADER_DTYPE.fields["type_id"][1] == 32
    assert HEADER_DTYPE.fields["producer_id"][1] == 44


def test_slot_dtype_with_payload_dtype_has_slot_itemsize():
    dt = slot_dtype(64, np.dtype([("a", "<i8"), ("b", "<i8")]))
    assert dt.itemsize == 64
    assert dt.fields["payload"][1] == 48


def test_slot_dtype_with_oversize_payload_names_the_sizes():
    with pytest.raises(SchemaError, match="does not fit a 64-byte slot"):
        slot_dtype(64, np.dtype([("a", "<i8")] * 1 + [("b", "S32")]))


def test_slot_smaller_than_header_is_an_error():
    with pytest.raises(SchemaError, match="smaller than the 48-byte header"):
        slot_dtype(32)


def test_registry_round_trips_a_struct():
    reg = EventRegistry()
    reg.register(7, Order)
    tid, data = reg.encode(Order(1, 5))
    assert tid == 7
    assert reg.decode(7, data) == Order(1, 5)


def test_registry_rejects_duplicate_and_unknown_types():
    reg = EventRegistry()
    reg.register(7, Order)
    with pytest.raises(SchemaError, match="already registered"):
        reg.register(7, OrderV2)
    with pytest.raises(SchemaError, match="not registered"):
        reg.encode(OrderV2(1, 2))
    with pytest.raises(SchemaError, match="type_id must be"):
        reg.register(0, Order)


def test_registry_upcasts_an_old_version():
    reg = EventRegistry()
    reg.register(9, OrderV2, version=2)
    reg.add_upcaster(9, 1, lambda d: OrderV2(d[0], d[1], price=-1))
    old = msgspec.msgpack.encode(Order(3, 4))
    assert reg.decode(9, old, version=1) == OrderV2(3, 4, -1)
    with pytest.raises(SchemaError, match="no upcaster"):
        reg.decode(9, old, version=0)


def test_registry_invalid_payload_is_schema_error_naming_the_type():
    reg = EventRegistry()
    reg.register(7, Order)
    with pytest.raises(SchemaError, match="Order"):
        reg.decode(7, msgspec.msgpack.encode(["x", 1]))


def test_describe_lists_fields_for_tools():
    reg = EventRegistry()
    reg.register(7, Order)
    reg.register(8, dtype=np.dtype([("px", "<i8")]), name="Tick")
    d = reg.describe()
    assert d[0] == {"type_id": 7, "name": "Order", "version": 1, "kind": "msgpack",
                    "fields": [["id", "int"], ["qty", "int"]]}
    assert d[1]["kind"] == "record" and d[1]["fields"] == [["px", "<i8"]]
