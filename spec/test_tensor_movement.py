"""Chapters 7 and 15: movement ops, indexing and joining tensors, checked against numpy on every device.

Movement ops never change values, so most cases use distinct integers
(np.arange) and demand exact equality: any wrong index shows up as a wrong
number.
"""
import numpy as np
import pytest
from tiny import Tensor, dtypes
from conftest import check

A = np.arange(30, dtype=np.int32).reshape(2, 3, 5)  # the running example: small, odd sizes, every value distinct

# ## reshape, permute, transpose, expand

@pytest.mark.parametrize("shape", [(6, 5), (30,), (-1,), (5, -1), (2, -1, 5), (1, 30, 1), (3, 2, 5), (5, 3, 2)], ids=str)
def test_reshape_matches_numpy(device, shape):
  check(Tensor(A, device=device).reshape(shape), A.reshape(shape))
  check(Tensor(A, device=device).reshape(*shape), A.reshape(shape))

def test_reshape_of_non_contiguous_views(device):
  t = Tensor(A, device=device)
  check(t.permute(2, 0, 1).reshape(5, 6), A.transpose(2, 0, 1).reshape(5, 6))
  check(t[:, ::-1, 1:4].reshape(-1), A[:, ::-1, 1:4].reshape(-1))
  check(t.T.reshape(3, 10).T, A.T.reshape(3, 10).T)

def test_reshape_of_scalars_and_empty_tensors(device):
  check(Tensor([[7]], device=device).reshape(()), np.array(7))
  check(Tensor(7, device=device).reshape(1, 1), np.array([[7]]))
  check(Tensor.zeros(0, 3, device=device).reshape(3, 0), np.zeros((3, 0)))
  check(Tensor.zeros(0, 3, device=device).reshape(0, 1, 3, 1), np.zeros((0, 1, 3, 1)))

@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0), (-1, 0, -2)], ids=str)
def test_permute_matches_numpy(device, order):
  check(Tensor(A, device=device).permute(order), A.transpose(order))
  check(Tensor(A, device=device).permute(*order), A.transpose(order))

@pytest.mark.parametrize("n", [1000, 1001])
def test_a_thousand_movement_ops_in_a_row_lower_with_the_default_rewrite_limit(device, n):
  t, a = Tensor(A, device=device), A
  for _ in range(n): t, a = t.permute(2, 0, 1), a.transpose(2, 0, 1)
  check(t, a)

def test_transpose_and_T(device):
  t = Tensor(A, device=device)
  check(t.transpose(0, 2), A.swapaxes(0, 2))
  check(t.transpose(-1, -2), A.swapaxes(-1, -2))
  check(t.T, A.T)
  check(t[0].transpose(), A[0].T)
  check(Tensor([1, 2, 3], device=device).T, np.array([1, 2, 3]))

@pytest.mark.parametrize("src, shape", [((3, 1), (3, 4)), ((3, 1), (2, 3, 4)), ((1,), (7,)), ((), (2, 3)), ((1, 5), (0, 5)), ((3, 1), (2, -1, 4))], ids=str)
def test_expand_matches_numpy_broadcast_to(device, src, shape):
  a = np.arange(int(np.prod(src)), dtype=np.int32).reshape(src)
  target = tuple(s if s != -1 else src[i - (len(shape) - len(src))] for i, s in enumerate(shape))
  check(Tensor(a, device=device).expand(shape), np.broadcast_to(a, target))

def test_expanded_tensor_fed_into_ops(device):
  a = np.array([[1.0], [2.0], [3.0]], np.float32)
  t = Tensor(a, device=device).expand(3, 4)
  check(t * Tensor(np.arange(12, dtype=np.float32).reshape(3, 4), device=device), np.broadcast_to(a, (3, 4)) * np.arange(12).reshape(3, 4))
  check(t.reshape(2, 6), np.broadcast_to(a, (3, 4)).reshape(2, 6))

# ## pad, shrink, flip

@pytest.mark.parametrize("padding", [((1, 2), (0, 1), (2, 0)), (None, (1, 1), None), ((0, 0), (0, 0), (0, 0)),
                                     ((1, 0), (-1, 0), (0, -2)), ((0, 0), (2, -1), (-4, 3))], ids=str)
