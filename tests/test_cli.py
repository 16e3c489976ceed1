"""The CLI starts without TensorFlow, answers --help for every command, and prints real numbers."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mobilecls.cli import main


def test_cli_import_does_not_import_tensorflow():
    code = "import sys, mobilecls.cli; print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("command", [[]] + [[name] for name in main.commands])
def test_every_command_answers_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_models_json_lists_every_model_with_params_and_macs():
    result = CliRunner().invoke(main, ["models", "--input-size", "224", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                            "shufflenet_v1", "shufflenet_v2"}
    assert by_name["mobilenet_v1"]["macs"] == 568_740_352
    assert all({"name", "width", "params", "macs"} <= set(row) for row in rows)


def test_profile_prints_the_per_layer_equations():
    result = CliRunner().invoke(main, ["profile", "mobilenet_v1", "--input-size", "224"])
    assert result.exit_code == 0, result.output
    assert "block_1_depthwise" in result.output and "eq. 2" in result.output and "eq. 3" in result.output
    assert "568,740,352" in result.output


def test_bad_input_is_a_one_line_error_with_status_2():
    result = CliRunner().invoke(main, ["models", "--input-size", "100"])
    assert result.exit_code == 2
    assert "input_size must be a multiple of 32" in result.output
    result = CliRunner().invoke(main, ["profile", "resnet"])
    assert result.exit_code == 2


@pytest.mark.parametrize("command", [["eval", "m.tflite"], ["quantize", "m.keras"], ["prune", "m.keras", "--out", "o"],
                                     ["qat", "m.keras", "--out", "o"]])
def test_a_bad_holdout_is_refused_and_the_defaults_are_the_recipes(command):
    from mobilecls.recipes import DataSection

    result = CliRunner().invoke(main, [*command, "--data", "synthetic", "--val-fraction", "1.5"])
    assert result.exit_code == 2
    assert "Invalid value for '--val-fraction': 1.5 is not in the range 0<x<1" in result.output
    result = CliRunner().invoke(main, [*command, "--data", "synthetic", "--holdout-seed", "-1"])
    assert result.exit_code == 2
    assert "Invalid value for '--holdout-seed': -1 is not in the range x>=0" in result.output
    defaults = {p.name: p.default for p in main.commands[command[0]].params}
    assert (defaults["val_fraction"], defaults["holdout_seed"]) == (DataSection.val_fraction, DataSection.holdout_seed)


@pytest.mark.parametrize("command", [["eval"], ["quantize", "--int8"], ["prune", "--out", "o"], ["qat", "--out", "o"]])
def test_the_holdout_flags_reach_the_data(command, float_model, monkeypatch, tmp_path):
    """Each command loads the data with --val-fraction and --holdout-seed (the fit's holdout)."""
    import mobilecls.data

    def spy(spec, **kwargs):
        raise ValueError(f"loaded with val_fraction={kwargs['val_fraction']} seed={kwargs['seed']}")

    monkeypatch.setattr(mobilecls.data, "load", spy)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [command[0], str(float_model), *command[1:], "--data", "synthetic",
                                       "--val-fraction", "0.25", "--holdout-seed", "4"])
    assert result.exit_code == 2 and "loaded with val_fraction=0.25 seed=4" in result.output, result.output


def test_quantize_report_debugs_on_the_holdout_it_is_given(float_model, monkeypatch, tmp_path):
    """--report's PTQ debugging loads the data again: with the same --val-fraction and --holdout-seed."""
    from mobilecls.export import quantize

    def spy(model_path, data, **kwargs):
        raise ValueError(f"report with val_fraction={kwargs['val_fraction']} seed={kwargs['holdout_seed']}")

    monkeypatch.setattr(quantize, "ptq_report", spy)
    result = CliRunner().invoke(main, ["quantize", str(float_model), "--int8", "--data", "synthetic", "--report",
                                       "--calibration-steps", "8", "--val-fraction", "0.25", "--holdout-seed", "4",
                                       "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2 and "report with val_fraction=0.25 seed=4" in result.output, result.output


def _models_command(env_level):
    import os

    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    if env_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = env_level
    return subprocess.run([sys.executable, "-c", "from mobilecls.cli import main; main()", "models",
                           "--input-size", "32", "--num-classes", "10"], capture_output=True, text=True, env=env)


def test_a_command_prints_no_tensorflow_start_up_lines():
    result = _models_command(None)
    assert result.returncode == 0 and "mobilenet_v1" in result.stdout
    assert result.stderr == ""  # no oneDNN / cuda / cuInit lines


def test_the_users_own_tensorflow_log_level_wins():
    result = _models_command("0")  # the user asked for every TensorFlow line
    assert result.returncode == 0 and "oneDNN" in result.stderr


def test_resume_refuses_options_that_would_change_the_run(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path), "--epochs", "50", "--seed", "3"])
    assert result.exit_code == 2
    assert "cannot take --epochs, --seed" in result.output


def test_a_failed_run_exits_1_and_a_user_mistake_exits_2():
    from mobilecls import cli
    from mobilecls.errors import RunFailed

    def failing(error):
        @cli._library_errors
        def command():
            raise error
        return command

    for error, code in ((RunFailed("loss became NaN at epoch 3, step 7"), 1), (ValueError("bad --data"), 2)):
        with pytest.raises(SystemExit) as exit_info:
            cli.click.command()(failing(error))(standalone_mode=True, args=[])
        assert exit_info.value.code == code
