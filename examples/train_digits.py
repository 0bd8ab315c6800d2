"""Train a small convnet on the 8x8 handwritten digits and report its test accuracy.

    python examples/train_digits.py [--device CPU] [--model convnet] [--epochs 12]

On the PYTHON device (the fallback when there is no C compiler) every op is
interpreted in Python, hundreds of times slower: one step of the convnet takes
minutes there, so the default on PYTHON is a linear classifier (one matrix
multiply, about 92% test accuracy) trained for one epoch, in about a minute.
`--model convnet` trains the convnet there anyway; the progress bar says how
long is left.

The data (1,797 images, 64 pixels each in 0..16, and their labels) ships with
this repository in examples/data/digits.csv.gz; see DIGITS-README.md there.
Everything runs on tiny: the forward pass, the gradients, the Adam updates.
"""
import argparse, csv, gzip, os, random, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tiny import DEBUG, Device, Tensor, TinyJit, dtypes, nn
from tiny.nn.optim import Adam
from tiny.nn.state import get_parameters

def load_digits() -> tuple[list[list[float]], list[int]]:
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.csv.gz")
  with gzip.open(path, "rt") as f: rows = [[int(v) for v in row] for row in csv.reader(f)]
  return [[p / 16.0 for p in row[:64]] for row in rows], [row[64] for row in rows]

class ConvNet:
  def __init__(self):
    self.c1 = nn.Conv2d(1, 16, 3, padding=1)
    self.c2 = nn.Conv2d(16, 32, 3, padding=1)
    self.l1 = nn.Linear(32 * 4 * 4, 10)
  def __call__(self, x: Tensor) -> Tensor:
    x = self.c1(x.reshape(-1, 1, 8, 8)).relu()
    x = self.c2(x).relu().max_pool2d(2)
    return self.l1(x.flatten(1))

class LinearClassifier:
  """Softmax regression, the convnet's cheap stand-in on PYTHON: 650 weights instead of 9,930, and no convolutions."""
  def __init__(self): self.l1 = nn.Linear(64, 10)
  def __call__(self, x: Tensor) -> Tensor: return self.l1(x.reshape(-1, 64))

# What each model trains with by default (learning rate, epochs): the linear one takes larger steps, for one epoch.
MODELS = {"convnet": (ConvNet, 3e-3, 12), "linear": (LinearClassifier, 1e-1, 1)}

def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--device", default=None, help="device to train on (default: the fastest available)")
  parser.add_argument("--model", choices=MODELS, default=None, help="convnet (the default) or linear (the default on PYTHON)")
  parser.add_argument("--epochs", type=int, default=None, help="passes over the training set (default: 12 for the convnet, 3 for linear)")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seed", type=int, default=42)
  args = parser.parse_args()
  try: device = Device.canonicalize(args.device)  # None means the default; an unknown or unusable name raises, saying which exist
  except Exception as e: parser.error(str(e))
  if args.model is None: args.model = "linear" if device == "PYTHON" else "convnet"
  make_model, lr, default_epochs = MODELS[args.model]
  if args.epochs is None: args.epochs = default_epochs

  images, labels = load_digits()
  order = list(range(len(images)))
  random.Random(args.seed).shuffle(order)  # a fixed held-out split: 80% train, 20% test
  cut = len(order) * 4 // 5
  train, test = order[:cut], order[cut:]
  X_test, Y_test = Tensor([images[i] for i in test], device=device), Tensor([labels[i] for i in test], device=device, dtype=dtypes.int32)

  Tensor.manual_seed(args.seed)
  model = make_model()
  for layer in vars(model).values():  # layers are made on the default device: move their weights to the chosen one
    for name, weight in vars(layer).items():
      if isinstance(weight, Tensor): setattr(layer, name, weight.to(device).realize())
  opt = Adam(get_parameters(model), lr=lr)

  @TinyJit
  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = model(x).sparse_categorical_crossentropy(y)
    loss.backward()
    opt.step()
    return loss

  print(f"training a {args.model} on {device}: {len(train)} images, testing on {len(test)}, {args.epochs} epoch{'s' if args.epochs != 1 else ''}")
  if device == "PYTHON" and args.model == "convnet": print("PYTHON interprets every op: a step of the convnet takes minutes there")
  rng, start = random.Random(args.seed), time.perf_counter()
  steps = len(train) // args.batch
  # DEBUG prints lines while a step runs, which would land inside a bar redrawn in place: with DEBUG on, each update is a line
  redraw = DEBUG.value == 0
  for epoch in range(1, args.epochs + 1):
    seen, epoch_start = 0, time.perf_counter()
    for step in range(steps):
      # the batch is picked here, in Python: picking it on the device is a one-hot gather, a matmul as big as the step
      batch = [train[i] for i in rng.sample(range(len(train)), args.batch)]
      x, y = Tensor([images[i] for i in batch], device=device), Tensor([labels[i] for i in batch], device=device, dtype=dtypes.int32)
      loss = train_step(x, y).item()
      seen += args.batch
      done, elapsed = (step + 1) * 30 // steps, time.perf_counter() - start
      left = elapsed / ((epoch - 1) * steps + step + 1) * ((args.epochs - epoch + 1) * steps - step - 1)
      bar = f"epoch {epoch:2d}/{args.epochs} [{'=' * done}{' ' * (30 - done)}] loss {loss:.4f} {seen / (time.perf_counter() - epoch_start):7.0f} img/s, {left:4.0f} s left"
      print("\r" + bar if redraw else bar, end="" if redraw else "\n", flush=True)
    if redraw: print()
  with Tensor.no_grad():
    predictions = model(X_test).argmax(axis=1)
    accuracy = (predictions == Y_test).cast(dtypes.float32).mean().item()
  print(f"test accuracy: {accuracy * 100:.2f}% ({len(test)} held-out images), trained in {time.perf_counter() - start:.1f} s")

if __name__ == "__main__":
  main()