def test_pad_with_pairs_matches_numpy(device, padding):
  pairs = [(0, 0) if p is None else p for p in padding]
  cut = A[tuple(slice(max(-b, 0), A.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(pairs))]
  expected = np.pad(cut, [(max(b, 0), max(e, 0)) for b, e in pairs])
  check(Tensor(A, device=device).pad(padding), expected)

def test_pad_flat_is_pytorch_style_last_axis_first(device):
  t = Tensor(A, device=device)
  check(t.pad((1, 2)), np.pad(A, ((0, 0), (0, 0), (1, 2))))
  check(t.pad((1, 0, 0, 2)), np.pad(A, ((0, 0), (0, 2), (1, 0))))

def test_pad_with_a_value(device):
  a = np.arange(6, dtype=np.float32).reshape(2, 3)
  check(Tensor(a, device=device).pad(((1, 0), (2, 1)), value=-1.5), np.pad(a, ((1, 0), (2, 1)), constant_values=-1.5))
  check(Tensor.zeros(0, 2, device=device).pad(((1, 1), None), value=3.0), np.full((2, 2), 3.0))

def test_pad_of_ints_and_bools(device):
  check(Tensor([1, 2], device=device).pad(((1, 1),), value=7), np.array([7, 1, 2, 7]), dtype=dtypes.int32)
  check(Tensor([True], device=device).pad(((1, 0),)), np.array([False, True]), dtype=dtypes.bool)

def test_pad_of_a_view_then_ops(device):
  t = Tensor(A, device=device)
  expected = np.pad(A[:, ::-1].transpose(2, 0, 1), ((0, 1), (1, 0), (0, 0))) * 2
  check(t.flip(1).permute(2, 0, 1).pad(((0, 1), (1, 0), None)) * 2, expected)

@pytest.mark.parametrize("arg", [((0, 1), (1, 3), (0, 5)), ((1, 2), None, (4, 5)), (None, None, None), ((0, 2), (2, 2), (0, 5))], ids=str)
def test_shrink_matches_numpy_slicing(device, arg):
  bounds = [(0, s) if a is None else a for a, s in zip(arg, A.shape)]
  check(Tensor(A, device=device).shrink(arg), A[tuple(slice(b, e) for b, e in bounds)])

@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 2), (0, 1, 2), ()], ids=str)
def test_flip_matches_numpy(device, axis):
  check(Tensor(A, device=device).flip(axis), np.flip(A, axis) if axis != () else A)

def test_flip_twice_is_identity_and_composes_with_shrink(device):
  t = Tensor(A, device=device)
  check(t.flip(1).flip(1), A)
  check(t.flip(2).shrink((None, (1, 3), (0, 2))).flip(0), A[::-1, 1:3, ::-1][:, :, :2])

# ## flatten, unflatten, squeeze, unsqueeze, repeat

def test_flatten(device):
  t = Tensor(A, device=device)
  check(t.flatten(), A.reshape(-1))
  check(t.flatten(1), A.reshape(2, 15))
  check(t.flatten(0, 1), A.reshape(6, 5))
  check(t.flatten(-2, -1), A.reshape(2, 15))
  check(Tensor(3, device=device).flatten(), np.array([3]))
  check(t.permute(2, 1, 0).flatten(), A.transpose(2, 1, 0).reshape(-1))

def test_unflatten(device):
  t = Tensor(A.reshape(6, 5), device=device)
  check(t.unflatten(0, (2, 3)), A)
  check(t.unflatten(-1, (5, 1)), A.reshape(6, 5, 1))
  check(t.unflatten(0, (3, -1)), A.reshape(3, 2, 5))

def test_squeeze_and_unsqueeze(device):
  a = np.arange(6, dtype=np.int32).reshape(1, 2, 1, 3)
  t = Tensor(a, device=device)
  check(t.squeeze(), a.squeeze())
  check(t.squeeze(0), a.squeeze(0))
  check(t.squeeze(-2), a.squeeze(-2))
  check(t.squeeze(1), a)  # an axis that is not 1 stays
  check(t.unsqueeze(0), a[None])
  check(t.unsqueeze(-1), a[..., None])
  check(t.unsqueeze(2), np.expand_dims(a, 2))
  check(Tensor(5, device=device).unsqueeze(0), np.array([5]))
  check(Tensor([[4]], device=device).squeeze(), np.array(4))

@pytest.mark.parametrize("repeats", [(1, 1), (2, 1), (1, 3), (2, 2), (2, 1, 3), (0, 2)], ids=str)
def test_repeat_matches_numpy_tile(device, repeats):
  a = np.arange(6, dtype=np.int32).reshape(2, 3)
  check(Tensor(a, device=device).repeat(repeats), np.tile(a, repeats))
  check(Tensor(a, device=device).repeat(*repeats), np.tile(a, repeats))

