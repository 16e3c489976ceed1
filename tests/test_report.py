"""`bench` on the host through the CLI, and `report` merging eval + bench results."""

import json

import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.models import build_model


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from mobilecls.data import load
    from mobilecls.export.convert import to_tflite

    folder = tmp_path_factory.mktemp("report")
    data = load("synthetic")
    (folder / "classes.json").write_text(json.dumps(list(data.class_names)))
    for name in ("shufflenet_v2", "mobilenet_v2"):
        model = build_model(name, width=0.5, input_size=32, num_classes=10)
        (folder / f"{name}.tflite").write_bytes(to_tflite(model, "fp32"))
        result = CliRunner().invoke(main, ["eval", str(folder / f"{name}.tflite"), "--data", "synthetic",
                                           "--json", str(folder / f"{name}_eval.json")])
        assert result.exit_code == 0, result.output
    models = [str(folder / "shufflenet_v2.tflite"), str(folder / "mobilenet_v2.tflite")]
    result = CliRunner().invoke(main, ["bench", *models, "--threads", "1,2", "--runs", "5", "--warmup", "2",
                                       "--json", str(folder / "bench.json"), "--csv", str(folder / "bench.csv")])
    assert result.exit_code == 0, result.output
    assert result.output.count(" ms ± ") == 4
    return folder


def test_bench_writes_one_row_per_model_and_thread_count(results):
    rows = json.loads((results / "bench.json").read_text())
    assert sorted((row["model"].rsplit("/", 1)[-1], row["threads"]) for row in rows) == [
        ("mobilenet_v2.tflite", 1), ("mobilenet_v2.tflite", 2),
        ("shufflenet_v2.tflite", 1), ("shufflenet_v2.tflite", 2)]
    assert all(row["min_ms"] <= row["p50_ms"] <= row["max_ms"] for row in rows)
    assert (results / "bench.csv").read_text().count("\n") == 5


def test_report_merges_eval_and_bench_into_a_table_and_a_plot(results, tmp_path):
    out = tmp_path / "report"
    files = [str(results / name) for name in ("shufflenet_v2_eval.json", "mobilenet_v2_eval.json", "bench.json")]
    result = CliRunner().invoke(main, ["report", *files, "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "table.md").read_text()
    header, _, *rows = table.strip().splitlines()
    assert "accuracy" in header and "p50 ms host ×1" in header and "p50 ms host ×2" in header
    assert len(rows) == 2
    accuracy = json.loads((results / "shufflenet_v2_eval.json").read_text())["accuracy"]
    row = next(r for r in rows if r.startswith("| shufflenet_v2.tflite"))
    assert f"{accuracy:.4f}" in row and "–" not in row
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_and_bench_refuse_bad_input(results, tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    result = CliRunner().invoke(main, ["report", str(junk), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "junk.json is not JSON" in result.output
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    result = CliRunner().invoke(main, ["report", str(other)])
    assert result.exit_code == 2
    assert "neither a `mobilecls eval --json` nor a `mobilecls bench --json` file" in result.output
    result = CliRunner().invoke(main, ["bench", str(tmp_path / "missing.tflite")])
    assert result.exit_code == 2 and "missing.tflite" in result.output
    result = CliRunner().invoke(main, ["bench", str(results / "shufflenet_v2.tflite"), "--threads", "one"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output


def test_pareto_front_keeps_only_the_points_nothing_beats():
    from mobilecls.reporting.report import pareto_front

    points = [(1.0, 0.80), (2.0, 0.90), (1.5, 0.70), (3.0, 0.85), (1.0, 0.75), (2.5, 0.92)]
    assert pareto_front(points) == [0, 1, 5]  # (1.5, .70) and (1.0, .75) are beaten by (1.0, .80)


def test_files_at_the_same_point_share_one_label():
    from mobilecls.reporting.report import point_labels

    # fp32 and fp16 of one model (1.005 and 1.010 ms, the same accuracy) are one point on the plot
    points = [(1.005, 0.8948), (1.010, 0.8948), (0.467, 0.8952), (2.975, 0.8958)]
    assert point_labels(points) == [((1.005, 0.8948), "1, 2"), ((0.467, 0.8952), "3"), ((2.975, 0.8958), "4")]
