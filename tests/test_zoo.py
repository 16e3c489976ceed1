"""The zoo index and model cards agree with the shipped .tflite files and their run files."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.export.tflite_file import read_facts
from mobilecls.files import gzip_size
from mobilecls.models.registry import builder_defaults, get_builder, list_models
from mobilecls.reporting import zoo

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tflite_models")
SMALL = "cifar10/shufflenet_v2_0.5x"  # the smallest folder (4.4 MB of .tflite files)


def test_shipped_index_lists_every_file_once_and_agrees_with_them():
    index = json.loads(open(os.path.join(ROOT, "index.json"), encoding="utf-8").read())
    listed = [entry["file"] for entry in index]
    shipped = sorted(os.path.relpath(os.path.join(folder, name), ROOT)
                     for folder, _, names in os.walk(ROOT) for name in names if name.endswith(".tflite"))
    assert listed == shipped and len(shipped) >= 30
    for entry in index:
        assert entry["size_bytes"] == os.path.getsize(os.path.join(ROOT, entry["file"]))
        assert entry["mode"] in ("fp32", "fp16", "dynamic", "int8", "int16x8")
        assert {"model", "build", "dataset", "io", "qat", "sparsity", "val", "gzip_bytes"} <= set(entry)
        assert {"width", "input_size", "num_classes"} <= set(entry["build"])
    assert zoo.check_index(ROOT) == []  # modes, I/O, sparsity, QAT, val, latency: re-read from the files


def test_modes_read_from_the_tensors_match_what_quantize_recorded():
    # `mobilecls quantize` wrote the mode it was asked for into each file's metadata: an
    # independent record of what the tensors should say.
    for entry in json.loads(open(os.path.join(ROOT, "index.json"), encoding="utf-8").read()):
        with open(os.path.join(ROOT, entry["file"]), "rb") as handle:
            facts = read_facts(handle.read())
        if facts["metadata"]:
            assert (facts["mode"], facts["io"]["input"]) == (facts["metadata"]["mode"], facts["metadata"]["io"])
        if entry["mode"] == "int8" and entry["io"]["input"] == "int8":
            assert entry["io"]["input_quantization"] == [1.0, -128]  # the pixels as they are
    pruned = os.path.join(ROOT, SMALL, "shufflenet_v2_int8_pruned_qat.tflite")
    dense = os.path.join(ROOT, SMALL, "shufflenet_v2_int8_qat.tflite")
    with open(pruned, "rb") as a, open(dense, "rb") as b:
        assert read_facts(a.read())["sparsity"] == 0.5 and read_facts(b.read())["sparsity"] < 0.02


def test_shipped_gzip_sizes_are_those_of_the_files():
    index = json.loads(open(os.path.join(ROOT, "index.json"), encoding="utf-8").read())
    for entry in (e for e in index if e["folder"] == SMALL):
        with open(os.path.join(ROOT, entry["file"]), "rb") as handle:
            assert entry["gzip_bytes"] == gzip_size(handle.read())


@pytest.mark.slow  # a TensorFlow conversion with calibration (~20 s idle); the shipped files cover the other modes
def test_int16x8_is_told_from_its_tensors():
    import numpy as np

    from mobilecls.export.convert import to_tflite
    from mobilecls.models import build_model

    model = build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10)
    images = [np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)]
    facts = read_facts(to_tflite(model, "int16x8", calibration=images))
    assert facts["mode"] == "int16x8" and facts["io"]["input"] == "float32" and facts["num_classes"] == 10


@pytest.mark.parametrize("name", list_models())
def test_builder_defaults_read_from_the_source_are_the_signature(name):
    import inspect

    parameters = inspect.signature(get_builder(name)).parameters
    assert builder_defaults(name) == {key: p.default for key, p in parameters.items()}


def test_build_keywords_leave_out_what_only_acts_in_training():
    from mobilecls import recipes

    recipe = recipes.override(recipes.Recipe(), ["model.name=shufflenet_v1", "model.groups=3", "model.dropout=0.2",
                                                 "model.zero_init_residual=true"])
    build = zoo._build_keywords(recipe, {"input_shape": (1, 32, 32, 3), "num_classes": 10})
    assert build == {"width": 1.0, "input_size": 32, "num_classes": 10, "groups": 3, "shuffle": True,
                     "grouped_conv": False}


@pytest.fixture
def small_zoo(tmp_path):
    shutil.copytree(os.path.join(ROOT, SMALL), tmp_path / SMALL)
    (tmp_path / SMALL / "README.md").unlink(missing_ok=True)
    return tmp_path


def test_index_is_made_from_the_files_and_finds_what_changed(small_zoo):
    index = zoo.write_index(str(small_zoo), profile=False)
    entry = next(e for e in index if e["file"].endswith("shufflenet_v2_int8_qat.tflite"))
    assert entry["model"] == "shufflenet_v2"
    assert entry["build"] == {"width": 0.5, "input_size": 32, "num_classes": 10, "shuffle": True}
    assert (entry["mode"], entry["qat"], entry["dataset"], entry["seed"]) == ("int8", True, "cifar10", 0)
    assert entry["val"]["accuracy"] == 0.861 and entry["val"]["eval"] == f"{SMALL}/eval/int8_qat.json"
    assert entry["p50_ms"]["1"] == pytest.approx(0.2590, abs=1e-3)  # its bench.json
    assert zoo.check_index(str(small_zoo), gzip=True) == []
    folder = small_zoo / SMALL
    shutil.copy(folder / "shufflenet_v2_fp16.tflite", folder / "extra.tflite")
    (folder / "shufflenet_v2_dynamic.tflite").unlink()
    (folder / "shufflenet_v2_fp32.tflite").write_bytes((folder / "shufflenet_v2_int8_ptq.tflite").read_bytes())
    problems = zoo.check_index(str(small_zoo))
    assert f"not in the index: {SMALL}/extra.tflite" in problems
    assert f"listed but missing: {SMALL}/shufflenet_v2_dynamic.tflite" in problems
    assert f"{SMALL}/shufflenet_v2_fp32.tflite: mode is 'fp32' in the index, 'int8' in the files" in problems
    # the fp32 eval JSON measured a file of another size: the index gives no val for it
    assert any(p.startswith(f"{SMALL}/shufflenet_v2_fp32.tflite: val is {{'accuracy': 0.863") for p in problems)


def test_cards_show_the_facts_and_never_overwrite_a_hand_written_readme(small_zoo):
    index = zoo.write_index(str(small_zoo), profile=False)
    (path,) = zoo.write_cards(str(small_zoo), index)
    card = open(path, encoding="utf-8").read()
    assert card.startswith(zoo.CARD_MARKER)
    assert "| build keywords | `width=0.5, input_size=32, num_classes=10, shuffle=True` |" in card
    assert "| fit | 110 epochs, 5,126 s = 85.4 min of fit wall time, 998 training images/s |" in card
    row = next(line for line in card.splitlines() if line.startswith("| shufflenet_v2_int8_qat.tflite"))
    assert "| int8 | uint8 | yes |" in row and "| 86.10 % | −0.20 |" in row and "| 538,049 B |" in row
    assert "| 0.259 | 0.408 |" in row  # p50 at 1 and 2 threads from bench.json
    assert "mobilecls quantize QAT/model.h5 --int8 --io uint8 -o shufflenet_v2_int8_qat.tflite" in card
    assert "mobilecls eval shufflenet_v2_fp32.tflite --data folder:/tmp/cifar10 --json eval/fp32.json" in card
    assert "--sparsity 0.5 --epochs 3 --out PRUNED   # lr not recorded in prune_report.json" in card
    recipe_path = small_zoo / SMALL / "recipe.yaml"
    recipe_path.write_text(recipe_path.read_text().replace("val_fraction: 0.1", "val_fraction: 0.2\n  holdout_seed: 3"))
    zoo.write_cards(str(small_zoo), index)  # its own card is rewritten; later commands hold out what fit did
    card = open(path, encoding="utf-8").read()
    assert ("mobilecls eval shufflenet_v2_fp32.tflite --data folder:/tmp/cifar10 --val-fraction 0.2 --holdout-seed 3 "
            "--json eval/fp32.json") in card
    assert ("mobilecls qat RUN/best.keras --data folder:/tmp/cifar10 --val-fraction 0.2 --holdout-seed 3 --epochs 1 "
            "--out QAT") in card
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# written by hand\n")
    with pytest.raises(ValueError, match="README.md exists and was not generated by mobilecls zoo"):
        zoo.write_cards(str(small_zoo), index)


def test_zoo_command_writes_and_checks(small_zoo):
    result = CliRunner().invoke(main, ["zoo", str(small_zoo), "--no-profile"])
    assert result.exit_code == 0 and "index.json: 6 files" in result.output
    result = CliRunner().invoke(main, ["zoo", str(small_zoo), "--check"])
    assert result.exit_code == 0 and "agrees with the files" in result.output
    os.unlink(small_zoo / SMALL / "shufflenet_v2_fp16.tflite")
    result = CliRunner().invoke(main, ["zoo", str(small_zoo), "--check"])
    assert result.exit_code == 1 and "listed but missing" in result.output
    result = CliRunner().invoke(main, ["zoo", str(small_zoo / "nope")])
    assert result.exit_code == 2 and "zoo folder not found" in result.output


@pytest.mark.parametrize(("flags", "averaged"), [({"mirror_average": True}, "mirror-averaged"),
                                                ({"mirror_average": True, "shift_average": True},
                                                 "mirror- and shift-averaged")])
def test_a_mirror_averaged_file_is_marked_in_the_index_and_its_card(small_zoo, flags, averaged):
    from mobilecls.export import metadata

    # the file's own provenance (`quantize --mirror` writes mirror_average) is what the index reads
    path = small_zoo / SMALL / "shufflenet_v2_int8_qat.tflite"
    known = metadata.read_metadata(path.read_bytes())
    provenance = {key: known[key] for key in ("mode", "io", "qat", "source", "producer", "input_size")}
    general = {key: known[key] for key in ("name", "description", "version", "author", "license")}
    path.write_bytes(metadata.write_metadata(path.read_bytes(), known["class_names"], True, general,
                                             {**provenance, **flags}))
    index = zoo.write_index(str(small_zoo), profile=False)
    marked = {e["file"].rsplit("/", 1)[1]: (e["mirror_average"], e["shift_average"]) for e in index
              if e["mirror_average"]}
    assert marked == {"shufflenet_v2_int8_qat.tflite": (True, "shift_average" in flags)}
    (card_path,) = zoo.write_cards(str(small_zoo), index)
    card = open(card_path, encoding="utf-8").read()
    row = next(line for line in card.splitlines() if line.startswith("| shufflenet_v2_int8_qat.tflite"))
    assert f"| int8, {averaged} | uint8 | yes |" in row
    shift = " --shift" if "shift_average" in flags else ""
    assert (f"mobilecls quantize QAT/model.h5 --int8 --io uint8 --mirror{shift} --data folder:/tmp/cifar10 "
            "-o shufflenet_v2_int8_qat.tflite") in card
    assert zoo.check_index(str(small_zoo)) == []
