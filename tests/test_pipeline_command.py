"""`mobilecls pipeline`: every stage's output, and a second run that redoes nothing."""

import os

import pytest
from click.testing import CliRunner
from tiny import SYNTHETIC_TRAIN
from tiny import TINY as TINY_FIT

from mobilecls import recipes
from mobilecls.cli import main

pytestmark = pytest.mark.slow

# the tiny synthetic recipe (tests/tiny.py) with the pipeline's optimize stages and a holdout other than the default
TINY = recipes.replace(TINY_FIT, schedule={"name": "constant"}, train={"seed": 1},
                       data={"val_fraction": 0.2, "holdout_seed": 2},
                       optimize={"prune_sparsity": 0.5, "prune_epochs": 1, "qat_epochs": 1, "calibration_steps": 40,
                                 "mirror_average": True, "shift_average": True})
EXPORTS = ("dynamic", "fp16", "fp32", "fp32_mirror", "fp32_mirror_shift", "int8_ptq", "int8_qat", "int8_qat_mirror",
           "int8_qat_mirror_shift")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The pipeline's folder, its table, and the holdout (val_fraction, seed) of every data load."""
    import mobilecls.data
    from mobilecls.training import train
    from mobilecls.workflow import run_pipeline

    holdouts = []

    def recording(load):
        def wrapper(spec, **kwargs):
            holdouts.append((kwargs["val_fraction"], kwargs["seed"]))
            return load(spec, **kwargs)
        return wrapper

    out = str(tmp_path_factory.mktemp("pipe") / "run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mobilecls.data, "load", recording(mobilecls.data.load))
        patch.setattr(train, "load_data", recording(train.load_data))
        table = run_pipeline(TINY, out, quiet=True, bench_threads=(1,), bench_runs=3)
    return out, table, holdouts


def test_every_stage_leaves_its_output(finished):
    out, table, _ = finished
    for path in ("fit/best.keras", "fit/metrics.json", "prune/model.keras", "qat/model.h5", "bench.json",
                 "report/table.md", "report/pareto.png", "recipe.yaml"):
        assert os.path.isfile(os.path.join(out, path)), path
    exported = sorted(os.listdir(os.path.join(out, "tflite")))
    assert exported == [f"shufflenet_v2_{name}.tflite" for name in EXPORTS]
    assert sorted(os.listdir(os.path.join(out, "eval"))) == [f"{name}.json" for name in EXPORTS]
    assert table.count("\n") == 2 + len(EXPORTS) and "p50 ms host ×1" in table


def test_every_stage_uses_the_recipes_holdout(finished):
    import json

    def samples(path):
        with open(os.path.join(out, path), encoding="utf-8") as handle:
            result = json.load(handle)
        return result["val"]["samples"] if "val" in result else result["samples"]

    out, _, holdouts = finished
    val_images = round(0.2 * SYNTHETIC_TRAIN)  # data.val_fraction 0.2; the default 0.1 would give half
    assert samples("fit/metrics.json") == val_images
    assert [samples(f"eval/{name}.json") for name in ("fp32", "int8_ptq", "int8_qat")] == [val_images] * 3
    # fit, prune, QAT, every calibrated export and every eval: data.holdout_seed 2, not the default 0
    assert len(holdouts) >= 3 + len(EXPORTS) and set(holdouts) == {(0.2, 2)}


def test_a_second_run_redoes_no_stage(finished):
    from mobilecls.workflow import run_pipeline

    out, _, _ = finished
    stamps = {path: os.path.getmtime(os.path.join(out, path))
              for path in ("fit/best.keras", "qat/model.h5", "tflite/shufflenet_v2_int8_qat.tflite", "bench.json")}
    run_pipeline(TINY, out, quiet=True, bench_threads=(1,), bench_runs=3)
    assert {path: os.path.getmtime(os.path.join(out, path)) for path in stamps} == stamps


def test_another_recipe_in_the_same_folder_is_refused(finished):
    out, _, _ = finished
    other = recipes.replace(TINY, train={"epochs": 2})
    recipe_file = os.path.join(os.path.dirname(out), "other.yaml")
    recipes.save(other, recipe_file)
    result = CliRunner().invoke(main, ["pipeline", "--recipe", recipe_file, "--out", out])
    assert result.exit_code == 2 and "holds a pipeline of another recipe" in result.output