def test_repeat_of_a_view(device):
  a = np.arange(6, dtype=np.int32).reshape(2, 3)
  check(Tensor(a, device=device).T.repeat(1, 2), np.tile(a.T, (1, 2)))

# ## Indexing

# Each entry is an index written as numpy would take it; tensors stand in for lists where a list appears.
BASIC_INDICES = [
  0, -1, 1, (0, 2), (1, -1, 4), (slice(None), 1), (Ellipsis, 2), (Ellipsis,), None, (slice(None), None, slice(None), None),
  (Ellipsis, None), (None, Ellipsis, None), slice(1, None), (slice(None), slice(None, None, 2)), (slice(None), slice(None, None, -1)),
  (slice(None, None, -1), slice(1, None), slice(None, None, -2)), (slice(None), slice(None), slice(5, 1, -2)),
  (slice(None), slice(-2, None)), (slice(None), slice(10, None)), (slice(None), slice(2, 1)), (0, Ellipsis, slice(None, None, 3)),
  (Ellipsis, 1, None), (), (slice(None), slice(None), slice(None, None, 4)), (slice(None), slice(None), slice(-1, -6, -3)),
  (1, slice(None, None, -1), slice(1, 4)), (slice(-5, 5), 0), (slice(None), -3, slice(None, None, 7)),
]

@pytest.mark.parametrize("index", BASIC_INDICES, ids=repr)
def test_basic_indexing_matches_numpy(device, index):
  check(Tensor(A, device=device)[index], A[index])

@pytest.mark.parametrize("index", [0, (slice(None), slice(None, None, -2)), (Ellipsis, slice(1, 4, 2)), (1, None, slice(None, None, -1))], ids=repr)
def test_indexing_a_non_contiguous_view(device, index):
  view = A.transpose(2, 0, 1)[::-1, :, 1:]
  check(Tensor(A, device=device).permute(2, 0, 1)[::-1, :, 1:][index], view[index])

# Advanced (int tensor) indices: numpy puts the gathered axes where the indexed
# axes were when they are adjacent, and first when they are not. (numpy also
# counts a plain int as an indexed axis, so `A[0, :, [1, 2]]` is (2, 3) there;
# tinygrad applies the int first and gives (3, 2). That case is left out.)
ADVANCED_INDICES = [
  ([1, 0, 1],), (slice(None), [2, 0]), (slice(None), slice(None), [4, -1, 0, 4]), ([0, 1], [2, 0]), (slice(None), [0, 2], [1, 3]),
  ([0, 1], slice(None), [1, 3]), ([[0, 1], [1, 0]],), (slice(None), [[0], [2]], [1, 3]), (Ellipsis, [1, 3]), (None, [1, 0]),
  ([-1, -2],), (slice(None, None, -1), [2, 1]), (1, [2, 0], slice(1, 3)), ([1], slice(None), [0, 4]), (slice(None), [1]),
  ([0, 1, 1], [2, 1, 0], [4, 3, 0]), ([[1]], [[2]], [[3]]), (slice(None), 1, [0, 3]), (1, [2, 0]),
]

@pytest.mark.parametrize("index", ADVANCED_INDICES, ids=repr)
def test_tensor_indexing_matches_numpy_advanced_indexing(device, index):
  as_numpy = tuple(np.array(i) if isinstance(i, list) else i for i in index)
  as_tensors = tuple(Tensor(i, device=device) if isinstance(i, list) else i for i in index)
  check(Tensor(A, device=device)[as_tensors], A[as_numpy])

def test_tensor_index_of_other_int_dtypes_and_float_data(device):
  f = np.linspace(-2, 2, 30, dtype=np.float32).reshape(2, 3, 5)
  t = Tensor(f, device=device)
  check(t[:, Tensor([2, 0], device=device, dtype=dtypes.int64)], f[:, [2, 0]])
  check(t[Tensor([1], device=device, dtype=dtypes.uint8), 0], f[[1], 0])
  check(t[:, :, Tensor(np.array([4, 0], np.int16), device=device)], f[:, :, [4, 0]])
  assert t[Tensor([0], device=device)].dtype == dtypes.float32

def test_tensor_index_of_a_non_contiguous_view(device):
  view = A.transpose(2, 1, 0)[::-1]
  check(Tensor(A, device=device).permute(2, 1, 0).flip(0)[Tensor([0, 4, 2], device=device), 1:], view[[0, 4, 2], 1:])

