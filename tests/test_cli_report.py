"""`kr report`: through kr_lib.cli.main, on resnet18 at a small input."""
from __future__ import annotations

import io
import json
import re
import sys

import pandas as pd
import pytest
import torchvision

from kr_lib.cli import main
from kr_lib.commands.report import build_model, parse_shape

RESNET18_PARAMS = sum(p.numel() for p in torchvision.models.resnet18().parameters())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One `kr report resnet18` run writing CSV and JSON; returns (rc, stdout, csv path, json path)."""
    out = tmp_path_factory.mktemp("report")
    csv, js = out / "sub" / "r18.csv", out / "r18.json"
    js.write_text("old content")  # replaced, not appended to
    capture = pytest.MonkeyPatch()
    buf = io.StringIO()
    capture.setattr(sys, "stdout", buf)
    try:
        rc = main(["report", "resnet18", "--input-shape", "3x32x32", "--device", "cpu", "--csv", str(csv), "--json", str(js)])
    finally:
        capture.undo()
    return rc, buf.getvalue(), csv, js


def test_report_prints_table_and_aggregates(written):
    rc, out, _, _ = written
    assert rc == 0
    assert "layer4.1" in out and "K/R" in out and "closing conv" in out
    assert f"{RESNET18_PARAMS:,} total" in out
    assert "parameter-weighted 1" in out and "input 1x3x32x32 on cpu" in out


def test_report_writes_csv_and_json(written):
    _, _, csv, js = written
    table = pd.read_csv(csv)
    assert len(table) == 8 and (table["K/R"] == 1.0).all() and set(table["design"]) == {"dense"}
    payload = json.loads(js.read_text())
    assert payload["summary"]["total_parameters"] == RESNET18_PARAMS
    assert payload["summary"]["block_parameters"] == int(table["parameters"].sum())
    assert payload["device"] == "cpu" and payload["input_shape"] == [1, 3, 32, 32]
    assert [b["block"] for b in payload["blocks"]] == list(table["block"])
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in js.parent.rglob("*") if p.is_file()) == ["r18.csv", "r18.json"]


def test_default_input_on_the_meta_device(capsys):
    """resnet50 at its default 3x224x224 input, without computing anything: exact published totals."""
    assert main(["report", "resnet50", "--device", "meta"]) == 0
    out = capsys.readouterr().out
    meta = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta  # torchvision's published numbers
    assert "input 1x3x224x224 on meta" in out and f"{meta['num_params']:,} total" in out
    assert "parameter-weighted 4" in out
    # torchvision publishes GFLOPS counted as multiply-accumulates (fvcore's convention); ours are 2 per MAC
    flops = int(re.search(r"FLOPs .*?: ([\d,]+) total", out).group(1).replace(",", ""))
    assert round(flops / 2 / 1e9, 3) == meta["_ops"]


def test_unknown_model_lists_close_matches(capsys):
    assert main(["report", "resnet5"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet5'" in err and "resnet50" in err and "kr report --list" in err


def test_list_names_video_models_too(capsys):
    assert main(["report", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"resnet50", "r2plus1d_18", "mobilenet_v2"} <= set(names)


def test_missing_model_and_bad_shape(capsys):
    assert main(["report"]) == 2
    assert "give a MODEL" in capsys.readouterr().err
    assert main(["report", "resnet18", "--input-shape", "3xbig"]) == 2
    assert "--input-shape" in capsys.readouterr().err


def test_parse_shape():
    assert parse_shape("3x16x112x112") == (3, 16, 112, 112)
    assert parse_shape("1,28,28") == (1, 28, 28)
    with pytest.raises(ValueError, match="at least one"):
        parse_shape("3")


def test_user_factory(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def tiny():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(),\n"
        "                         nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 8, 1)))\n"
        "not_a_model = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["report", "my_nets:tiny", "--input-shape", "1x12x12"]) == 0
    out = capsys.readouterr().out
    assert "bottleneck" in out and "parameter-weighted 4" in out
    with pytest.raises(ValueError, match="not an nn.Module"):
        build_model("my_nets:not_a_model")
    with pytest.raises(ValueError, match="has no attribute"):
        build_model("my_nets:missing")
    with pytest.raises(ValueError, match="cannot import"):
        build_model("no_such_package_xyz:net")
