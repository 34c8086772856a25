"""`nlq plot`: RD plots, BD tables against anchors, and reconstruction grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from nlq_jax import cli
from nlq_jax.baselines import codecs
from nlq_jax.evaluation import grid, plot

RATE = [0.25, 0.4, 0.6, 0.9, 1.3, 2.0]
PSNR = [27.0, 29.1, 30.9, 32.6, 34.2, 36.3]


def _write(path, name, bpp, psnr, measured=False):
    obj = {"name": name, "description": "", "results": {"bpp": bpp, "psnr-rgb": psnr}}
    if measured:
        obj["per_image"] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_table_reports_minus_ten_percent_for_a_curve_with_nine_tenths_of_the_bits(tmp_path):
    anchor = _write(tmp_path / "published" / "jpeg.json", "JPEG", RATE, PSNR)
    ours = _write(tmp_path / "ours" / "jpeg.json", "JPEG", [0.9 * r for r in RATE], PSNR, True)
    table = tmp_path / "bd.md"
    argv = ["plot", str(ours), "--anchor", str(anchor), "--out", str(tmp_path / "rd.png")]
    assert cli.main([*argv, "--table", str(table)]) == 0
    text = table.read_text()
    assert "### Anchor: JPEG [published]" in text
    row = next(line for line in text.splitlines() if line.startswith("| JPEG [ours]"))
    assert row.split("|")[3].strip() == "-10.0 %"  # pchip
    assert row.split("|")[4].strip() == "-10.0 %"  # cubic
    with Image.open(tmp_path / "rd.png") as im:
        assert im.size[0] > 600 and im.size[1] > 400


def test_bd_psnr_column_is_the_quality_shift(tmp_path):
    a = plot.Curve("A", "A", "", "a", np.array(RATE), np.array(PSNR), False)
    b = plot.Curve("B", "B", "", "b", np.array(RATE), np.array(PSNR) + 0.5, True)
    (row,) = plot.bd_rows([b], a)
    assert row["bd_quality"] == pytest.approx(0.5)
    assert row["bd_rate_pchip"] < 0


def test_equal_names_get_their_folder_and_anchors_resolve_by_label(tmp_path):
    p1 = _write(tmp_path / "x" / "r.json", "JPEG", RATE, PSNR)
    p2 = _write(tmp_path / "y" / "r.json", "JPEG", RATE, PSNR)
    curves = plot.load_curves([p1, p2])
    assert [c.label for c in curves] == ["JPEG [x]", "JPEG [y]"]
    assert plot.find_curve(curves, "JPEG [y]") is curves[1]
    assert plot.find_curve(curves, str(p1)) is curves[0]
    with pytest.raises(Exception, match="ambiguous"):
        plot.find_curve(curves, "jpeg")


def test_ms_ssim_is_plotted_in_db_and_missing_points_are_dropped(tmp_path):
    obj = {"name": "M", "results": {"bpp": [0.1, 0.2, 0.3], "ms-ssim-rgb": [0.9, None, 0.99]}}
    (tmp_path / "m.json").write_text(json.dumps(obj))
    curve = plot.load_curve(tmp_path / "m.json", "ms-ssim")
    np.testing.assert_allclose(curve.quality, [10.0, 20.0])
    np.testing.assert_allclose(curve.bpp, [0.1, 0.3])


def test_plot_errors_are_one_line(tmp_path, capsys):
    p = _write(tmp_path / "r.json", "A", RATE, PSNR)
    assert cli.main(["plot", str(p), "--out", str(tmp_path / "o.png"), "--anchor", "nope"]) == 2
    assert "anchor 'nope' is neither a curve" in capsys.readouterr().err


def test_grid_picks_the_quality_closest_to_each_target_rate(tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(skdata.astronaut()[:96, :128]).save(image)
    pixels = np.asarray(Image.open(image))
    jpeg = codecs.get_codec("jpeg")
    rows = grid.make_grid(image, tmp_path / "grid.png", [0.5, 1.5], baselines=[jpeg], crop_size=48)
    ((label, recs),) = rows
    assert label == "JPEG"
    all_bpp = {}
    for q in range(0, 101):
        all_bpp[q] = len(jpeg.encode(pixels, q)) * 8 / pixels[..., 0].size
    for target, rec in zip([0.5, 1.5], recs, strict=True):
        best = min(abs(np.log(b / target)) for b in all_bpp.values())
        assert abs(np.log(rec.bpp / target)) <= best + 0.02  # bisection: near the best of all
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 300


def test_choose_crop_finds_the_textured_region():
    pixels = np.full((64, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    pixels[32:, 32:] = rng.integers(0, 256, (32, 32, 3))
    assert grid.choose_crop(pixels, 32) == (32, 32, 32)


def test_published_curves_ship_and_plot_by_name(tmp_path, capsys):
    from nlq_jax.evaluation import anchors

    names = anchors.names()
    assert {"jpeg", "vtm", "compressai-bmshj2018-hyperprior_mse_cpu"} <= set(names)
    assert cli.main(["plot", "--list-anchors"]) == 0
    assert capsys.readouterr().out.split() == names
    published = json.loads(anchors.path("vtm").read_text())
    table = tmp_path / "bd.md"
    argv = ["plot", "jpeg", "--anchor", "vtm", "--out", str(tmp_path / "rd.png")]
    assert cli.main([*argv, "--table", str(table)]) == 0
    (vtm,) = plot.load_curves([anchors.path("vtm")])
    np.testing.assert_allclose(vtm.bpp, sorted(published["results"]["bpp"]))
    assert "### Anchor: VTM" in table.read_text()
    # JPEG needs more bits than VTM at every quality: a positive BD-rate.
    row = next(line for line in table.read_text().splitlines() if line.startswith("| JPEG"))
    assert float(row.split("|")[3].strip().rstrip(" %")) > 50


def test_plot_warns_when_curves_average_different_images(tmp_path, capsys):
    def ours(name, images):
        obj = {
            "name": name,
            "results": {"bpp": RATE, "psnr-rgb": PSNR},
            "per_image": {f"{image}.png": {} for image in images},
        }
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(obj))
        return str(path)

    kodak = [f"kodim{i:02d}" for i in range(1, 25)]
    out = ["--out", str(tmp_path / "rd.png")]
    assert cli.main(["plot", ours("a", kodak), ours("b", kodak), "jpeg", *out]) == 0
    assert "warning" not in capsys.readouterr().err  # all Kodak, the shipped curve too
    assert cli.main(["plot", ours("c", ["chelsea", "china"]), "jpeg", *out]) == 0
    err = capsys.readouterr().err
    assert "different image sets" in err and "c (2 images)" in err and "(24 images)" in err


def test_unknown_published_name_is_one_line(tmp_path, capsys):
    assert cli.main(["plot", "vtmm", "--out", str(tmp_path / "rd.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean vtm" in err


def test_drawing_a_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    """A notebook's inline plots stop working if a library switches the backend to Agg."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        a = plot.Curve("A", "A", "", "a", np.array(RATE), np.array(PSNR), False)
        plot.plot_rd([a], tmp_path / "rd.png", "psnr")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "rd.png").stat().st_size > 1000
    finally:
        matplotlib.use(before)
