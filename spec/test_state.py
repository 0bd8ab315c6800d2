"""Chapter 17, state and data: finding parameters, state dicts, the safetensors format byte for byte, and reading MNIST IDX files."""
import gzip, json, struct
import numpy as np
import pytest
from tiny import Context, Tensor, dtypes, datasets
from tiny.nn import BatchNorm, Conv2d, LayerNorm, Linear
from tiny.nn.state import get_parameters, get_state_dict, load_state_dict, safe_load, safe_save
from conftest import NP

# The one tolerance table: a saved and loaded tensor must come back bit for bit.
TOLERANCE = {"round_trip": (0, 0)}
SAFETENSORS_DTYPE = {dtypes.bool: "BOOL", dtypes.int8: "I8", dtypes.uint8: "U8", dtypes.int16: "I16", dtypes.uint16: "U16",
                     dtypes.int32: "I32", dtypes.uint32: "U32", dtypes.int64: "I64", dtypes.uint64: "U64",
                     dtypes.float16: "F16", dtypes.float32: "F32", dtypes.float64: "F64"}

@pytest.fixture
def on_device(device):
  Tensor.manual_seed(0)
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

def edge_values(dtype) -> np.ndarray:
  """Every dtype's extremes and a few ordinary values, as a (2, 3) array."""
  if dtype == dtypes.bool: return np.array([[True, False, True], [False, False, True]])
  if dtype.is_float:
    info = np.finfo(NP[dtype])
    return np.array([[info.max, info.min, -0.0], [np.inf, info.tiny, -1.5]], dtype=NP[dtype])
  info = np.iinfo(NP[dtype])
  return np.array([[info.max, info.min, 0], [1, info.max - 1, 7]], dtype=NP[dtype])

def read_safetensors(path):
  """Parse a safetensors file by hand: (header length, header dict, data bytes)."""
  raw = path.read_bytes()
  (n,) = struct.unpack("<Q", raw[:8])
  return n, json.loads(raw[8:8 + n]), raw[8 + n:], raw[8:8 + n]

# ## Parameters and state dicts

class Block:
  def __init__(self, fan_in): self.linear, self.norm = Linear(fan_in, 3), LayerNorm(3)
  def __call__(self, x): return self.norm(self.linear(x)).relu()

class Net:
  def __init__(self):
    self.blocks = [Block(2), Block(3)]
    self.head = {"out": Linear(3, 1, bias=False)}
    self.scale = Tensor([2.0])
    self.name = "net"  # not a tensor: ignored
  def __call__(self, x):
    for b in self.blocks: x = b(x)
    return self.head["out"](x) * self.scale

def test_get_state_dict_names_tensors_by_their_attribute_path(on_device):
  net = Net()
  sd = get_state_dict(net)
  assert sorted(sd) == sorted([f"blocks.{i}.{layer}.{p}" for i in range(2) for layer in ("linear", "norm") for p in ("weight", "bias")] +
                              ["head.out.weight", "scale"])
  assert sd["blocks.1.linear.weight"] is net.blocks[1].linear.weight and sd["scale"] is net.scale

def test_get_parameters_lists_every_tensor_once_per_name(on_device):
  net = Net()
  params = get_parameters(net)
  assert len(params) == 10 and all(isinstance(p, Tensor) for p in params)
  assert {id(p) for p in params} == {id(t) for t in get_state_dict(net).values()}

def test_state_dict_of_layers_uses_tinygrads_names(on_device):
  assert sorted(get_state_dict(BatchNorm(3))) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
  assert sorted(get_state_dict(Conv2d(1, 2, 3))) == ["bias", "weight"]
  assert sorted(get_state_dict(Linear(1, 2, bias=False))) == ["weight"]

def test_load_state_dict_copies_values_into_the_same_tensors(on_device):
  src, dst = Net(), Net()
  x = Tensor(np.random.default_rng(0).standard_normal((4, 2)), device=on_device, dtype=dtypes.float32)
  before = {k: id(v) for k, v in get_state_dict(dst).items()}
  load_state_dict(dst, get_state_dict(src))
  assert {k: id(v) for k, v in get_state_dict(dst).items()} == before  # an optimizer holding them sees the new values
  for k, v in get_state_dict(src).items(): np.testing.assert_array_equal(get_state_dict(dst)[k].numpy(), v.numpy(), err_msg=k)
  np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())

def test_load_state_dict_casts_and_moves_to_the_models_tensors(on_device):
  layer = Linear(2, 2)
  load_state_dict(layer, {"weight": Tensor([[1, 2], [3, 4]], device="PYTHON", dtype=dtypes.int32), "bias": Tensor([0.5, 0.25], dtype=dtypes.float64)})
  assert layer.weight.dtype == dtypes.float32 and layer.weight.device == on_device
  np.testing.assert_array_equal(layer.weight.numpy(), [[1, 2], [3, 4]])
  np.testing.assert_array_equal(layer.bias.numpy(), [0.5, 0.25])

