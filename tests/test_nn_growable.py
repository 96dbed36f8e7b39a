"""oltr.nn._growable: appends into spare room equal torch.cat, never write rows another tensor
shows, and state dicts / saved tensors hold no room."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from oltr.nn._growable import append_along, compact, compact_state_dict_hook, has_room


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_appends_equal_cat_and_reuse_one_buffer_until_it_is_full(dim, dtype):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 3, generator=g, dtype=dtype)
    if dim == 1:
        base = base.t().contiguous()  # (3, 5): columns are the classes
    expected, grown = base.clone(), base
    buffers = set()
    for step in range(40):
        shape = (1, 3) if dim == 0 else (3, 1)
        rows = torch.randn(*shape, generator=g, dtype=dtype)
        expected = torch.cat([expected, rows], dim)
        grown = append_along(grown, rows, dim=dim)
        buffers.add(grown._oltr_room.buffer.data_ptr())
        assert torch.equal(grown, expected) and grown.dtype == dtype, step
    assert torch.equal(base, expected.narrow(dim, 0, 5))  # the first tensor is untouched
    assert len(buffers) <= 3  # 5 -> room 16 -> room for a quarter more: a few buffers, not 40
    if dim == 0:
        assert grown.is_contiguous()
    else:
        assert grown.stride() == (grown._oltr_room.buffer.shape[1], 1)
        torch.testing.assert_close(torch.ones(2, 3, dtype=dtype) @ grown, torch.ones(2, 3, dtype=dtype) @ expected)


def test_an_older_view_gets_its_own_buffer_and_never_overwrites_a_newer_one():
    first = append_along(torch.zeros(4, 2), torch.ones(1, 2))
    newer = append_along(first, torch.full((1, 2), 2.0))
    assert has_room(newer) and not has_room(first)  # first is not the latest view any more
    other = append_along(first, torch.full((1, 2), 7.0))  # must not write row 5 of the buffer
    assert torch.equal(newer[5], torch.full((2,), 2.0))
    assert torch.equal(other[5], torch.full((2,), 7.0))
    assert other.data_ptr() != newer.data_ptr()


def test_a_user_slice_with_data_behind_it_is_never_written_past_its_end():
    big = torch.arange(20.0).reshape(10, 2)
    view = big[:4]  # the rows behind it belong to the user, not to a room
    grown = append_along(view, torch.full((1, 2), -1.0))
    assert torch.equal(big, torch.arange(20.0).reshape(10, 2))
    assert torch.equal(grown[:4], big[:4]) and torch.equal(grown[4], torch.tensor([-1.0, -1.0]))


def test_copies_get_their_own_buffer():
    grown = append_along(torch.zeros(3, 2), torch.ones(1, 2))
    twin = copy.deepcopy(grown)
    assert not has_room(twin)
    twin = append_along(twin, torch.full((1, 2), 5.0))
    assert torch.equal(grown, torch.cat([torch.zeros(3, 2), torch.ones(1, 2)]))
    assert torch.equal(twin[4], torch.full((2,), 5.0))


def test_compact_drops_the_room_and_saving_a_compacted_state_dict_is_small():
    grown = append_along(torch.randn(1000, 8), torch.randn(1, 8))
    assert grown.untyped_storage().nbytes() > grown.numel() * 4
    small = compact(grown)
    assert torch.equal(small, grown) and small.untyped_storage().nbytes() == small.numel() * 4
    plain = torch.randn(3, 2)
    assert compact(plain) is plain

    outer = torch.nn.Sequential(torch.nn.Linear(8, 4))
    module = outer[0]
    room = append_along(torch.randn(1000, 8), torch.randn(1, 8))
    module.register_buffer("memory", room)
    module.register_state_dict_post_hook(compact_state_dict_hook)
    state = outer.state_dict()
    assert torch.equal(state["0.memory"], room)
    assert state["0.memory"].untyped_storage().nbytes() == room.numel() * 4
    assert state["0.weight"].data_ptr() == module.weight.data_ptr()  # no room: still aliased
    buffer = io.BytesIO()
    torch.save({k: v for k, v in state.items() if k == "0.memory"}, buffer)
    assert buffer.tell() < 1001 * 8 * 4 * 1.1  # not the 1.25x buffer


@pytest.mark.parametrize("dim", [0, 1])
def test_reserve_along_makes_exactly_the_room_asked_for_once(dim):
    from oltr.nn._growable import reserve_along

    base = torch.randn(4, 6)
    reserved = reserve_along(base, 5, dim=dim)
    assert torch.equal(reserved, base) and has_room(reserved, 5, dim) and not has_room(reserved, 6, dim)
    assert reserve_along(reserved, 5, dim=dim) is reserved  # room enough: no copy
    grown = reserved
    for _ in range(5):
        shape = (1, 6) if dim == 0 else (4, 1)
        grown = append_along(grown, torch.ones(*shape), dim=dim)
        assert grown.data_ptr() == reserved.data_ptr()
    with pytest.raises(ValueError, match="extra"):
        reserve_along(base, -1)
