"""`mobilecls study`: Tables I and II and Fig. 3 from eval / bench JSON files, beside the study's numbers."""

import json

import pytest
import yaml
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.reporting import study

# accuracy of each member's float file per seed; int8 is 0.2 points lower; recall = accuracy, F1 0.1 lower
FLOAT = {"mobilenet_v1": (0.870, 0.874), "mobilenet_v1_standard_conv": (0.880, 0.886),
         "shufflenet_v1": (0.900, 0.902), "shufflenet_v1_noshuffle": (0.880, 0.880)}
BUILD = {"mobilenet_v1": {"width": 0.25, "input_size": 32, "num_classes": 10, "separable": True},
         "mobilenet_v1_standard_conv": {"width": 0.25, "input_size": 32, "num_classes": 10, "separable": False},
         "shufflenet_v1": {"width": 1.0, "input_size": 32, "num_classes": 10, "groups": 3},
         "shufflenet_v1_noshuffle": {"width": 1.0, "input_size": 32, "num_classes": 10, "groups": 3,
                                     "shuffle": False}}
P50 = {"mobilenet_v1": 0.10, "mobilenet_v1_standard_conv": 0.30, "shufflenet_v1": 0.20,
       "shufflenet_v1_noshuffle": 0.19}


def _eval(name, accuracy, size):
    # the documented `mobilecls eval --json` schema (the keys the study reads, and some it does not)
    return {"samples": 5000, "accuracy": accuracy, "top5": 0.99, "precision": accuracy, "recall": accuracy,
            "f1": accuracy - 0.001, "model": name, "data": "folder:/tmp/cifar10", "split": "val",
            "images_per_sec": 1000.0, "size_bytes": size}


def _bench(rows):
    return [{"model": f"/somewhere/{name}", "device": device, "threads": threads, "runs": 50,
             "p50_ms": p50 * threads * (1 if device == "host" else 5), "mean_ms": p50, "size_bytes": size}
            for device in ("adb:phone", "host") for name, p50, size in rows for threads in (1, 2)]


def write_study(folder, members=tuple(FLOAT)):
    spec = {"members": {}}
    for member in members:
        runs = []
        for seed, accuracy in enumerate(FLOAT[member]):
            run = folder / f"{member}_s{seed}"
            (run / "eval").mkdir(parents=True)
            (run / "eval" / "fp32.json").write_text(json.dumps(_eval("m_fp32.tflite", accuracy, 4_000_000)))
            int8_size = 1_000_000 + 1000 * seed
            (run / "eval" / "int8_qat.json").write_text(json.dumps(_eval("m_int8_qat.tflite", accuracy - 0.002,
                                                                         int8_size)))
            (run / "bench.json").write_text(json.dumps(_bench([("m_fp32.tflite", 9.0, 4_000_000),
                                                              ("m_int8_qat.tflite", P50[member], int8_size)])))
            (run / "metrics.json").write_text(json.dumps({"wall_time_s": 600.0 * (seed + 1)}))
            runs.append({"seed": seed, "float": f"{run.name}/eval/fp32.json", "int8": f"{run.name}/eval/int8_qat.json",
                         "bench": f"{run.name}/bench.json", "metrics": f"{run.name}/metrics.json"})
        spec["members"][member] = {"build": BUILD[member], "runs": runs}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def fake_profile(model, build):
    separable = build.get("separable", True)
    macs = (12_000_000 if separable else 96_000_000) if model == "mobilenet_v1" else 30_000_000
    return {"params": 200_000 if separable else 1_800_000, "macs": macs}


def test_rows_hold_means_spreads_and_costs(tmp_path):
    rows = study.summarize(study.load_study(write_study(tmp_path)), profile=fake_profile)
    mean, spread, n = rows["mobilenet_v1"]["float_accuracy"]
    assert (round(mean, 6), n) == (87.2, 2)
    assert spread == pytest.approx(0.2828427, abs=1e-6)  # sample sd of 87.0, 87.4
    assert rows["shufflenet_v1_noshuffle"]["float_accuracy"][1] == 0.0
    assert rows["mobilenet_v1"]["int8_accuracy"][0] == pytest.approx(87.0)
    assert rows["mobilenet_v1"]["int8_p50_ms"][0] == pytest.approx(0.10)  # the host's 1-thread row of the int8 file
    assert rows["mobilenet_v1"]["int8_size_bytes"][0] == 1_000_500
    assert rows["mobilenet_v1"]["wall_time_min"] == [10.0, 20.0]
    assert rows["mobilenet_v1_standard_conv"]["macs"] == 96_000_000


