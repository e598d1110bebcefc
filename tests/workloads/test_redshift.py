"""The synthetic redshift workload: deterministic, physically ordered, baselines that score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sealfn.batch.dataset import Dataset
from sealfn.workloads import redshift


def test_galaxies_are_deterministic_and_shaped_like_cai_records() -> None:
    a, b = redshift.galaxies(40, seed=3), redshift.galaxies(40, seed=3)
    for key in ("image", "mags", "redshift"):
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == np.float32
    assert a["image"].shape == (40, 5, 32, 32) and a["mags"].shape == (40, 5)
    assert not np.array_equal(a["redshift"], redshift.galaxies(40, seed=4)["redshift"])


def test_farther_galaxies_are_fainter_and_redder() -> None:
    data = redshift.galaxies(2000, seed=5)
    z, mags = data["redshift"], data["mags"]
    assert np.corrcoef(z, mags[:, 2])[0, 1] > 0.5  # r magnitude grows (fainter) with z
    assert np.corrcoef(z, mags[:, 1] - mags[:, 2])[0, 1] > 0.8  # g - r grows (redder)


def test_scores_and_baselines() -> None:
    true = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    perfect = redshift.Scores.of(true, true)
    assert perfect.mae == 0 and perfect.r2 == pytest.approx(1)
    mean = redshift.predict_mean(true, 4)
    assert redshift.Scores.of(mean, true).r2 == pytest.approx(0, abs=1e-6)
    train = redshift.galaxies(600, seed=6)
    test = redshift.galaxies(200, seed=7)
    knn = redshift.knn_magnitudes(train["mags"], train["redshift"], test["mags"])
    assert redshift.Scores.of(knn, test["redshift"]).mae < 0.5 * np.mean(
        np.abs(mean.mean() - test["redshift"])
    )


def test_shards_read_back_as_one_dataset(tmp_path: Path) -> None:
    data = redshift.galaxies(25, seed=8)
    redshift.write_shards(data, tmp_path, per_shard=10)
    dataset = Dataset.open(tmp_path)
    assert dataset.records == 25 and dataset.names == ("image", "mags", "redshift")
    np.testing.assert_array_equal(dataset.read(8, 22)["image"], data["image"][8:22])


@pytest.mark.slow
def test_trained_model_exports_to_onnx_with_the_same_answers(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    data = redshift.galaxies(256, seed=9)
    net = redshift.train(data, epochs=1, seed=0)
    path = redshift.export(net, tmp_path / "redshift.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": data["image"][:7], "mags": data["mags"][:7]})[0]
    with torch.no_grad():
        torch_out = net(torch.from_numpy(data["image"][:7]), torch.from_numpy(data["mags"][:7]))
    np.testing.assert_allclose(onnx_out, torch_out.numpy(), rtol=1e-4, atol=1e-5)
