"""Neural denoisers: EDM preconditioning and the small U-Net of the ``digits`` task.

:class:`EDMPrecond` wraps a raw network ``F`` into a denoiser of the project convention (design §2)
with the preconditioning of Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models" (EDM, arXiv 2206.00364, Table 1 and Appendix B.6)::

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), labels)

:class:`DigitsNet` is a small class-conditional U-Net for ``(1, 8, 8)`` images, in the spirit of
EDM's ``SongUNet`` (residual blocks with adaptive scale/shift from a noise + class embedding), cut
down to 134k parameters (0.55 MB of weights, shipped as package data; about 2M multiply-adds per
image, i.e. roughly 0.1 s per forward pass of 1024 images on one CPU thread).
:func:`build_digits_denoiser` rebuilds the pair from a JSON-able config.

:class:`MixtureMLP` is the small residual MLP of the mixture tasks (``gmm2d-net``, ``cmix``);
:func:`build_mixture_denoiser` rebuilds it, preconditioned, from a config of the same form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffgym.envs.denoisers import Denoiser, c_in, c_noise

__all__ = [
    "EDMPrecond",
    "DigitsNet",
    "FourierEmbedding",
    "MixtureMLP",
    "build_digits_denoiser",
    "build_mixture_denoiser",
    "DIGITS_NET_DEFAULTS",
    "MIXTURE_NET_DEFAULTS",
]

#: Default :class:`DigitsNet` keyword arguments of the ``digits`` task (134k parameters, about 2M
#: multiply-adds per image).
DIGITS_NET_DEFAULTS: dict[str, Any] = {
    "img_resolution": 8,
    "in_channels": 1,
    "num_classes": 10,
    "model_channels": 16,
    "channel_mult": [1, 2],
    "num_blocks": 1,
    "emb_channels": 128,
    "num_freqs": 16,
    "dropout": 0.0,
}


class EDMPrecond(Denoiser):
    """EDM preconditioning of a raw network ``F`` (Karras et al. 2022, Table 1, "Ours").

    ``D(x, sigma, labels) = c_skip x + c_out F(c_in x, c_noise, labels)`` with
    ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = ln(sigma) / 4`` and ``sd = sigma_data``.

    Args:
        model: the raw network, called as ``model(x_in (B, *data_shape), c_noise (B,), labels)``
            with ``labels`` ``(B,)`` int64 or ``None`` (the unconditional, "null label" branch),
            returning ``(B, *data_shape)``.
        sigma_data: standard deviation of the training data.
        data_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        num_classes: number of class labels (0 = unconditional).
        sigma_min, sigma_max: the noise range the denoiser was trained for.
        label_dropout_supported: whether the model was trained with label dropout, so that
            ``class_labels=None`` is meaningful (classifier-free guidance).

    Raises:
        ValueError: non-positive ``sigma_data``, ``sigma_min >= sigma_max``, negative
            ``num_classes``.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        sigma_data: float,
        data_shape: Sequence[int],
        num_classes: int,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        label_dropout_supported: bool,
    ) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.model = model
        self.sigma_data = float(sigma_data)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.num_classes = int(num_classes)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.label_dropout_supported = bool(label_dropout_supported)

    def _model_dtype(self) -> torch.dtype:
        param = next(self.model.parameters(), None)
        return torch.float32 if param is None else param.dtype

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, *data_shape), sigma (B,), class_labels (B,) | None -> (B, *data_shape)``.

        Computed in the model's dtype; returned in ``x``'s dtype.

        Raises:
            ValueError: wrong shapes, labels out of ``[0, num_classes)`` or labels given to an
                unconditional model.
        """
        self.check_input(x, sigma)
        self.check_labels(class_labels, x.shape[0])
        return self.precondition(x, sigma, class_labels)

    def precondition(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`forward` without input checks, for training.

        ``class_labels`` may contain the null index ``num_classes`` per sample (label dropout);
        the wrapped model must accept it (as :class:`DigitsNet` does).
        """
        dtype = self._model_dtype()
        x_m = x.to(dtype)
        sd = self.sigma_data
        s = sigma.to(dtype).reshape(-1, *([1] * len(self.data_shape)))  # (B, 1, ..., 1)
        # EDM preconditioning (Table 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / torch.sqrt(s**2 + sd**2)
        F_x = self.model(c_in(s, sd) * x_m, c_noise(sigma.to(dtype)), class_labels)
        D_x = c_skip * x_m + c_out * F_x.to(dtype)
        return D_x.to(x.dtype)