def test_tables_show_deltas_their_sign_and_the_study_numbers(tmp_path):
    text = study.render(study.summarize(study.load_study(write_study(tmp_path)), profile=fake_profile))
    table_one = text.split("### Table I")[1].split("### Table II")[0]
    assert "| separable | 87.20 ± 0.28 (n=2) | 87.20 ± 0.28 (n=2) | 87.10 ± 0.28 (n=2) |" in table_one
    assert "| 88.5 | 87.8 | 88.1 |" in table_one  # the study's MobileNet
    assert "| standard conv | 88.30 ± 0.42 (n=2)" in table_one and "| 82.3 | – | – |" in table_one
    # standard − separable: +1.10 measured (beyond 2 x 0.42), −6.20 in the study: opposite signs
    assert "| Δ standard conv − separable | +1.10 (beyond seed spread) |" in table_one
    # params 9x, MACs 8x, int8 size 1x, int8 latency 3x; then the study's delta
    assert "| +1.10 | 9.00x | 8.00x | 1.00x | 3.00x |  | −6.20 |" in table_one
    assert "Measured Δ accuracy +1.10 points against the study's −6.20: opposite sign to the study." in table_one
    table_two = text.split("### Table II")[1]
    assert "| shuffle | 90.10 ± 0.14 (n=2)" in table_two and "| 89.2 | 88.6 | 88.9 |" in table_two
    assert "| no shuffle | 88.00 ± 0.00 (n=2)" in table_two and "| 85.1 | – | – |" in table_two
    assert "| Δ no shuffle − shuffle | −2.10 (beyond seed spread) |" in table_two
    assert "same sign as the study" in table_two
    assert "macro recall equals accuracy" in text and "recipes/imagenet/" in text
    assert "held out of the training split (5,000 images, stratified; read\n  from folder:/tmp/cifar10)" in text


def test_a_delta_within_seed_noise_is_not_called_beyond_it(tmp_path):
    rows = study.summarize(study.load_study(write_study(tmp_path)), profile=fake_profile)
    rows["mobilenet_v1_standard_conv"]["float_accuracy"] = (87.5, 0.3, 2)  # +0.30 against spreads 0.28 / 0.3
    value, beyond = study.delta(rows, "mobilenet_v1", "mobilenet_v1_standard_conv", "float_accuracy")
    assert value == pytest.approx(0.3) and not beyond


def test_a_member_not_run_yet_is_shown_as_such(tmp_path):
    path = write_study(tmp_path, members=("mobilenet_v1", "mobilenet_v1_standard_conv"))
    text = study.render(study.summarize(study.load_study(path), profile=fake_profile))
    assert "| shuffle | not run |" in text and "| no shuffle | not run |" in text
    assert "Δ no shuffle" not in text and "Δ standard conv" in text


