"""CAI's redshift task, honestly offline: SYNTHETIC galaxies, a small two-branch model, baselines.

No survey data is downloaded. Each galaxy gets a redshift, a physical size and an absolute
magnitude; astropy's Planck 2018 cosmology turns them into an angular size (pixels at SDSS's
0.396"/pixel) and an apparent r magnitude; a toy spectral model reddens the colours with redshift
(u-g, g-r, r-i, i-z all grow with z); each band's image is an exponential (Sersic n=1) disk with
random ellipticity and angle, its flux set by the band magnitude, plus sky noise. The data are
therefore *synthetic*: they keep the shape of CAI's records (5 x 32 x 32 image + 5 magnitudes +
the true redshift) and a learnable size/colour-redshift relation, not the real universe's.

The model is shaped like AstroMAE's two branches at toy scale: a CNN over the image and an MLP
over the magnitudes, concatenated, then a head to one redshift. Baselines: predict the training
mean, and k-nearest neighbours on the magnitudes alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
BANDS = "ugriz"
SIZE = 32  # pixels per side
ARCSEC_PER_PIXEL = 0.396  # SDSS
ZERO_POINT = 22.5  # magnitude of 1 nanomaggy
SKY_NOISE = 0.05  # nanomaggies per pixel (1 sigma)
KPC_PER_MPC = 1000.0
RAD_TO_ARCSEC = 206264.806


def galaxies(count: int, seed: int) -> dict[str, Array]:
    """``count`` synthetic galaxies: ``image`` (N, 5, 32, 32) float32, ``mags`` (N, 5) float32,
    ``redshift`` (N,) float32. Deterministic in ``seed``."""
    from astropy.cosmology import Planck18  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    z = np.clip(rng.gamma(2.5, 0.14, count), 0.02, 1.5)
    size_kpc = rng.lognormal(np.log(4.0), 0.35, count)  # half-light radius
    distance_kpc = Planck18.angular_diameter_distance(z).value * KPC_PER_MPC
    radius_px = np.clip(size_kpc / distance_kpc * RAD_TO_ARCSEC / ARCSEC_PER_PIXEL, 0.6, 10.0)
    absolute_r = rng.normal(-21.5, 0.8, count)
    r_mag = absolute_r + Planck18.distmod(z).value + 2.5 * np.log10(1 + z)  # crude K-correction
    colours = np.stack(  # u-g, g-r, r-i, i-z: redder with redshift, plus scatter
        [1.2 + 1.1 * z, 0.5 + 0.9 * z, 0.25 + 0.6 * z, 0.15 + 0.35 * z], axis=1
    ) + rng.normal(0, 0.08, (count, 4))
    mags = _band_magnitudes(r_mag, colours)
    images = _render(rng, mags, radius_px)
    return {
        "image": images.astype(np.float32),
        "mags": mags.astype(np.float32),
        "redshift": z.astype(np.float32),
    }


def _band_magnitudes(r_mag: Array, colours: Array) -> Array:
    ug, gr, ri, iz = colours.T
    g = r_mag + gr
    u = g + ug
    i = r_mag - ri
    return np.stack([u, g, r_mag, i, i - iz], axis=1)  # (N, 5): u g r i z


def _render(rng: np.random.Generator, mags: Array, radius_px: Array) -> Array:
    """Exponential disks, one per galaxy, the same shape in every band; (N, 5, 32, 32)."""
    count = len(mags)
    axis = np.arange(SIZE) - (SIZE - 1) / 2
    yy, xx = np.meshgrid(axis, axis, indexing="ij")  # (32, 32) pixels from the centre
    angle = rng.uniform(0, np.pi, count)[:, None, None]
    ratio = rng.uniform(0.4, 1.0, count)[:, None, None]  # minor / major axis
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / ratio
    scale = radius_px[:, None, None] / 1.678  # half-light radius -> exponential scale length
    profile = np.exp(-np.sqrt(u**2 + v**2) / scale)
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    flux = 10 ** (-0.4 * (mags - ZERO_POINT))  # (N, 5) nanomaggies
    images = flux[:, :, None, None] * profile[:, None]
    images += rng.normal(0, SKY_NOISE, images.shape)
    compressed: Array = np.arcsinh(images / SKY_NOISE)  # the range of survey cut-outs
    return compressed


@dataclass(frozen=True)
class Scores:
    mae: float
    r2: float

    @classmethod
    def of(cls, predicted: Array, true: Array) -> Scores:
        error = predicted.reshape(-1) - true.reshape(-1)
        r2 = 1 - np.sum(error**2) / np.sum((true - true.mean()) ** 2)
        return cls(float(np.mean(np.abs(error))), float(r2))


def predict_mean(train_z: Array, count: int) -> Array:
    return np.full(count, float(np.mean(train_z)), dtype=np.float32)


def knn_magnitudes(train_mags: Array, train_z: Array, test_mags: Array, k: int = 15) -> Array:
    from sklearn.neighbors import KNeighborsRegressor  # type: ignore[import-untyped]

    model = KNeighborsRegressor(n_neighbors=k).fit(train_mags, train_z)
    return np.asarray(model.predict(test_mags), dtype=np.float32)


def make_model(seed: int) -> Any:
    """The two-branch network (torch): CNN(image) ++ MLP(mags) -> 64 -> 1."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class TwoBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = nn.Sequential(
                nn.Conv2d(5, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (16, 16, 16)
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (32, 8, 8)
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (32,)
            )  # fmt: skip
            self.mags = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, image: Any, mags: Any) -> Any:
            joined = torch.cat([self.image(image), self.mags((mags - 20.0) / 2.0)], dim=1)
            return self.head(joined)

    return TwoBranch()


def train(data: dict[str, Array], *, epochs: int, seed: int, batch: int = 128) -> Any:
    """Fit the two-branch model on ``data`` (L1 loss on redshift, Adam); returns it in eval mode."""
    import torch

    net = make_model(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    image = torch.from_numpy(data["image"])
    mags = torch.from_numpy(data["mags"])
    target = torch.from_numpy(data["redshift"])[:, None]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(target), generator=generator)
        for index in order.split(batch):  # type: ignore[no-untyped-call]
            optimiser.zero_grad()
            loss = torch.nn.functional.l1_loss(net(image[index], mags[index]), target[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    return net.eval()


def export(net: Any, path: Path) -> Path:
    """The trained model as ONNX (inputs ``image`` and ``mags``, output ``redshift``)."""
    import torch

    from sealfn.torch_onnx import export_onnx

    example = (torch.zeros(1, 5, SIZE, SIZE), torch.zeros(1, 5))
    path.write_bytes(export_onnx(net, example, ["image", "mags"], ["redshift"]))
    return path


def write_shards(data: dict[str, Array], folder: Path, per_shard: int) -> list[Path]:
    """CAI's record layout: ``.npz`` shards of ``per_shard`` records (image, mags, redshift)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(data["redshift"])
    paths = []
    for number, start in enumerate(range(0, count, per_shard)):
        path = folder / f"shard-{number:05d}.npz"
        shard: dict[str, Any] = {k: v[start : start + per_shard] for k, v in data.items()}
        np.savez(path, **shard)
        paths.append(path)
    return paths