class FourierEmbedding(nn.Module):
    """Sinusoidal features of a scalar at fixed, log-spaced frequencies: ``(B,) -> (B, 2 n)``,
    ``[cos(f_k t), sin(f_k t)]`` for ``n`` frequencies from ``min_freq`` to ``max_freq`` (radians
    per unit). The one embedding of noise levels in diffgym: the EDM networks embed ``c_noise``
    with it, and so do the policies' feature extractors.

    Computed as one ``sin(f t + phase)`` (``cos a = sin(a + pi/2)``); the frequencies are a
    non-persistent buffer, so the embedding needs no seed and adds nothing to checkpoints.

    Raises:
        ValueError: ``num_freqs < 1``.
    """

    def __init__(self, num_freqs: int, *, min_freq: float = 0.5, max_freq: float = 32.0) -> None:
        super().__init__()
        if num_freqs < 1:
            raise ValueError(f"num_freqs must be >= 1, got {num_freqs}")
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), num_freqs))
        phase = torch.cat([torch.full((num_freqs,), math.pi / 2), torch.zeros(num_freqs)])
        self.register_buffer("freqs", torch.cat([freqs, freqs]), persistent=False)
        self.register_buffer("phase", phase, persistent=False)
        self.out_dim = 2 * num_freqs

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.phase, t.to(self.freqs.dtype)[:, None], self.freqs).sin()


