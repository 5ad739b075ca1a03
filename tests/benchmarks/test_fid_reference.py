"""The Inception features of a fixed reference set are computed once per process (no torchmetrics
needed): the same values as embedding the set again, recomputed when the set or the weights file
changes."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from diffgym.benchmarks import fid
from diffgym.benchmarks.fid import (
    InceptionFeatures,
    images_to_uint8,
    load_inception,
    reference_inception_features,
)


@pytest.fixture
def weights(tmp_path) -> str:
    torch.manual_seed(0)
    net = InceptionFeatures()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path / "pt_inception-test.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def test_reference_features_are_computed_once_and_equal_a_fresh_embedding(weights, monkeypatch):
    ref = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    calls = []
    embed = fid._features
    monkeypatch.setattr(fid, "_features", lambda *a: calls.append(1) or embed(*a))
    first = reference_inception_features(ref, weights)
    direct = load_inception(weights)(images_to_uint8(ref))
    assert torch.equal(first, direct) and first.shape == (3, 2048)
    first.zero_()  # a copy: the cache is untouched
    again = reference_inception_features(ref.clone(), weights)  # same content, another tensor
    assert len(calls) == 1 and torch.equal(again, direct)
    reference_inception_features(ref[:2], weights)  # another reference set
    assert len(calls) == 2
    st = os.stat(weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file was replaced
    assert torch.equal(reference_inception_features(ref, weights), direct)
    assert len(calls) == 3


def test_reference_features_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reference_inception_features(torch.zeros(2, 1, 8, 8), tmp_path / "none.pth")
