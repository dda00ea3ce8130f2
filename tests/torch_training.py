"""Step-for-step comparison of a PyTorch training loop with ``step_lib.train_step``.

``adam_steps`` runs K steps of ``torch.optim.Adam`` on a loss and yields,
step by step, the state before it, the loss, the gradients (and those of a
float64 copy of the model at the same point: the reference both float32
gradients are measured against) and the state after.
``assert_synced_parity`` runs one ``train_step`` from each of those states
(the torch parameters and Adam moments converted to our layout), so each step
is compared after one step of float32 rounding, not K, and checks it before
the next record is made: a test holds one step's arrays at a time (a step of
the 14M-parameter official MLP is ~0.6 GB of them). ``free_steps`` runs K
steps from the initial state alone. ``assert_step_parity`` requires our
gradients to be as close to the float64 ones as PyTorch's own float32
gradients are, and the parameters after each step to be within what the two
gradients' difference explains (``adam_tolerance``).
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch
from betatc_jax import step as step_lib




def adam_steps(model, loss_fn, batches, eps, lr_at):
  """``zero_grad``, ``loss_fn(x, eps).backward()``, ``Adam.step`` per batch.

  Args:
    model: a torch module; its parameters are trained.
    loss_fn: (model, x tensor, eps tensor) -> (loss, {term: tensor}); it is
      also called with a float64 copy of the model and float64 inputs.
    batches, eps: float32 numpy arrays, one per step.
    lr_at: step -> learning rate (a per-epoch ExponentialLR is lr · γ^(t // E)).

  Yields:
    Per step, once the step is taken: ``before`` ({params, exp_avg,
    exp_avg_sq}: name -> array, and ``step``), ``loss``, ``terms``,
    ``grads``, ``grads64`` (float64, at the same parameters and inputs),
    ``params`` and ``exp_avg_sq`` after the update, and ``lr``.
  """
  named = dict(model.named_parameters())
  optimizer = torch.optim.Adam(named.values(), lr=lr_at(0))
  tensor_copy = lambda t: t.detach().numpy().copy()
  moment = lambda p, k: tensor_copy(optimizer.state[p][k]) if p in optimizer.state else \
      np.zeros(tuple(p.shape), np.float32)
  for t, (x, e) in enumerate(zip(batches, eps)):
    before = {"step": t, "params": {k: tensor_copy(p) for k, p in named.items()},
              "exp_avg": {k: moment(p, "exp_avg") for k, p in named.items()},
              "exp_avg_sq": {k: moment(p, "exp_avg_sq") for k, p in named.items()}}
    for group in optimizer.param_groups:
      group["lr"] = lr_at(t)
    model64 = copy.deepcopy(model).double()
    loss64, _ = loss_fn(model64, torch.from_numpy(np.array(x, np.float64)),
                        torch.from_numpy(np.array(e, np.float64)))
    loss64.backward()
    grads64 = {k: p.grad.detach().numpy().copy() for k, p in model64.named_parameters()
               if p.grad is not None}
    del model64, loss64
    optimizer.zero_grad()
    loss, terms = loss_fn(model, torch.from_numpy(np.array(x)), torch.from_numpy(np.array(e)))
    loss.backward()
    grads = {k: tensor_copy(p.grad) for k, p in named.items() if p.grad is not None}
    optimizer.step()
    yield {"before": before, "loss": loss.item(), "lr": lr_at(t),
           "terms": {k: float(v.detach()) for k, v in terms.items()}, "grads": grads,
           "grads64": grads64, "params": {k: tensor_copy(p) for k, p in named.items()},
           "exp_avg_sq": {k: moment(p, "exp_avg_sq") for k, p in named.items()}}


def adam_tolerance(delta, exp_avg_sq, t, lr, b1=0.9, b2=0.999, eps=1e-8):
  """Per entry: how far Adam's update t may move when its gradient moves by
  δ (an array, entrywise): 2e-6 + min(2·lr, 2·lr·(1 − β1)/(1 − β1^(t+1)) ·
  δ / (√v̂ + ε)), with v̂ the second moment after the step, bias-corrected:
  the first moment's derivative, doubled for the second's, and never more
  than the two opposite steps a gradient entry within rounding of 0 can take
  (Adam's g/(|g| + ε))."""
  vhat = exp_avg_sq / (1 - b2 ** (t + 1))
  return 2e-6 + np.minimum(2 * lr, 2 * lr * (1 - b1) / (1 - b1 ** (t + 1)) * delta
                           / (np.sqrt(vhat) + eps))


@jax.jit
def _step_and_grads(state, batch, key):
  """``train_step`` and ``loss_and_grads`` of the same step: one compilation."""
  return (step_lib.train_step(state, batch, key),
          step_lib.loss_and_grads(state, *step_lib.step_inputs(state, batch, key)))


def free_steps(state, batches, key):
  """The losses of K ``train_step``s from ``state``."""
  losses = []
  for batch in batches:
    (state, metrics), _ = _step_and_grads(state, batch, key)
    losses.append(float(metrics["loss"]))
  return losses


def synced_step(state0, batch, key, official, to_ours):
  """One ``train_step`` from a torch state (an ``adam_steps`` record).

  Args:
    state0: our initial train state (its structure and static fields).
    batch: uint8 [B, H, W, C], the step's batch.
    key: the run's base key.
    official: the step's ``adam_steps`` record.
    to_ours: torch-layout arrays (name -> array) -> our params tree.

  Returns:
    ``metrics`` and ``grads`` of ``loss_and_grads`` at the torch parameters,
    and ``params`` after our step; all on the host.
  """
  before = official["before"]
  t = before["step"]
  adam = state0.opt_state[0]._replace(count=jnp.int32(t), mu=to_ours(before["exp_avg"]),
                                      nu=to_ours(before["exp_avg_sq"]))
  state = state0.replace(step=jnp.int32(t), params=to_ours(before["params"]),
                         opt_state=(adam,) + tuple(state0.opt_state[1:]))
  (new_state, step_metrics), (metrics, _, grads) = _step_and_grads(state, batch, key)
  np.testing.assert_allclose(step_metrics["loss"], metrics["loss"], rtol=1e-6)
  np.testing.assert_allclose(step_metrics["learning_rate"], official["lr"], rtol=1e-6)
  return {"metrics": jax.device_get(metrics), "grads": jax.device_get(grads),
          "params": jax.device_get(new_state.params)}


def assert_step_parity(a, b, to_ours):
  """One synced step (``synced_step``'s ``a`` against the ``adam_steps``
  record ``b``), in our layout, against the float64 gradient g64 at the
  same point:

  - all parameters together: ‖ours − g64‖ <= 2·‖torch32 − g64‖ + 1e-6·‖g64‖
    (as accurate as PyTorch's own float32 gradient);
  - each tensor: max |ours − g64| <= 2·max |torch32 − g64| + 1e-3·max |g64|
    + 1e-6·(the model's largest |g64|) (no layer is off; which float32
    summation is luckier varies by step; the last term is for a tensor whose
    exact gradient is 0, as a bias before batch norm has, and whose float32
    gradient is rounding noise: measured 4e-6 for the seed's first conv bias);
  - each parameter entry after the step: within ``adam_tolerance`` of
    PyTorch's, with δ = |ours − torch32| + 1e-7·max |g64| of that entry.

  Returns:
    The ratio of our whole-model gradient error to PyTorch's (a measurement
    for the docstrings).
  """
  t = b["before"]["step"]
  flat = lambda tree: {jax.tree_util.keystr(p): np.asarray(v)
                       for p, v in jax.tree_util.tree_leaves_with_path(tree)}
  zeros = {k: np.zeros_like(v) for k, v in b["params"].items()}
  g32, g64 = flat(to_ours({**zeros, **b["grads"]})), flat(to_ours({**zeros, **b["grads64"]}))
  params, exp_avg_sq = flat(to_ours(b["params"])), flat(to_ours(b["exp_avg_sq"]))
  mine, my_params = flat(a["grads"]), flat(a["params"])
  squares = np.zeros(3)                    # ‖ours − g64‖², ‖torch32 − g64‖², ‖g64‖²
  model_scale = max(float(np.max(np.abs(v))) for v in g64.values())
  for name, exact in g64.items():
    exact = exact.astype(np.float64)
    error, torch_error = np.abs(mine[name] - exact), np.abs(g32[name] - exact)
    squares += [np.sum(error ** 2), np.sum(torch_error ** 2), np.sum(exact ** 2)]
    scale = np.max(np.abs(exact))
    assert np.max(error) <= 2 * np.max(torch_error) + 1e-3 * scale + 1e-6 * model_scale, (
        name, t, float(np.max(error)), float(np.max(torch_error)))
    delta = np.abs(mine[name] - g32[name]) + 1e-7 * scale
    tol = adam_tolerance(delta, exp_avg_sq[name], t, b["lr"])
    diff = np.abs(my_params[name] - params[name])
    assert np.all(diff <= tol), (name, t, float(np.max(diff / tol)))
  ours_norm, torch_norm, norm = np.sqrt(squares)
  assert ours_norm <= 2 * torch_norm + 1e-6 * norm, (t, ours_norm, torch_norm, norm)
  return float(ours_norm / torch_norm)


def assert_synced_parity(state0, batches, key, theirs, to_ours,
                         terms=("recon", "mi", "tc", "dim_kl")):
  """For each ``adam_steps`` record as it comes: ``synced_step`` from its
  state, the loss (rtol 2e-5) and loss terms (rtol 2e-5, atol 2e-4 nats: MI
  and TC are differences of close numbers), then ``assert_step_parity``;
  prints the largest measured ratio.

  Args:
    state0, batches, key, to_ours: as ``synced_step`` (a batch per step).
    theirs: ``adam_steps``' records, an iterable consumed once.

  Returns:
    The records' learning rates and losses, [(lr, loss)] per step: all a
    test keeps of them.
  """
  worst, kept = 0.0, []
  for t, (batch, b) in enumerate(zip(batches, theirs, strict=True)):
    a = synced_step(state0, batch, key, b, to_ours)
    np.testing.assert_allclose(a["metrics"]["loss"], b["loss"], rtol=2e-5, err_msg=f"step {t}")
    for term in terms:
      np.testing.assert_allclose(a["metrics"][term], b["terms"][term], rtol=2e-5, atol=2e-4,
                                 err_msg=f"{term} at step {t}")
    worst = max(worst, assert_step_parity(a, b, to_ours))
    kept.append((b["lr"], b["loss"]))
    del a, b
  print("largest ratio of our gradient error to PyTorch's:", worst)
  return kept