def test_load_state_dict_strict_names_the_missing_keys(on_device):
  with pytest.raises(KeyError, match="bias"): load_state_dict(Linear(2, 2), {"weight": Tensor.ones(2, 2)})

def test_load_state_dict_not_strict_loads_what_is_there(on_device):
  layer = Linear(2, 2)
  bias = layer.bias.numpy()
  load_state_dict(layer, {"weight": Tensor.zeros(2, 2)}, strict=False)
  np.testing.assert_array_equal(layer.weight.numpy(), np.zeros((2, 2), np.float32))
  np.testing.assert_array_equal(layer.bias.numpy(), bias)

def test_load_state_dict_names_a_shape_mismatch(on_device):
  with pytest.raises(ValueError, match=r"weight.*\(2, 2\).*\(3, 2\)"): load_state_dict(Linear(2, 2), {"weight": Tensor.ones(3, 2), "bias": Tensor.ones(2)})

# ## safetensors: the bytes on disk

def test_safe_save_writes_the_safetensors_layout(device, tmp_path):
  a = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
  b = np.array([-1, 2, -3], dtype=np.int16)
  c = np.array(1.5, dtype=np.float64)  # 0-d
  path = tmp_path / "model.safetensors"
  safe_save({"a": Tensor(a, device=device), "b": Tensor(b, device=device), "c": Tensor(c, device=device)}, str(path))
  n, header, data, header_bytes = read_safetensors(path)
  assert n % 8 == 0, "the header is padded so the data starts 8-byte aligned"
  assert header_bytes.rstrip(b" ").endswith(b"}"), "the JSON is padded with spaces"
  assert set(header) == {"a", "b", "c"}
  assert header["a"]["dtype"] == "F32" and header["a"]["shape"] == [2, 3]
  assert header["b"]["dtype"] == "I16" and header["b"]["shape"] == [3]
  assert header["c"]["dtype"] == "F64" and header["c"]["shape"] == []
  spans = sorted(tuple(h["data_offsets"]) for h in header.values())
  assert spans[0][0] == 0 and spans[-1][1] == len(data) and all(x[1] == y[0] for x, y in zip(spans, spans[1:])), "data has no holes"
  for name, arr in (("a", a), ("b", b), ("c", c)):
    begin, end = header[name]["data_offsets"]
    assert data[begin:end] == arr.astype(arr.dtype.newbyteorder("<")).tobytes(), f"{name} is stored little-endian, row-major"

def test_safe_save_writes_metadata_as_strings(tmp_path):
  path = tmp_path / "m.safetensors"
  safe_save({"x": Tensor([1.0])}, str(path), metadata={"format": "tiny", "step": "3"})
  _, header, _, _ = read_safetensors(path)
  assert header["__metadata__"] == {"format": "tiny", "step": "3"}
  assert list(safe_load(str(path))) == ["x"]

@pytest.mark.parametrize("dtype", dtypes.all(), ids=str)
def test_safe_save_then_safe_load_round_trips_every_dtype(device, dtype, tmp_path):
  values = edge_values(dtype)
  path = tmp_path / f"{dtype.name}.safetensors"
  safe_save({"t": Tensor(values, device=device), "row": Tensor(values[1], device=device)}, str(path))
  _, header, data, _ = read_safetensors(path)
  assert header["t"]["dtype"] == SAFETENSORS_DTYPE[dtype]
  begin, end = header["t"]["data_offsets"]
  assert data[begin:end] == values.astype(values.dtype.newbyteorder("<")).tobytes()
  loaded = safe_load(str(path), device=device)
  assert loaded["t"].dtype == dtype and loaded["t"].shape == (2, 3) and loaded["t"].device == device
  assert loaded["t"].numpy().tobytes() == values.tobytes()  # bit for bit: -0.0, inf and extremes included
  assert loaded["row"].numpy().tobytes() == values[1].tobytes()

def test_safe_load_reads_a_file_written_by_hand(device, tmp_path):
  x, y = np.array([[1, 2], [3, 4]], dtype="<u2"), np.array([0.5, -2.0, 8.0], dtype="<f4")
  header = {"__metadata__": {"by": "hand"}, "y": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "x": {"dtype": "U16", "shape": [2, 2], "data_offsets": [12, 20]}}
  text = json.dumps(header).encode()
  text += b" " * (-len(text) % 8)
  path = tmp_path / "hand.safetensors"
  path.write_bytes(struct.pack("<Q", len(text)) + text + y.tobytes() + x.tobytes())
  loaded = safe_load(str(path), device=device)
  assert sorted(loaded) == ["x", "y"]
  np.testing.assert_array_equal(loaded["x"].numpy(), x)
  np.testing.assert_array_equal(loaded["y"].numpy(), y)
  assert loaded["x"].dtype == dtypes.uint16

