"""Recipes parse into frozen dataclasses, reject unknown keys with the valid ones, and override."""

import dataclasses
import glob
import os

import pytest

from mobilecls import recipes

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "recipes", "**", "*.yaml"), recursive=True)))
def test_every_shipped_recipe_loads(path):
    recipe = recipes.load(path)
    assert recipe.model.name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                                 "shufflenet_v1", "shufflenet_v2")


def test_paper_recipes_follow_the_study_protocol():
    for path in glob.glob(os.path.join(ROOT, "recipes", "paper", "*.yaml")):
        recipe = recipes.load(path)
        assert (recipe.optimizer.name, recipe.optimizer.lr) == ("sgd", 0.01)
        assert (recipe.schedule.name, recipe.schedule.step_epochs, recipe.schedule.step_factor) == ("step", 10, 0.1)
        assert (recipe.train.batch_size, recipe.train.epochs) == (128, 100)
    ablation = recipes.load(os.path.join(ROOT, "recipes", "paper", "mobilenet_v1_standard_conv.yaml"))
    assert ablation.model.separable is False
    noshuffle = recipes.load(os.path.join(ROOT, "recipes", "paper", "shufflenet_v1_g3_noshuffle.yaml"))
    assert (noshuffle.model.groups, noshuffle.model.shuffle) == (3, False)


def test_recipe_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipes.Recipe().train.epochs = 3


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown recipe key optimizer.learning_rate; valid keys in optimizer: "
                                         "name, lr, momentum, nesterov, weight_decay"):
        recipes.from_dict({"optimizer": {"learning_rate": 0.1}})
    with pytest.raises(ValueError, match="unknown recipe section 'optimiser'; valid sections: model, data"):
        recipes.from_dict({"optimiser": {}})


def test_model_keywords_reach_the_builder_only_when_set():
    recipe = recipes.override(recipes.Recipe(), ["model.name=mobilenet_v1", "model.cifar_output_stride=16"])
    assert recipe.model.builder_kwargs(32, 10) == {"width": 1.0, "dropout": 0.0, "input_size": 32,
                                                   "num_classes": 10, "cifar_output_stride": 16}
    assert "cifar_output_stride" not in recipes.Recipe().model.builder_kwargs(32, 10)
    recipe = recipes.override(recipes.Recipe(), ["model.name=shufflenet_v1", "model.zero_init_residual=true"])
    assert recipe.model.builder_kwargs(32, 10)["zero_init_residual"] is True


def test_exponent_floats_that_yaml_reads_as_strings_are_accepted():
    recipe = recipes.override(recipes.Recipe(), ["optimizer.lr=1e-3", "optimizer.weight_decay=5e-5"])
    assert (recipe.optimizer.lr, recipe.optimizer.weight_decay) == (0.001, 5e-5)
    with pytest.raises(ValueError, match="optimizer.lr: expected float, got 'fast'"):
        recipes.override(recipes.Recipe(), ["optimizer.lr=fast"])


def test_wrong_types_and_choices_are_errors():
    with pytest.raises(ValueError, match="train.epochs: expected int, got 'ten'"):
        recipes.from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ValueError, match="optimizer.name: expected one of sgd, rmsprop, adamw, got 'lamb'"):
        recipes.from_dict({"optimizer": {"name": "lamb"}})
    with pytest.raises(ValueError, match="augment.flip: expected one of true, false, alternate, got 'sideways'"):
        recipes.override(recipes.Recipe(), ["augment.flip=sideways"])
    with pytest.raises(ValueError, match="mixed_precision: expected one of null, mixed_bfloat16, got 'fp8'"):
        recipes.override(recipes.Recipe(), ["train.mixed_precision=fp8"])
    assert recipes.override(recipes.Recipe(), ["augment.flip=alternate"]).augment.flip == "alternate"


def test_jpeg_quality_is_a_range_of_two_qualities():
    recipe = recipes.override(recipes.Recipe(), ["augment.jpeg_quality=[60, 95]", "augment.jpeg_probability=0.5"])
    assert (recipe.augment.jpeg_quality, recipe.augment.jpeg_probability) == ([60, 95], 0.5)
    with pytest.raises(ValueError, match="augment.jpeg_quality: expected a list of int or null, got 'high'"):
        recipes.override(recipes.Recipe(), ["augment.jpeg_quality=high"])
    with pytest.raises(ValueError, match="augment.jpeg_quality: expected a list of int or null, got \\[60.5, 90\\]"):
        recipes.override(recipes.Recipe(), ["augment.jpeg_quality=[60.5, 90]"])
    for bad in ("[95, 60]", "[0, 90]", "[60, 101]", "[60]", "[50, 60, 70]"):
        with pytest.raises(ValueError, match="augment.jpeg_quality must be \\[low, high\\] with 1 <= low <= high"):
            recipes.override(recipes.Recipe(), [f"augment.jpeg_quality={bad}"])
    with pytest.raises(ValueError, match="augment.jpeg_probability must be in \\[0, 1\\], got 1.5"):
        recipes.override(recipes.Recipe(), ["augment.jpeg_probability=1.5"])
    with pytest.raises(ValueError, match="augment.jpeg_probability applies with augment.jpeg_quality: set both"):
        recipes.override(recipes.Recipe(), ["augment.jpeg_probability=0.5"])


def test_holdout_seed_is_an_integer_from_0():
    assert recipes.override(recipes.Recipe(), ["data.holdout_seed=2"]).data.holdout_seed == 2
    with pytest.raises(ValueError, match="data.holdout_seed must be >= 0, got -1"):
        recipes.override(recipes.Recipe(), ["data.holdout_seed=-1"])
    with pytest.raises(ValueError, match="recipe key data.holdout_seed: expected int, got 1.5"):
        recipes.override(recipes.Recipe(), ["data.holdout_seed=1.5"])