def _num_groups(channels: int) -> int:
    """GroupNorm groups: up to 8, with at least 4 channels per group (EDM uses 32 / 4)."""
    return max(1, min(8, channels // 4))


class ResBlock(nn.Module):
    """Residual block with adaptive scale/shift from the embedding (EDM ``UNetBlock``, simplified).

    ``x (B, in_c, H, W), emb (B, emb_c) -> (B, out_c, H, W)``.
    """

    def __init__(self, in_c: int, out_c: int, emb_c: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(_num_groups(in_c), in_c)
        self.conv0 = nn.Conv2d(in_c, out_c, 3, padding=1)
        self.affine = nn.Linear(emb_c, 2 * out_c)
        self.norm1 = nn.GroupNorm(_num_groups(out_c), out_c)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_c, out_c, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(in_c, out_c, 1) if in_c != out_c else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        return (h + self.skip(x)) * (0.5**0.5)


class DigitsNet(nn.Module):
    """Small class-conditional U-Net ``F(x_in, c_noise, labels)`` for square images.

    The noise level enters through :class:`FourierEmbedding` of ``c_noise`` followed by a two-layer
    MLP; the class through an embedding table with ``num_classes + 1`` rows, the last row being
    the "null" label used for ``labels=None`` (label dropout, classifier-free guidance). Their sum
    modulates every residual block (EDM ``SongUNet`` style). One resolution per ``channel_mult``
    entry: ``num_blocks`` blocks, average-pool down; a middle block; back up (nearest), each
    resolution concatenating its encoder output before its ``num_blocks`` decoder blocks.

    Args:
        img_resolution: image side (8 for digits); must be divisible by
            ``2 ** (len(channel_mult) - 1)``.
        in_channels: image channels (output has the same).
        num_classes: number of labels (0 = unconditional, only the null row exists).
        model_channels: channels at the first resolution.
        channel_mult: per-resolution channel multipliers.
        num_blocks: residual blocks per resolution, in the encoder and in the decoder.
        emb_channels: width of the noise/class embedding.
        num_freqs: Fourier frequencies of the noise embedding.
        dropout: dropout inside residual blocks.

    Shapes: ``x (B, C, R, R), c_noise (B,), labels (B,) | None -> (B, C, R, R)``.
    """

    def __init__(
        self,
        *,
        img_resolution: int,
        in_channels: int,
        num_classes: int,
        model_channels: int = 16,
        channel_mult: Sequence[int] = (1, 2),
        num_blocks: int = 1,
        emb_channels: int = 128,
        num_freqs: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channel_mult) == 0 or any(int(m) < 1 for m in channel_mult):
            raise ValueError(
                f"channel_mult must be a non-empty list of ints >= 1, got {channel_mult}"
            )
        if img_resolution % (2 ** (len(channel_mult) - 1)) != 0:
            raise ValueError(
                f"img_resolution={img_resolution} must be divisible by "
                f"2**(len(channel_mult)-1)={2 ** (len(channel_mult) - 1)}"
            )
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_classes = int(num_classes)
        self.img_resolution = int(img_resolution)
        self.in_channels = int(in_channels)

        # Embedding: Fourier(c_noise) -> MLP, plus class table with a null row
        self.noise_embed = FourierEmbedding(num_freqs)
        self.noise_mlp = nn.Sequential(
            nn.Linear(2 * num_freqs, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.label_embed = nn.Embedding(num_classes + 1, emb_channels)

        # Encoder: per resolution num_blocks residual blocks, then average-pool down
        chans = [model_channels * int(m) for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.enc = nn.ModuleList()
        c = chans[0]
        for c_level in chans:
            blocks = nn.ModuleList()
            for _ in range(num_blocks):
                blocks.append(ResBlock(c, c_level, emb_channels, dropout=dropout))
                c = c_level
            self.enc.append(blocks)
        # Middle
        self.mid = ResBlock(c, c, emb_channels, dropout=dropout)
        # Decoder: per resolution (bottom up) concatenate the encoder output, num_blocks blocks
        self.dec = nn.ModuleList()
        for c_level in reversed(chans):
            blocks = nn.ModuleList()
            for i in range(num_blocks):
                c_skip = c_level if i == 0 else 0
                blocks.append(ResBlock(c + c_skip, c_level, emb_channels, dropout=dropout))
                c = c_level
            self.dec.append(blocks)
        self.norm_out = nn.GroupNorm(_num_groups(c), c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, C, R, R), c_noise (B,), class_labels (B,) int64 | None -> (B, C, R, R)``.

        ``class_labels=None``, or the index ``num_classes`` in individual rows, selects the null
        label (unconditional branch).
        """
        if class_labels is None:
            class_labels = torch.full(
                (x.shape[0],), self.num_classes, dtype=torch.long, device=x.device
            )
        emb = self.noise_mlp(self.noise_embed(c_noise).to(x.dtype))
        emb = F.silu(emb + self.label_embed(class_labels))

        h = self.conv_in(x)
        skips = []
        for level, blocks in enumerate(self.enc):
            if level > 0:
                h = F.avg_pool2d(h, 2)
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for level, blocks in enumerate(self.dec):
            if level > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


_BUILD_KEYS = {"network", "sigma_data", "sigma_min", "sigma_max", "label_dropout_supported"}


def _network_config(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The network keyword arguments of a build config (``defaults`` for missing ones).

    Raises:
        ValueError: unknown keys (top level or network), missing ``sigma_data``.
    """
    unknown = set(config) - _BUILD_KEYS
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(_BUILD_KEYS)}")
    if "sigma_data" not in config:
        raise ValueError("config must contain 'sigma_data'")
    net_cfg = dict(config.get("network", {}))
    unknown = set(net_cfg) - set(defaults)
    if unknown:
        raise ValueError(
            f"unknown network config keys {sorted(unknown)}; allowed: {sorted(defaults)}"
        )
    return {**defaults, **net_cfg}


def build_digits_denoiser(config: Mapping[str, Any]) -> EDMPrecond:
    """Build an untrained :class:`EDMPrecond` around a :class:`DigitsNet` from a JSON-able config.

    Args:
        config: ``{"network": {DigitsNet keyword arguments}, "sigma_data": float,
            "sigma_min": float, "sigma_max": float, "label_dropout_supported": bool}``;
            ``sigma_min``/``sigma_max`` default to EDM's 0.002/80, ``label_dropout_supported`` to
            ``True``, missing network keys to :data:`DIGITS_NET_DEFAULTS`.

    Raises:
        ValueError: unknown keys (top level or network), missing ``sigma_data``.
    """
    net_cfg = _network_config(config, DIGITS_NET_DEFAULTS)
    model = DigitsNet(**net_cfg)
    res, ch = int(net_cfg["img_resolution"]), int(net_cfg["in_channels"])
    return EDMPrecond(
        model=model,
        sigma_data=float(config["sigma_data"]),
        data_shape=(ch, res, res),
        num_classes=int(net_cfg["num_classes"]),
        sigma_min=float(config.get("sigma_min", 0.002)),
        sigma_max=float(config.get("sigma_max", 80.0)),
        label_dropout_supported=bool(config.get("label_dropout_supported", True)),
    )


#: Default :class:`MixtureMLP` keyword arguments (the mixture tasks override ``dim``,
#: ``num_classes`` and the width).
MIXTURE_NET_DEFAULTS: dict[str, Any] = {
    "dim": 2,
    "num_classes": 0,
    "hidden": 128,
    "num_blocks": 3,
    "emb_channels": 64,
    "num_freqs": 16,
}


class MixtureBlock(nn.Module):
    """Residual MLP block with adaptive scale/shift from the embedding (the vector analogue of
    :class:`ResBlock`): ``h (B, H), emb (B, E) -> (B, H)``."""

    def __init__(self, hidden: int, emb_c: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.affine = nn.Linear(emb_c, 2 * hidden)
        self.linear0 = nn.Linear(hidden, hidden)
        self.linear1 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.linear1.weight)
        nn.init.zeros_(self.linear1.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.affine(emb).chunk(2, dim=1)
        a = F.silu(torch.addcmul(shift, self.norm(h), scale + 1))
        return h + self.linear1(F.silu(self.linear0(a)))


class MixtureMLP(nn.Module):
    """Small (class-conditional) MLP ``F(x_in, c_noise, labels)`` for vector data.

    The noise level enters through :class:`FourierEmbedding` of ``c_noise`` and a two-layer MLP,
    the class through an embedding table with ``num_classes + 1`` rows (the last is the null
    label used for ``labels=None``: label dropout, classifier-free guidance); their sum modulates
    every :class:`MixtureBlock`.

    Args:
        dim: data dimension.
        num_classes: number of labels (0 = unconditional; only the null row exists).
        hidden: width of the residual stream.
        num_blocks: residual blocks.
        emb_channels: width of the noise/class embedding.
        num_freqs: Fourier frequencies of the noise embedding.

    Shapes: ``x (B, dim), c_noise (B,), labels (B,) | None -> (B, dim)``.

    Raises:
        ValueError: ``dim``, ``hidden``, ``num_blocks``, ``emb_channels`` or ``num_freqs`` < 1;
            ``num_classes < 0``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_classes: int = 0,
        hidden: int = 128,
        num_blocks: int = 3,
        emb_channels: int = 64,
        num_freqs: int = 16,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("hidden", hidden),
            ("num_blocks", num_blocks),
            ("emb_channels", emb_channels),
            ("num_freqs", num_freqs),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.noise_embed = FourierEmbedding(num_freqs)
        self.noise_mlp = nn.Sequential(
            nn.Linear(2 * num_freqs, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.label_embed = nn.Embedding(num_classes + 1, emb_channels)
        self.linear_in = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(MixtureBlock(hidden, emb_channels) for _ in range(num_blocks))
        self.norm_out = nn.LayerNorm(hidden)
        self.linear_out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.linear_out.weight)
        nn.init.zeros_(self.linear_out.bias)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, dim), c_noise (B,), class_labels (B,) int64 | None -> (B, dim)``; ``None`` or
        the index ``num_classes`` selects the null label."""
        if class_labels is None:
            class_labels = torch.full(
                (x.shape[0],), self.num_classes, dtype=torch.long, device=x.device
            )
        emb = self.noise_mlp(self.noise_embed(c_noise).to(x.dtype))
        emb = F.silu(emb + self.label_embed(class_labels))
        h = self.linear_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.linear_out(F.silu(self.norm_out(h)))


def build_mixture_denoiser(config: Mapping[str, Any]) -> EDMPrecond:
    """Build an untrained :class:`EDMPrecond` around a :class:`MixtureMLP` from a JSON-able
    config (the same keys as :func:`build_digits_denoiser`, ``network`` holding
    :class:`MixtureMLP` keyword arguments; missing ones from :data:`MIXTURE_NET_DEFAULTS`).

    Raises:
        ValueError: unknown keys (top level or network), missing ``sigma_data``.
    """
    net_cfg = _network_config(config, MIXTURE_NET_DEFAULTS)
    return EDMPrecond(
        model=MixtureMLP(**net_cfg),
        sigma_data=float(config["sigma_data"]),
        data_shape=(int(net_cfg["dim"]),),
        num_classes=int(net_cfg["num_classes"]),
        sigma_min=float(config.get("sigma_min", 0.002)),
        sigma_max=float(config.get("sigma_max", 80.0)),
        label_dropout_supported=bool(config.get("label_dropout_supported", False)),
    )
