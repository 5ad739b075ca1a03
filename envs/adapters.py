"""Adapters from foreign models to the EDM denoiser convention (design §2), and one loader.

* :class:`DiffusersDenoiser`: a diffusers ``UNet2DModel`` trained with a discrete DDPM / VP noise
  schedule (``epsilon``, ``v_prediction`` or ``sample`` prediction), after k-diffusion's
  ``DiscreteEpsDDPMDenoiser`` / ``DiscreteVDDPMDenoiser`` (``external.py``).
* :class:`EDMModuleDenoiser`: any ``torch.nn.Module`` already computing ``D(x, sigma, labels)``.
* :func:`load_denoiser`: ``"diffusers:/path/to/model_dir"`` or ``"edm-module:/path/to/module.pt"``.

VP ↔ EDM (Karras et al. 2022, Table 1, "VP"): a DDPM state ``x_t = sqrt(ā_t) x0 + sqrt(1 - ā_t) ε``
is the EDM state ``x = x0 + σ ε`` scaled by ``sqrt(ā_t) = 1 / sqrt(1 + σ²)``, with
``σ(t) = sqrt((1 - ā_t) / ā_t)``. Hence the network input is ``x_t = x / sqrt(1 + σ²)`` and

* ε-prediction: ``x0_hat = x - σ ε_hat``;
* v-prediction (``v = sqrt(ā) ε - sqrt(1 - ā) x0``):
  ``x0_hat = x / (1 + σ²) - σ v_hat / sqrt(1 + σ²)``;
* sample prediction: ``x0_hat`` is the network output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffgym.envs.denoisers import Denoiser

__all__ = [
    "DiffusersDenoiser",
    "EDMModuleDenoiser",
    "load_denoiser",
    "sigmas_from_alphas_cumprod",
    "SPEC_PREFIXES",
    "PREDICTION_TYPES",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
DIFFUSERS_INSTALL_HINT = "pip install 'diffgym[diffusers]'"
SIDECAR_NAME = "diffgym.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``(T,)`` noise levels ``σ_t = sqrt((1 - ā_t) / ā_t)`` (float64) of a discrete VP schedule.

    Raises:
        ValueError: ``alphas_cumprod`` not 1-D, not in ``(0, 1)`` (e.g. a zero-terminal-SNR
            schedule, whose last ``σ`` is infinite) or not strictly decreasing.
    """
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"alphas_cumprod must have shape (T,) with T >= 2, got {tuple(a.shape)}")
    if not bool(((a > 0) & (a < 1)).all()):
        raise ValueError(
            "alphas_cumprod must lie strictly in (0, 1); got range "
            f"[{float(a.min())}, {float(a.max())}] (zero-terminal-SNR schedules are not supported)"
        )
    if not bool((a[1:] < a[:-1]).all()):
        raise ValueError("alphas_cumprod must be strictly decreasing in t")
    return torch.sqrt((1.0 - a) / a)


def _as_data_shape(sample_size: Any, channels: int) -> tuple[int, int, int]:
    if isinstance(sample_size, int):
        return (int(channels), sample_size, sample_size)
    height, width = sample_size
    return (int(channels), int(height), int(width))


def _model_output(out: Any) -> torch.Tensor:
    """The tensor of a diffusers model's output (``UNet2DOutput``, tuple or tensor)."""
    if isinstance(out, tuple):
        return out[0]
    return getattr(out, "sample", out)