def test_safe_save_of_an_empty_tensor(tmp_path):
  path = tmp_path / "empty.safetensors"
  safe_save({"e": Tensor.zeros(0, 3), "x": Tensor([1.0])}, str(path))
  _, header, _, _ = read_safetensors(path)
  assert header["e"]["shape"] == [0, 3] and header["e"]["data_offsets"][0] == header["e"]["data_offsets"][1]
  loaded = safe_load(str(path))
  assert loaded["e"].shape == (0, 3) and loaded["x"].tolist() == [1.0]

def test_safe_save_of_a_lazy_non_contiguous_tensor_saves_its_values(tmp_path):
  t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3)).T * 2  # not realized, and permuted
  path = tmp_path / "lazy.safetensors"
  safe_save({"t": t}, str(path))
  np.testing.assert_array_equal(safe_load(str(path))["t"].numpy(), np.arange(6, dtype=np.float32).reshape(2, 3).T * 2)

def test_a_model_saved_and_loaded_computes_the_same(on_device, tmp_path):
  src, dst = Net(), Net()
  path = tmp_path / "net.safetensors"
  safe_save(get_state_dict(src), str(path))
  load_state_dict(dst, safe_load(str(path)))
  x = Tensor(np.random.default_rng(1).standard_normal((3, 2)), device=on_device, dtype=dtypes.float32)
  np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())

def test_the_safetensors_library_reads_what_tiny_writes(tmp_path):
  st = pytest.importorskip("safetensors.numpy")
  tensors = {dtype.name: edge_values(dtype) for dtype in dtypes.all()}
  path = tmp_path / "lib.safetensors"
  safe_save({k: Tensor(v) for k, v in tensors.items()}, str(path))
  loaded = st.load_file(str(path))
  for k, v in tensors.items():
    assert loaded[k].dtype == v.dtype and loaded[k].tobytes() == v.tobytes(), k

# ## MNIST IDX files

def idx_bytes(arr: np.ndarray) -> bytes:
  """The IDX format: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, big-endian sizes, the data."""
  return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()

def write_mnist(folder, gz: bool, names=("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
  rng = np.random.default_rng(7)
  arrays = [rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5), rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)]
  for name, arr in zip(names, arrays):
    if gz: (folder / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(arr)))
    else: (folder / name).write_bytes(idx_bytes(arr))
  return arrays

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_mnist_reads_idx_files(tmp_path, gz):
  arrays = write_mnist(tmp_path, gz)
  X_train, Y_train, X_test, Y_test = datasets.mnist(str(tmp_path))
  assert X_train.shape == (5, 1, 28, 28) and X_test.shape == (3, 1, 28, 28)
  assert Y_train.shape == (5,) and Y_test.shape == (3,)
  assert all(t.dtype == dtypes.uint8 for t in (X_train, Y_train, X_test, Y_test))
  np.testing.assert_array_equal(X_train.numpy()[:, 0], arrays[0])
  np.testing.assert_array_equal(Y_train.numpy(), arrays[1])
  np.testing.assert_array_equal(X_test.numpy()[:, 0], arrays[2])
  np.testing.assert_array_equal(Y_test.numpy(), arrays[3])

def test_mnist_accepts_the_dotted_file_names(tmp_path):
  arrays = write_mnist(tmp_path, False, ("train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"))
  np.testing.assert_array_equal(datasets.mnist(str(tmp_path))[3].numpy(), arrays[3])

def test_mnist_names_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"): datasets.mnist(str(tmp_path))

def test_mnist_rejects_a_file_that_is_not_idx(tmp_path):
  write_mnist(tmp_path, False)
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"<html>not found</html>")
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.*IDX|IDX.*train-images-idx3-ubyte"): datasets.mnist(str(tmp_path))

def test_mnist_rejects_idx_of_another_element_type(tmp_path):
  write_mnist(tmp_path, False)
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 3) + np.zeros(3, ">f4").tobytes())
  with pytest.raises(ValueError, match="t10k-labels"): datasets.mnist(str(tmp_path))

def test_mnist_rejects_a_truncated_file(tmp_path):
  write_mnist(tmp_path, False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(ValueError, match="train-images-idx3-ubyte"): datasets.mnist(str(tmp_path))
