"""Optional Inception FID/KID/precision/recall: the network, the weights file, torchmetrics, CLI.

No real Inception weights exist here (nothing is downloaded): the tests save a randomly
initialised network's state dict in the real file's format and load it back. That the network is
the FID graph was checked once against torch-fidelity's implementation (bit-exact on the CPU,
benchmarks/RESULTS.md §5); these tests pin the behaviour around it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("torchmetrics")

from diffgym.benchmarks.evaluate import measured_metrics, task_metrics, with_fid  # noqa: E402
from diffgym.benchmarks.fid import (  # noqa: E402
    FID_FEATURES,
    InceptionFeatures,
    images_to_uint8,
    inception_metrics,
    load_inception,
    resize_bilinear_tf1,
)
from diffgym.benchmarks.metrics import frechet_distance  # noqa: E402
from diffgym.cli import main  # noqa: E402
from diffgym.envs import make_task  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A state dict in the format of pt_inception-2015-12-05-6726825d.pth (random weights,
    variance-preserving so that features are O(1) rather than vanishing)."""
    torch.manual_seed(0)
    net = InceptionFeatures()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "pt_inception-test.pth"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def digits():
    task = make_task("digits")
    a, _ = task.sample_data(4, torch.Generator().manual_seed(1))
    b, _ = task.sample_data(4, torch.Generator().manual_seed(2))
    return task, a, b


def test_resize_matches_tf1_bilinear_closed_form():
    # TF1 (align_corners=False): output i samples the input at i * in / out, no half-pixel shift.
    x = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    y = resize_bilinear_tf1(x, 4)
    assert torch.equal(y[0, 0, 0], torch.tensor([0.0, 2.0, 4.0, 4.0]))
    assert torch.equal(y[0, 0, :, 0], torch.tensor([0.0, 4.0, 8.0, 8.0]))
    assert y[0, 0, 1, 1] == 6.0  # bilinear centre of the four pixels
    # Downsampling by 2 picks the even pixels (F.interpolate would average neighbours).
    z = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize_bilinear_tf1(z, 2), z[:, :, ::2, ::2])


def test_images_to_uint8_maps_range_and_channels():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5)
    u = images_to_uint8(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 3, 1, 5)
    assert u[0, 0, 0].tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\), got \(2, 2, 8, 8\)"):
        images_to_uint8(torch.zeros(2, 2, 8, 8))


def test_network_contract(weights):
    net = load_inception(weights)
    f = net(images_to_uint8(torch.rand(3, 1, 8, 8) * 2 - 1))
    assert f.shape == (3, FID_FEATURES) and f.dtype == torch.float32
    assert torch.isfinite(f).all() and f.std() > 1e-3
    # Batch composition does not change a sample's features (eval-mode batch norm).
    img = images_to_uint8(torch.rand(2, 3, 16, 16) * 2 - 1)
    torch.testing.assert_close(net(img)[:1], net(img[:1]), rtol=1e-4, atol=1e-5)
    net.train()
    assert not net.training  # torchmetrics calls .train(); batch norm must keep its statistics
    with pytest.raises(ValueError, match="uint8 images of shape"):
        net(torch.rand(1, 3, 8, 8))


def test_loads_state_dicts_without_batchnorm_counters(tmp_path, weights):
    # Older files (e.g. pytorch-fid's) have no num_batches_tracked buffers.
    state = {k: v for k, v in torch.load(weights).items() if "num_batches_tracked" not in k}
    path = tmp_path / "old_format.pth"
    torch.save(state, path)
    img = images_to_uint8(torch.rand(2, 1, 8, 8) * 2 - 1)
    torch.testing.assert_close(load_inception(path)(img), load_inception(weights)(img))


