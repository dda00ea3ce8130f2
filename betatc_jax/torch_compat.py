"""Load PyTorch-VAE (seed) BetaTCVAE weights into ``models.VAE(arch="seed_conv")``.

PyTorch is NCHW and stores conv kernels [out, in, kh, kw], transposed-conv
kernels [in, out, kh, kw] and linear weights [out, in]; our models are NHWC
with kernels [kh, kw, in, out], transposed kernels [kh, kw, out, in] (flax
``transpose_kernel=True``) and dense kernels [in, out]. The two linear layers
that meet a flatten/reshape (``fc`` and ``decoder_input``) are also permuted
from the NCHW to the NHWC element order. torch itself is not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _np(t: Any) -> np.ndarray:
  if hasattr(t, "detach"):
    t = t.detach().cpu().numpy()
  return np.asarray(t, np.float32)


def _conv(sd: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
  return {"kernel": _np(sd[f"{name}.weight"]).transpose(2, 3, 1, 0),
          "bias": _np(sd[f"{name}.bias"])}


_conv_transpose = _conv  # [in, out, kh, kw] -> [kh, kw, out, in]: the same axes.


def _dense(sd: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
  return {"kernel": _np(sd[f"{name}.weight"]).T, "bias": _np(sd[f"{name}.bias"])}


_SEED_LAYERS = ("encoder.", "fc.", "fc_mu.", "fc_var.", "decoder_input.", "decoder.",
                "final_layer.0.", "final_layer.2.")


def unexpected_keys(state_dict: Mapping[str, Any]) -> list[str]:
  """The keys of ``state_dict`` that ``params_from_torch_state_dict`` does not
  read (with their ``model.`` prefix, if any), sorted."""
  return sorted(k for k in state_dict
                if not (k.removeprefix("model.").startswith(_SEED_LAYERS)
                        and k.endswith((".weight", ".bias"))))


def params_from_torch_state_dict(state_dict: Mapping[str, Any],
                                 arch: str = "seed_conv") -> dict[str, Any]:
  """Converts a seed ``BetaTCVAE.state_dict()`` to flax params.

  Args:
    state_dict: name -> tensor (torch tensors or numpy arrays), as saved by
      PyTorch-VAE's ``BetaTCVAE`` (any ``hidden_dims``, 64×64 inputs).
    arch: only ``"seed_conv"`` is supported.

  Returns:
    ``{"encoder": ..., "decoder": ...}``, to use as
    ``model.apply({"params": params}, ...)`` with
    ``VAE(arch="seed_conv", hidden_dims=..., image_shape=(64, 64, C))``.

  Raises:
    ValueError: for another arch, or a state dict that is not the seed's.
  """
  if arch != "seed_conv":
    raise ValueError(f"params_from_torch_state_dict supports arch='seed_conv' only, got {arch!r}.")
  sd = {k.removeprefix("model."): v for k, v in state_dict.items()}
  required = ("encoder.0.0.weight", "fc.weight", "fc_mu.weight", "fc_var.weight",
              "decoder_input.weight", "final_layer.0.weight", "final_layer.2.weight")
  missing = [k for k in required if k not in sd]
  if missing:
    raise ValueError(f"Not a seed BetaTCVAE state dict: missing {missing}.")
  num_enc = len({k.split(".")[1] for k in sd if k.startswith("encoder.")})
  num_dec = len({k.split(".")[1] for k in sd if k.startswith("decoder.")})

  encoder = {f"conv_{i}": _conv(sd, f"encoder.{i}.0") for i in range(num_enc)}
  fc = _dense(sd, "fc")
  channels = _np(sd[f"encoder.{num_enc - 1}.0.weight"]).shape[0]
  side = int(round((fc["kernel"].shape[0] / channels) ** 0.5))
  fc["kernel"] = (fc["kernel"].reshape(channels, side, side, -1)
                  .transpose(1, 2, 0, 3).reshape(channels * side * side, -1))
  encoder.update(fc=fc, fc_mu=_dense(sd, "fc_mu"), fc_var=_dense(sd, "fc_var"))

  dec_in = _dense(sd, "decoder_input")
  latent_dim = dec_in["kernel"].shape[0]
  dec_channels = dec_in["kernel"].shape[1] // 16
  dec_in["kernel"] = (dec_in["kernel"].reshape(latent_dim, dec_channels, 4, 4)
                      .transpose(0, 2, 3, 1).reshape(latent_dim, -1))
  dec_in["bias"] = dec_in["bias"].reshape(dec_channels, 4, 4).transpose(1, 2, 0).reshape(-1)
  decoder = {"decoder_input": dec_in}
  decoder.update({f"deconv_{i}": _conv_transpose(sd, f"decoder.{i}.0") for i in range(num_dec)})
  decoder["final_deconv"] = _conv_transpose(sd, "final_layer.0")
  decoder["final_conv"] = _conv(sd, "final_layer.2")
  return {"encoder": encoder, "decoder": decoder}