def test_a_partial_study_leaves_out_the_runs_not_made_yet_and_lists_them(tmp_path):
    import shutil

    path = write_study(tmp_path)
    (tmp_path / "mobilenet_v1_standard_conv_s1" / "bench.json").unlink()
    for seed in (0, 1):
        shutil.rmtree(tmp_path / f"shufflenet_v1_s{seed}")
    result = CliRunner().invoke(main, ["study", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "members.mobilenet_v1_standard_conv.runs[1].bench not found" in result.output
    assert not (tmp_path / "out").exists()
    text = study.study_report(str(path), str(tmp_path / "out"), profile=fake_profile, partial=True)
    assert (tmp_path / "out" / "study.md").read_text() == text
    assert "| standard conv | 88.00 | 88.00 | 87.90 | 87.80 |" in text  # seed 0 alone: no spread
    assert "| Δ standard conv − separable | +0.80 (beyond seed spread) |" in text  # 2 x separable's 0.28 < 0.80
    assert "| shuffle | not run |" in text and "Δ no shuffle" not in text
    assert ("Left out, their files not made yet (`--partial`): mobilenet_v1_standard_conv seed 1; "
            "shufflenet_v1 seeds 0, 1.") in text


def test_bad_study_files_are_one_line_errors_naming_the_thing(tmp_path):
    path = write_study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    cases = [
        (lambda s: s["members"].update(mobilenet_v3={}), ValueError, "unknown key 'mobilenet_v3'"),
        (lambda s: s["members"]["mobilenet_v1"]["runs"][0].update(eval="x.json"), ValueError,
         r"members.mobilenet_v1.runs\[0\]: unknown key 'eval'; valid keys: seed, float, int8, bench, metrics"),
        (lambda s: s["members"]["mobilenet_v1"]["runs"][1].update(int8="gone.json"), FileNotFoundError,
         r"members.mobilenet_v1.runs\[1\].int8 not found: .*gone.json"),
        (lambda s: s["members"]["mobilenet_v1_standard_conv"]["build"].update(separable=True), ValueError,
         "build.separable must be false for mobilenet_v1_standard_conv"),
        (lambda s: s["members"]["shufflenet_v1"]["build"].update(width=1.5), ValueError,
         "shufflenet_v1 and shufflenet_v1_noshuffle must be built alike but for shuffle"),
        (lambda s: s["members"]["shufflenet_v1"]["runs"][0].update(bench=s["members"]["shufflenet_v1"]["runs"][0]
                                                                   ["float"]), ValueError,
         "is not a `mobilecls bench --json` file"),
        (lambda s: s["members"]["shufflenet_v1"]["runs"][0].update(bench=s["members"]["shufflenet_v1"]["runs"][1]
                                                                   ["bench"]), ValueError,
         "timed a m_int8_qat.tflite of 1001000 bytes, the int8 eval measured one of 1000000 bytes"),
    ]
    for change, error, message in cases:
        broken = yaml.safe_load(yaml.safe_dump(spec))
        change(broken)
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(broken))
        with pytest.raises(error, match=message):
            study.load_study(bad)
    with pytest.raises(FileNotFoundError, match="study file not found: .*nope.yaml"):
        study.load_study(tmp_path / "nope.yaml")


def test_study_command_writes_the_tables_the_json_and_fig3(tmp_path):
    # the real parameter and MAC counts: the tiny builds above, profiled with the study's formulas
    path = write_study(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["study", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["fig3.png", "study.json", "study.md"]
    assert (out / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((out / "study.json").read_text())
    from mobilecls.models.profile import summarize

    expected = summarize("mobilenet_v1", width=0.25, input_size=32, num_classes=10, separable=False)
    assert rows["mobilenet_v1_standard_conv"]["macs"] == expected["macs"]
    assert rows["mobilenet_v1_standard_conv"]["macs"] > 7 * rows["mobilenet_v1"]["macs"]
    assert (out / "study.md").read_text() in result.output
    result = CliRunner().invoke(main, ["study", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "study file not found" in result.output


@pytest.mark.slow  # ~70 s with a training run on the cores: converts, evaluates and times four files
def test_study_reads_the_files_eval_and_bench_write(tmp_path):
    # end to end with the project's own writers: two untrained tiny MobileNetV1s, fp32 + int8 each
    import numpy as np

    from mobilecls.bench.host import bench_host
    from mobilecls.bench.result import write_json as write_bench
    from mobilecls.data import load
    from mobilecls.export.convert import to_tflite
    from mobilecls.models import build_model

    data = load("synthetic")
    (tmp_path / "classes.json").write_text(json.dumps(list(data.class_names)))
    calibration = [np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)]
    spec = {"members": {}}
    for member in ("mobilenet_v1", "mobilenet_v1_standard_conv"):
        model = build_model("mobilenet_v1", **BUILD[member])
        paths = {}
        for kind, mode in (("float", "fp32"), ("int8", "int8")):
            paths[kind] = tmp_path / f"{member}_{mode}.tflite"
            paths[kind].write_bytes(to_tflite(model, mode, calibration=calibration, io="int8" if mode == "int8"
                                              else "float32"))
            result = CliRunner().invoke(main, ["eval", str(paths[kind]), "--data", "synthetic",
                                               "--json", str(tmp_path / f"{member}_{mode}.json")])
            assert result.exit_code == 0, result.output
        write_bench(tmp_path / f"{member}_bench.json", bench_host([str(paths["int8"])], threads=(1,), runs=3, warmup=1))
        spec["members"][member] = {"build": BUILD[member], "runs": [
            {"seed": 0, "float": f"{member}_fp32.json", "int8": f"{member}_int8.json",
             "bench": f"{member}_bench.json"}]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    rows = study.summarize(study.load_study(tmp_path / "study.yaml"))
    evaluated = json.loads((tmp_path / "mobilenet_v1_standard_conv_int8.json").read_text())
    bench = json.loads((tmp_path / "mobilenet_v1_standard_conv_bench.json").read_text())
    standard = rows["mobilenet_v1_standard_conv"]
    assert standard["int8_accuracy"] == (100 * evaluated["accuracy"], None, 1)
    assert standard["int8_size_bytes"][0] == evaluated["size_bytes"] == bench[0]["size_bytes"]
    assert standard["int8_p50_ms"][0] == bench[0]["p50_ms"]
    assert standard["split"]["split"] == "val" and standard["macs"] > 7 * rows["mobilenet_v1"]["macs"]
    text = study.render(rows)
    accuracy = json.loads((tmp_path / "mobilenet_v1_standard_conv_fp32.json").read_text())["accuracy"]
    assert f"| standard conv | {100 * accuracy:.2f} |" in text