class DiffusersDenoiser(Denoiser):
    """A discrete-time DDPM / VP ``UNet2DModel`` seen as an EDM denoiser ``D(x, σ, labels)``.

    σ ↔ t: the schedule's ``σ_t`` (``t = 0..T-1``) are increasing; a continuous ``t`` for any σ
    is found by linear interpolation of ``log σ_t`` between neighbouring integer timesteps
    (k-diffusion's ``DiscreteSchedule.sigma_to_t``). σ outside ``[σ_0, σ_{T-1}]`` is clamped *for
    the timestep only*: the input scaling and the output conversion always use the true σ.
    ``sigma_min``/``sigma_max`` advertise the trained range ``σ_0``/``σ_{T-1}``.

    Class conditioning (``num_class_embeds`` in the UNet config, ``class_embed_type`` unset): labels
    are passed as ``class_labels``. diffusers has no convention for a null class; by default none
    is assumed (``num_classes = num_class_embeds``, ``label_dropout_supported = False``, and
    ``class_labels=None`` raises). With ``null_class=True`` the *last* class embedding (index
    ``num_class_embeds - 1``) is taken to be the unconditional class, trained with label dropout:
    ``num_classes = num_class_embeds - 1`` and ``class_labels=None`` uses that index (so
    classifier-free guidance is available).

    A model with ``out_channels = 2 * in_channels`` (learned variance, iDDPM/ADM style) is used
    through its first ``in_channels`` output channels. Data are assumed to be in the model's
    training range (``[-1, 1]`` for images); ``center_input_sample`` is the model's own business.

    Args:
        unet: the network, called as
            ``unet(x_t, t (B,) float, class_labels=labels | None, return_dict=False)``.
        alphas_cumprod: ``(T,)`` cumulative products ``ā_t`` of the training schedule.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.
        data_shape: shape of one sample; default ``(in_channels, sample_size, sample_size)`` from
            ``unet.config``.
        num_class_embeds: number of class embeddings; default from ``unet.config`` (``None`` or 0 =
            unconditional).
        null_class: the last class embedding is the unconditional (null) class.
        sigma_data: data standard deviation advertised to featurisation (EDM's 0.5 for images in
            ``[-1, 1]``).

    Raises:
        ValueError: bad ``alphas_cumprod``, unknown ``prediction_type``, unsupported
            ``class_embed_type``, ``null_class`` on an unconditional model, non-positive
            ``sigma_data``, missing ``data_shape``.
    """

    def __init__(
        self,
        unet: nn.Module,
        *,
        alphas_cumprod: torch.Tensor | Sequence[float],
        prediction_type: str = "epsilon",
        data_shape: Sequence[int] | None = None,
        num_class_embeds: int | None = None,
        null_class: bool = False,
        sigma_data: float = 0.5,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            allowed = ", ".join(PREDICTION_TYPES)
            raise ValueError(f"unknown prediction_type {prediction_type!r}; allowed: {allowed}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        config = getattr(unet, "config", None)
        if data_shape is None:
            if config is None:
                raise ValueError("data_shape is required when the model has no `config`")
            data_shape = _as_data_shape(config.sample_size, config.in_channels)
        if num_class_embeds is None and config is not None:
            num_class_embeds = getattr(config, "num_class_embeds", None)
            class_embed_type = getattr(config, "class_embed_type", None)
            if class_embed_type is not None:
                raise ValueError(
                    f"unsupported class_embed_type {class_embed_type!r}; only integer class "
                    "labels through num_class_embeds (class_embed_type=None) are supported"
                )
        num_class_embeds = int(num_class_embeds or 0)
        if null_class and num_class_embeds < 2:
            raise ValueError(
                f"null_class=True needs a class-conditional model with >= 2 class embeddings, "
                f"got num_class_embeds={num_class_embeds}"
            )
        self.unet = unet
        self.prediction_type = prediction_type
        self.data_shape = tuple(int(d) for d in data_shape)
        self.null_class = bool(null_class)
        self.num_classes = num_class_embeds - 1 if null_class else num_class_embeds
        self.label_dropout_supported = self.null_class
        self.sigma_data = float(sigma_data)
        sigmas = sigmas_from_alphas_cumprod(torch.as_tensor(alphas_cumprod))
        self.register_buffer("log_sigmas", sigmas.log(), persistent=False)  # (T,) float64
        self.sigma_min = float(sigmas[0])
        self.sigma_max = float(sigmas[-1])

    @property
    def num_train_timesteps(self) -> int:
        return int(self.log_sigmas.shape[0])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timesteps ``(B,)`` (float64) for noise levels ``sigma (B,)``: linear
        interpolation of ``log σ_t``; σ outside the trained range is clamped to it."""
        log_sigmas = self.log_sigmas
        log_sigma = torch.log(sigma.to(log_sigmas.device, torch.float64))
        log_sigma = log_sigma.clamp(log_sigmas[0], log_sigmas[-1])
        high = torch.searchsorted(log_sigmas, log_sigma).clamp(1, self.num_train_timesteps - 1)
        low = high - 1
        frac = (log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
        return low.to(torch.float64) + frac.clamp(0.0, 1.0)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise levels ``(B,)`` (float64) for continuous timesteps ``t (B,)`` in ``[0, T-1]``."""
        t = t.to(self.log_sigmas.device, torch.float64).clamp(0, self.num_train_timesteps - 1)
        low = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        frac = t - low
        log_sigma = (1 - frac) * self.log_sigmas[low] + frac * self.log_sigmas[low + 1]
        return log_sigma.exp()

    def _model_dtype(self) -> torch.dtype:
        param = next(self.unet.parameters(), None)
        return torch.float32 if param is None else param.dtype

    def _unet_labels(
        self, class_labels: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor | None:
        if class_labels is not None:
            return class_labels
        if self.num_classes == 0:
            return None
        if not self.null_class:
            raise ValueError(
                "this class-conditional diffusers model has no null class, so class_labels=None is "
                "undefined; pass class_labels, or null_class=True if the last class embedding is "
                "the unconditional one"
            )
        return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, *data_shape), sigma (B,), class_labels (B,) | None -> x0_hat (B, *data_shape)``.

        The network runs in its own dtype, the scalings in at least float32; returned in ``x``'s
        dtype.

        Raises:
            ValueError: wrong shapes, labels out of range, labels on an unconditional model,
                ``None`` labels on a conditional model without a null class.
        """
        self.check_input(x, sigma)
        self.check_labels(class_labels, x.shape[0])
        dtype = self._model_dtype()
        # Scalings and timesteps in at least float32 (σ² and t ~ 999 are too coarse in fp16)
        calc = torch.promote_types(dtype, torch.float32)
        labels = self._unet_labels(class_labels, x.shape[0], x.device)
        s = sigma.to(calc).reshape(-1, *([1] * len(self.data_shape)))  # (B, 1, ..., 1)
        x_c = x.to(calc)
        # VP input scaling: x_t = sqrt(ā) x0 + sqrt(1 - ā) ε = x / sqrt(1 + σ²)
        scale = torch.rsqrt(1.0 + s**2)
        t = self.sigma_to_t(sigma).to(x.device, calc)
        x_t = (x_c * scale).to(dtype)
        out = _model_output(self.unet(x_t, t, class_labels=labels, return_dict=False))
        out = out[:, : self.data_shape[0]].to(calc)  # drop learned-variance channels
        # Convert the prediction to x0_hat
        if self.prediction_type == "epsilon":
            x0 = x_c - s * out
        elif self.prediction_type == "v_prediction":
            x0 = x_c * scale**2 - s * scale * out
        else:
            x0 = out
        return x0.to(x.dtype)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        **options: Any,
    ) -> DiffusersDenoiser:
        """Load a ``UNet2DModel`` and its DDPM scheduler config from a local directory.

        Accepted layouts: ``path/{config.json, <weights>, scheduler_config.json}`` (model and
        scheduler saved side by side), or a pipeline folder ``path/unet/`` + ``path/scheduler/``,
        or ``path`` = ``pipeline/unet`` with ``pipeline/scheduler/`` next to it. The scheduler
        config (any diffusers scheduler with DDPM betas: ``num_train_timesteps``, ``beta_start``,
        ``beta_end``, ``beta_schedule``, ``trained_betas``, ``prediction_type``) gives
        ``alphas_cumprod`` and ``prediction_type``. An optional ``diffgym.json`` in the model folder
        may set ``null_class``, ``sigma_data`` and ``prediction_type``; ``options`` (the
        constructor's keywords) override both. Never downloads (``local_files_only=True``).

        Raises:
            FileNotFoundError: ``path``, the model config or the scheduler config is missing.
            ImportError: diffusers is not installed.
        """
        try:
            from diffusers import DDPMScheduler, UNet2DModel
        except ImportError as err:
            raise ImportError(
                f"the diffusers adapter needs diffusers; install it with: {DIFFUSERS_INSTALL_HINT}"
            ) from err
        root = Path(path).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"diffusers model directory not found: {root}")
        model_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no UNet2DModel config.json in {root} (nor in {root / 'unet'}); save the model "
                "with UNet2DModel.save_pretrained(dir)"
            )
        candidates = [
            model_dir / SCHEDULER_CONFIG_NAME,
            root / "scheduler" / SCHEDULER_CONFIG_NAME,
            model_dir.parent / "scheduler" / SCHEDULER_CONFIG_NAME,
        ]
        sched_file = next((c for c in candidates if c.is_file()), None)
        if sched_file is None:
            raise FileNotFoundError(
                "no DDPM scheduler config found; looked for "
                + ", ".join(str(c) for c in candidates)
                + " (save one with DDPMScheduler(...).save_pretrained(dir))"
            )
        scheduler = DDPMScheduler.from_config(json.loads(sched_file.read_text()))
        sidecar = model_dir / SIDECAR_NAME
        settings: dict[str, Any] = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        settings.setdefault("prediction_type", scheduler.config.prediction_type)
        settings.update(options)
        unet = UNet2DModel.from_pretrained(str(model_dir), local_files_only=True)
        unet.eval().requires_grad_(False)
        return cls(unet, alphas_cumprod=scheduler.alphas_cumprod, **settings).to(device)


class EDMModuleDenoiser(Denoiser):
    """Any module already in the EDM convention, ``module(x, sigma, class_labels) -> x0_hat``.

    Attributes (``sigma_min``, ``sigma_max``, ``sigma_data``, ``data_shape``, ``num_classes``,
    ``label_dropout_supported``) come from the keyword arguments, else from the module, else the
    EDM defaults (0.002, 80, 0.5, -, 0, False); ``data_shape`` has no default.

    Raises:
        ValueError: no ``data_shape``; ``sigma_min >= sigma_max``; non-positive ``sigma_data``.
    """

    _ATTRS = (
        "sigma_min",
        "sigma_max",
        "sigma_data",
        "data_shape",
        "num_classes",
        "label_dropout_supported",
    )

    def __init__(self, module: nn.Module, **attrs: Any) -> None:
        super().__init__()
        unknown = sorted(set(attrs) - set(self._ATTRS))
        if unknown:
            raise TypeError(f"unknown attribute(s) {unknown}; allowed: {', '.join(self._ATTRS)}")
        values = {k: attrs.get(k, getattr(module, k, getattr(Denoiser, k))) for k in self._ATTRS}
        if not values["data_shape"]:
            raise ValueError(
                "data_shape is required: give it as a keyword or set module.data_shape"
            )
        if not 0 < float(values["sigma_min"]) < float(values["sigma_max"]):
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got {values['sigma_min']}, {values['sigma_max']}"
            )
        if not float(values["sigma_data"]) > 0:
            raise ValueError(f"sigma_data must be > 0, got {values['sigma_data']}")
        self.module = module
        self.sigma_min = float(values["sigma_min"])
        self.sigma_max = float(values["sigma_max"])
        self.sigma_data = float(values["sigma_data"])
        self.data_shape = tuple(int(d) for d in values["data_shape"])
        self.num_classes = int(values["num_classes"])
        self.label_dropout_supported = bool(values["label_dropout_supported"])

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, *data_shape), sigma (B,), class_labels (B,) | None -> (B, *data_shape)``.

        Raises:
            ValueError: wrong input shapes or labels, or a module output of the wrong shape.
        """
        self.check_input(x, sigma)
        self.check_labels(class_labels, x.shape[0])
        out = self.module(x, sigma, class_labels)
        if out.shape != x.shape:
            raise ValueError(
                f"the wrapped module returned shape {tuple(out.shape)}, expected {tuple(x.shape)}"
            )
        return out


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------


def _load_diffusers(path: Path, device: torch.device | str) -> Denoiser:
    return DiffusersDenoiser.from_pretrained(path, device=device)


def _load_edm_module(path: Path, device: torch.device | str) -> Denoiser:
    # weights_only=False unpickles arbitrary code: only load files you trust.
    try:
        module = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means not a module file
        raise ValueError(
            f"{path} is not a module saved with torch.save(module, path) ({type(err).__name__}: "
            f"{err})"
        ) from err
    if not isinstance(module, nn.Module):
        raise TypeError(f"{path} holds a {type(module).__name__}, expected a torch.nn.Module")
    module.eval().requires_grad_(False)
    return EDMModuleDenoiser(module).to(device)


_LOADERS: dict[str, Callable[[Path, torch.device | str], Denoiser]] = {
    "diffusers": _load_diffusers,
    "edm-module": _load_edm_module,
}
SPEC_PREFIXES = tuple(f"{name}:" for name in _LOADERS)


def load_denoiser(spec: str, *, device: torch.device | str = "cpu") -> Denoiser:
    """Load a denoiser in the EDM convention from ``spec``, in eval mode without gradients.

    * ``"diffusers:/path/to/model_dir"``: a local ``UNet2DModel`` with its DDPM scheduler config
      (see :meth:`DiffusersDenoiser.from_pretrained`); never downloads.
    * ``"edm-module:/path/to/module.pt"``: a whole module saved with ``torch.save(module, path)``
      whose ``forward(x, sigma, class_labels)`` returns ``x0_hat`` and which carries the
      convention's attributes (at least ``data_shape``). Loaded with ``weights_only=False``, i.e.
      by unpickling: **trusted files only**, the module's class must be importable.

    Raises:
        ValueError: a spec without one of the allowed prefixes (listed in the message).
        FileNotFoundError: the path (named in the message) does not exist.
        ImportError: ``diffusers:`` without diffusers installed.
        TypeError: an ``edm-module`` file that does not hold an ``nn.Module``.
    """
    prefix, sep, rest = str(spec).partition(":")
    if not sep or prefix not in _LOADERS or not rest:
        raise ValueError(
            f"bad denoiser spec {spec!r}; expected one of {', '.join(SPEC_PREFIXES)} "
            "followed by a local path"
        )
    path = Path(rest).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{prefix} path not found: {path}")
    return _LOADERS[prefix](path, device)
