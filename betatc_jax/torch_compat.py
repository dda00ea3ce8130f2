"""Load PyTorch weights into our models: AntixK PyTorch-VAE's ``BetaTCVAE``
into ``models.VAE(arch="seed_conv")``, and the official β-TCVAE code's MLP
``VAE`` (rtqichen/beta-tcvae, ``vae_quant.py``) into ``models.VAE(arch="mlp",
posterior_scale="log_sigma")``.

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


_OFFICIAL_MLP_LAYERS = ("encoder.fc1.", "encoder.fc2.", "encoder.fc3.", "decoder.net.")
# Defined by the official code but not part of the MLP model: an encoder layer
# its forward pass never calls, and the N(0, I) prior's constant buffer.
_OFFICIAL_UNUSED = ("encoder.conv_z.weight", "encoder.conv_z.bias", "prior_params")


def unexpected_keys(state_dict: Mapping[str, Any], arch: str = "seed_conv") -> list[str]:
  """The keys of ``state_dict`` that ``params_from_torch_state_dict`` does not
  read (with their ``model.`` prefix, if any), sorted."""
  if arch == "mlp":
    return sorted(k for k in state_dict if k not in _OFFICIAL_UNUSED and not (
        k.startswith(_OFFICIAL_MLP_LAYERS) and k.endswith((".weight", ".bias"))))
  return sorted(k for k in state_dict
                if not (k.removeprefix("model.").startswith(_SEED_LAYERS)
                        and k.endswith((".weight", ".bias"))))


def _official_mlp(sd: Mapping[str, Any]) -> dict[str, Any]:
  """The official MLP VAE's weights (``MLPEncoder`` fc1-fc3, ``MLPDecoder``
  net.0/2/4/6). Its fc3 interleaves (μ_d, log σ_d) per latent; our ``fc_out``
  has the μ's then the log σ's, so its rows are reordered: the same units,
  and (Adam being elementwise) the same training."""
  required = ("encoder.fc1.weight", "encoder.fc2.weight", "encoder.fc3.weight",
              *(f"decoder.net.{i}.weight" for i in (0, 2, 4, 6)))
  missing = [k for k in required if k not in sd]
  if missing:
    raise ValueError(f"Not an official beta-tcvae MLP VAE state dict: missing {missing}.")
  if "prior_params" in sd and np.any(_np(sd["prior_params"]) != 0):
    raise ValueError("The state dict's prior_params are not zero: only the N(0, I) prior "
                     "of the official code's shapes/faces runs is supported.")
  fc_out = _dense(sd, "encoder.fc3")
  order = np.concatenate([np.arange(0, fc_out["bias"].size, 2), np.arange(1, fc_out["bias"].size, 2)])
  fc_out = {"kernel": fc_out["kernel"][:, order], "bias": fc_out["bias"][order]}
  encoder = {"fc_0": _dense(sd, "encoder.fc1"), "fc_1": _dense(sd, "encoder.fc2"), "fc_out": fc_out}
  decoder = {name: _dense(sd, f"decoder.net.{i}")
             for name, i in (("fc_0", 0), ("fc_1", 2), ("fc_2", 4), ("fc_out", 6))}
  return {"encoder": encoder, "decoder": decoder}


def params_from_torch_state_dict(state_dict: Mapping[str, Any],
                                 arch: str = "seed_conv") -> dict[str, Any]:
  """Converts a PyTorch state dict to flax params.

  Args:
    state_dict: name -> tensor (torch tensors or numpy arrays).
    arch: ``"seed_conv"``: PyTorch-VAE's ``BetaTCVAE`` (any ``hidden_dims``,
      64×64 inputs), for ``VAE(arch="seed_conv", hidden_dims=...,
      image_shape=(64, 64, C))``. ``"mlp"``: the official β-TCVAE code's MLP
      ``VAE`` (its ``state_dict``, e.g. ``torch.load(checkpoint)["state_dict"]``),
      for ``VAE(arch="mlp", image_shape=(64, 64, 1), posterior_scale="log_sigma")``.

  Returns:
    ``{"encoder": ..., "decoder": ...}``, to use as
    ``model.apply({"params": params}, ...)``.

  Raises:
    ValueError: for another arch, or a state dict that is not of ``arch``.
  """
  if arch == "mlp":
    return _official_mlp(state_dict)
  if arch != "seed_conv":
    raise ValueError(f"params_from_torch_state_dict supports arch='seed_conv' (PyTorch-VAE) and "
                     f"'mlp' (the official beta-tcvae code), got {arch!r}.")
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