def test_index_with_a_lazy_computed_tensor_and_a_0d_tensor(device):
  t = Tensor(A, device=device)
  check(t[:, t.sum((0, 2)).argmax()], A[:, int(A.sum((0, 2)).argmax())])  # the index itself is a reduce, not yet run
  check(t[Tensor(1, device=device)], A[np.array(1)])
  check(t[..., Tensor([[0, 1]], device=device)], A[..., np.array([[0, 1]])])
  check(t[(t[0, 0, 0] + 1) % 2], A[1])

def test_python_list_index_gathers_like_a_tensor(device):
  check(Tensor(A, device=device)[:, [2, 0]], A[:, [2, 0]])

def test_indexing_odd_sizes(device):
  a = np.arange(13, dtype=np.int32)
  t = Tensor(a, device=device)
  for index in [slice(None, None, 3), slice(None, None, -5), slice(12, None), slice(None, 0, -1), 6, -13]: check(t[index], a[index])
  check(t[Tensor([12, 0, 7], device=device)], a[[12, 0, 7]])
  one = Tensor([[9]], device=device)
  check(one[0, 0], np.array(9))
  check(one[:, ::-1], np.array([[9]]))
  check(one[Tensor([0, 0, 0], device=device)], np.array([[9], [9], [9]]))

# ## Joining and splitting

def test_cat_along_every_axis(device):
  b = np.arange(100, 130, dtype=np.int32).reshape(2, 3, 5)
  ta, tb = Tensor(A, device=device), Tensor(b, device=device)
  for dim in (0, 1, 2, -1):
    check(ta.cat(tb, dim=dim), np.concatenate([A, b], axis=dim))
    check(Tensor.cat(ta, tb, ta, dim=dim), np.concatenate([A, b, A], axis=dim))

def test_cat_of_different_lengths_empty_pieces_and_views(device):
  a, b, e = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 1), np.float32), np.zeros((2, 0), np.float32)
  ta = Tensor(a, device=device)
  check(ta.cat(Tensor(b, device=device), Tensor(e, device=device), dim=1), np.concatenate([a, b, e], axis=1))
  check(ta.T.cat(ta[:, ::-1].T, dim=0), np.concatenate([a.T, a[:, ::-1].T]))
  check(Tensor(a, device=device).cat(dim=0), a)

def test_cat_promotes_dtypes(device):
  out = Tensor([1, 2], device=device).cat(Tensor([0.5], device=device))
  check(out, np.array([1, 2, 0.5]), dtype=dtypes.float32)

def test_stack(device):
  b = A + 100
  ta, tb = Tensor(A, device=device), Tensor(b, device=device)
  for dim in (0, 1, 3, -1):
    check(ta.stack(tb, dim=dim), np.stack([A, b], axis=dim))
  check(Tensor.stack(Tensor(1, device=device), Tensor(2, device=device)), np.array([1, 2]))

def test_split_by_size_and_by_sizes(device):
  a = np.arange(35, dtype=np.int32).reshape(7, 5)
  t = Tensor(a, device=device)
  pieces = t.split(3)
  assert [p.shape for p in pieces] == [(3, 5), (3, 5), (1, 5)]
  for p, e in zip(pieces, np.split(a, [3, 6])): check(p, e)
  pieces = t.split([1, 4], dim=1)
  assert [p.shape for p in pieces] == [(7, 1), (7, 4)]
  for p, e in zip(pieces, np.split(a, [1], axis=1)): check(p, e)
  pieces = t.split([2, 0, 5])
  assert [p.shape for p in pieces] == [(2, 5), (0, 5), (5, 5)]

def test_chunk_like_pytorch(device):
  a = np.arange(7, dtype=np.int32)
  chunks = Tensor(a, device=device).chunk(3)
  assert [c.shape for c in chunks] == [(3,), (3,), (1,)]
  for c, e in zip(chunks, [a[:3], a[3:6], a[6:]]): check(c, e)
  chunks = Tensor(A, device=device).chunk(2, dim=-1)
  assert [c.shape for c in chunks] == [(2, 3, 3), (2, 3, 2)]
  check(chunks[1], A[..., 3:])
  assert len(Tensor(a, device=device).chunk(7)) == 7 and len(Tensor(a, device=device).chunk(10)) == 7

def test_split_pieces_are_usable_in_ops(device):
  a = np.arange(12, dtype=np.float32).reshape(3, 4)
  x, y = Tensor(a, device=device).split(2, dim=1)
  check(x * y, a[:, :2] * a[:, 2:])