def test_overrides_parse_yaml_values_and_return_a_new_recipe():
    base = recipes.Recipe()
    changed = recipes.override(base, ["optimizer.lr=0.05", "model.shuffle=false",
                                      "train.mixed_precision=mixed_bfloat16"])
    assert changed.optimizer.lr == 0.05 and changed.model.shuffle is False
    assert changed.train.mixed_precision == "mixed_bfloat16"
    assert base.optimizer.lr == 0.1
    with pytest.raises(ValueError, match="expected section.key=value"):
        recipes.override(base, ["lr=0.1"])


def test_save_and_load_round_trip(tmp_path):
    recipe = recipes.override(recipes.Recipe(), ["model.width=0.5", "data.spec=folder:/x"])
    recipes.save(recipe, tmp_path / "r.yaml")
    assert recipes.load(str(tmp_path / "r.yaml")) == recipe
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]  # no temporary left behind


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe file not found"):
        recipes.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        recipes.load(str(bad))


def test_imagenet_recipes_follow_the_original_papers():
    from mobilecls._tf import keras
    from mobilecls.training.train import LearningRate, make_optimizer

    folder = os.path.join(ROOT, "recipes", "imagenet")
    loaded = {os.path.basename(path)[:-5]: recipes.load(path) for path in glob.glob(os.path.join(folder, "*.yaml"))}
    assert set(loaded) == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                           "shufflenet_v1_g3", "shufflenet_v2"}
    assert all(r.model.input_size == 224 and r.data.spec == "imagenet2012" for r in loaded.values())
    v2 = loaded["mobilenet_v2"]  # RMSprop 0.9/0.9, lr 0.045 x0.98 per epoch, weight decay 4e-5
    assert (v2.optimizer.name, v2.optimizer.lr, v2.optimizer.weight_decay) == ("rmsprop", 0.045, 4e-5)
    assert (v2.schedule.name, v2.schedule.step_epochs, v2.schedule.step_factor) == ("step", 1, 0.98)
    optimizer = make_optimizer(v2, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.RMSprop) and optimizer.rho == 0.9 and optimizer.epsilon == 1.0
    shuffle = loaded["shufflenet_v2"]  # linear decay from 0.5, batch 1024, 3e5 iterations
    assert (shuffle.optimizer.lr, shuffle.schedule.name, shuffle.train.batch_size) == (0.5, "linear", 1024)
    assert shuffle.train.epochs == round(3e5 * 1024 / 1_281_167)
    linear = LearningRate("linear", 0.5, total_steps=100)
    assert [float(linear(step)) for step in (0, 50, 100)] == [0.5, 0.25, 0.0]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "recipes", "**", "*.yaml"), recursive=True)))
def test_every_shipped_recipe_builds_its_model(path):
    # at 32x32 whatever the recipe's input size: the keywords are what is checked, cheaply
    from mobilecls.models import build_model

    recipe = recipes.load(path)
    model = build_model(recipe.model.name, **recipe.model.builder_kwargs(32, 10) | {"input_size": 32})
    assert model.output_shape == (None, 10)


STUDY_PAIRS = {("ablation_mobilenet_v1_separable", "ablation_mobilenet_v1_standard_conv"): ("separable", 0.25),
               ("ablation_shufflenet_v1_g3_shuffle", "ablation_shufflenet_v1_g3_noshuffle"): ("shuffle", 1.0)}


@pytest.mark.parametrize("pair", sorted(STUDY_PAIRS))
def test_study_ablation_pairs_differ_only_in_the_switch(pair):
    switch, width = STUDY_PAIRS[pair]
    first, second = (recipes.load(os.path.join(ROOT, "recipes", "study", f"{name}.yaml")) for name in pair)
    assert (getattr(first.model, switch), getattr(second.model, switch)) == (True, False)
    a, b = first.to_dict(), second.to_dict()
    a["model"].pop(switch), b["model"].pop(switch)
    assert a == b  # width, epochs, schedule, augmentation, seed, QAT: all the same
    # a pair needs the same epochs: fixed, never planned by a time budget per run
    assert first.train.time_budget_minutes is None and first.model.width == width


def test_study_file_names_the_recipes_builds_and_only_missing_runs():
    import yaml

    from mobilecls.reporting import study

    path = os.path.join(ROOT, "study", "cifar10.yaml")
    with open(path, encoding="utf-8") as handle:
        members = yaml.safe_load(handle)["members"]
    recipe_of = {"mobilenet_v1": "ablation_mobilenet_v1_separable",
                 "mobilenet_v1_standard_conv": "ablation_mobilenet_v1_standard_conv",
                 "shufflenet_v1": "ablation_shufflenet_v1_g3_shuffle",
                 "shufflenet_v1_noshuffle": "ablation_shufflenet_v1_g3_noshuffle"}
    for member, name in recipe_of.items():
        recipe = recipes.load(os.path.join(ROOT, "recipes", "study", f"{name}.yaml"))
        build = {k: v for k, v in recipe.model.builder_kwargs(32, 10).items() if k != "dropout"}
        assert members[member]["build"] == build
        assert [run["seed"] for run in members[member]["runs"]] == [0, 1]
    # every run is shipped: the whole study loads, two seeds per member, each from a shipped folder
    made = study.load_study(path)
    assert {member: [run["seed"] for run in spec["runs"]] for member, spec in made.items()} == {
        member: [0, 1] for member in recipe_of}
    assert "../runs/" not in open(path, encoding="utf-8").read()