def test_load_inception_errors(tmp_path, weights):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth.*pt_inception-2015-12-05"):
        load_inception(missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read Inception weights"):
        load_inception(corrupt)
    other = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(ValueError, match="not the FID Inception-v3 state dict"):
        load_inception(other)
    state = torch.load(weights)
    state["fc.weight"] = torch.zeros(10, FID_FEATURES)
    shapes = tmp_path / "shapes.pth"
    torch.save(state, shapes)
    with pytest.raises(ValueError, match="does not fit"):
        load_inception(shapes)


def test_metrics_values_and_torchmetrics_agrees_with_own_frechet(weights, digits):
    task, a, b = digits
    same = inception_metrics(a, a, weights, kid_subsets=5)
    noise = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    real = inception_metrics(a, b, weights, kid_subsets=5)
    fake = inception_metrics(noise, b, weights, kid_subsets=5)
    # Identical sets: zero up to torchmetrics' eigenvalue round-off (6 samples in 2048-D).
    assert abs(same["fid"]) < 1e-4 * real["fid"]
    assert same["precision_inception"] == same["recall_inception"] == 1.0
    assert 0 < real["fid"] < fake["fid"]
    assert real["kid_inception"] < fake["kid_inception"]
    # torchmetrics' FID is the Fréchet distance of the same features.
    net = load_inception(weights)
    fa, fb = net(images_to_uint8(a)).double(), net(images_to_uint8(b)).double()
    assert real["fid"] == pytest.approx(frechet_distance(fa, fb), rel=1e-5)


def test_with_fid_adds_columns_and_checks_input(tmp_path, weights, digits):
    task, a, _ = digits
    base = task_metrics(task, a, seed=4)
    assert "fid" not in base
    assert tuple(base) == measured_metrics(task)
    with_fid(task, weights)
    try:
        full = task_metrics(task, a, seed=4)
        assert tuple(full) == measured_metrics(task)
    finally:
        task.extra.pop("fid_weights")
    assert {"fid", "kid_inception", "precision_inception", "recall_inception"} <= set(full)
    # digits scores its own metrics against the whole data set, but the Inception metrics against
    # N real samples drawn with the seed (an Inception pass over the data set costs minutes).
    assert task.reference is not None
    drawn, _ = task.sample_data(a.shape[0], torch.Generator().manual_seed(4))
    assert full["fid"] == pytest.approx(inception_metrics(a, drawn, weights)["fid"], rel=1e-9)
    # The built-in metrics are unchanged (label_accuracy is NaN: unconditional samples).
    assert {k: full[k] for k in base} == pytest.approx(base, nan_ok=True)
    with pytest.raises(ValueError, match=r"image task.*'gmm2d'.*\(2,\)"):
        with_fid(make_task("gmm2d"), weights)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        with_fid(task, tmp_path / "missing.pth")
    assert "fid_weights" not in task.extra  # a failed call leaves the task as it was


def test_cli_sample_reports_fid(tmp_path, weights, capsys):
    args = ["sample", "--task", "digits", "--n", "4", "--out", str(tmp_path)]
    assert main([*args, "--fid-weights", weights]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and "precision_inception" in out
    bad_out = tmp_path / "bad"
    bad = ["sample", "--task", "digits", "--n", "6", "--out", str(bad_out)]
    assert main([*bad, "--fid-weights", str(tmp_path / "absent.pth")]) == 2
    err = capsys.readouterr().err
    assert "absent.pth" in err and "does not exist" in err
    assert not bad_out.exists()  # refused before sampling: nothing written


@pytest.mark.parametrize("command", ["grid", "compare"])
def test_grid_and_compare_refuse_missing_weights_before_any_work(tmp_path, command, capsys):
    out = tmp_path / "out"
    code = main([command, "--task", "digits", "--out", str(out),
                 "--fid-weights", str(tmp_path / "gone.pth")])
    assert code == 2 and "gone.pth" in capsys.readouterr().err
    assert not out.exists()


def test_grid_records_inception_columns(tmp_path, weights):
    from diffgym.benchmarks.grid import GuidanceFamily, run_grid

    task = with_fid(make_task("digits"), weights)
    family = GuidanceFamily(w=(1.5,))
    grid = run_grid(task, [family], n=4, seed=0, out_dir=tmp_path, progress=False)
    for point in grid.points:
        assert point.metrics["fid"] > 0 and 0 <= point.metrics["recall_inception"] <= 1
    assert '"fid_weights"' in (tmp_path / "grid.json").read_text()  # part of the fingerprint
