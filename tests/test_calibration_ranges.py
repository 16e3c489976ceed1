"""Quantile activation ranges: a few calibration images with rare large activations no longer set
the int8 range of a tensor for every image (PTQ through the converter, QAT's start, kept in QAT)."""

import numpy as np
import pytest

from mobilecls.export import calibration_ranges as ranges

SPIKE = 40.0  # how much larger the rare images' activations are


def test_the_span_is_the_quantile_of_the_per_image_extremes_widened_to_hold_zero():
    highs = np.arange(1.0, 21.0)  # 20 images whose largest values are 1..20
    lows = -highs / 10
    assert ranges.image_quantile_span(lows, highs, 1.0) == (-2.0, 20.0)  # min / max, as the converter
    # order statistics, never interpolated: 0.95 of 20 images is the 19th smallest maximum
    # (numpy's "lower") and the 2nd smallest minimum ("higher" of the 0.05 quantile)
    assert ranges.image_quantile_span(lows, highs, 0.95) == (pytest.approx(-1.9), 19.0)
    assert ranges.image_quantile_span(lows, highs, 0.5) == (pytest.approx(-1.0), 10.0)
    assert ranges.image_quantile_span(highs, highs + 1, 0.95) == (0.0, 20.0)  # a ReLU-like tensor: 0 kept
    spikes = np.zeros(20)
    spikes[3] = 7.0  # 0 on all images but one: the whole span, not an empty range
    assert ranges.image_quantile_span(np.zeros(20), spikes, 0.9) == (0.0, 7.0)


@pytest.mark.parametrize("bad", [0.4, 1.01, -1, True, "0.9", None])
def test_a_quantile_outside_half_to_one_is_refused(bad):
    with pytest.raises(ValueError, match=r"range quantile must be a number in \[0.5, 1\]"):
        ranges.check_range_quantile(bad)


def _spiky():
    """A 1x1-convolution model and 40 calibration images of which 2 light up its third input channel,
    which only the last output channel reads, SPIKE times as strongly as the others read theirs:
    the pixels span 0..255 on every image (the input's range is the same in every file) and each
    output channel's weights are alike in size (per-channel weight steps are fine), so only the
    activation ranges differ."""
    from mobilecls._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    convolution = keras.layers.Conv2D(6, 1, name="pointwise")
    x = keras.layers.ReLU(name="relu")(convolution(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))
    kernel, bias = convolution.get_weights()
    kernel[0, 0, 2, :] = 0.0
    kernel[0, 0, :, 5] = [0.0, 0.0, SPIKE * np.abs(kernel[0, 0, :2, :5]).max()]
    convolution.set_weights([kernel, bias])
    images = np.random.default_rng(1).uniform(0, 255, (40, 8, 8, 3)).astype("float32")
    images[..., 2] = 0.0
    images[[7, 23], ..., 2] = 255.0
    return model, images


def _scale_of(content, name):
    from mobilecls._tf import Interpreter

    details = Interpreter(model_content=content).get_tensor_details()
    return next(d["quantization"][0] for d in details if name in d["name"] and d["dtype"] == np.int8)


@pytest.fixture(scope="module")
def spiky_files():
    from mobilecls.export.convert import to_tflite

    model, images = _spiky()
    return model, images, {q: to_tflite(model, "int8", calibration=[images], io="int8", range_quantile=q)
                           for q in (1.0, 0.95)}


def test_an_identity_edit_between_calibration_and_quantization_changes_no_byte(spiky_files):
    from mobilecls.export.convert import to_tflite

    model, images, files = spiky_files
    with ranges.calibration_edited(lambda calibrated: calibrated):
        assert to_tflite(model, "int8", calibration=[images], io="int8") == files[1.0]
    assert to_tflite(model, "int8", calibration=[images], io="int8") == files[1.0]  # the hook is gone after


def test_quantile_ranges_leave_the_rare_images_out_and_serve_the_others(spiky_files):
    from mobilecls._tf import keras
    from mobilecls.export.convert import to_tflite
    from mobilecls.runtime import predict_tflite

    model, images, files = spiky_files
    activations = keras.Model(model.inputs, model.get_layer("relu").output).predict(images, verbose=0)
    per_image_max = activations.reshape(40, -1).max(axis=1)
    # the ReLU output's int8 step: the max over all images, or the 0.95 quantile of the images'
    # maxima (of 40: the 38th, here the largest of the ordinary images)
    ordinary = np.setdiff1d(np.arange(40), [7, 23])
    assert _scale_of(files[1.0], "relu") == pytest.approx(per_image_max.max() / 255, rel=1e-4)
    assert _scale_of(files[0.95], "relu") == pytest.approx(per_image_max[ordinary].max() / 255, rel=1e-4)
    assert per_image_max.max() > 30 * per_image_max[ordinary].max()
    # on the 38 ordinary images the clipped file is as close to the float model as a file calibrated
    # on those images alone, and >20x closer than the min / max file
    logits = model.predict(images[ordinary], verbose=0)
    alone = to_tflite(model, "int8", calibration=[images[ordinary]], io="int8")
    error = {name: np.abs(predict_tflite(content, images[ordinary]) - logits).max()
             for name, content in [*files.items(), ("alone", alone)]}
    assert error[0.95] < 1.5 * error["alone"] and error[0.95] * 20 < error[1.0], error


def test_qat_starts_from_the_quantile_ranges_and_keep_ranges_holds_them_through_training():
    from mobilecls._tf import keras
    from mobilecls.optimize.qat import KeepRanges, qat

    model, images = _spiky()
    per_image_max = keras.Model(model.inputs, model.get_layer("relu").output).predict(images, verbose=0)
    expected = float(np.quantile(per_image_max.reshape(40, -1).max(axis=1), 0.9, method="lower"))
    quantized = qat(model, calibration=images, range_quantile=0.9)
    relu_max = next(v for v in quantized.weights if "relu" in v.name and v.name.endswith("output_max:0"))
    assert float(relu_max.numpy()) == pytest.approx(expected, rel=1e-5)

    labels = np.eye(4)[np.arange(40) % 4]
    for keep in (True, False):
        quantized = qat(model, calibration=images, range_quantile=0.9)
        relu_max = next(v for v in quantized.weights if "relu" in v.name and v.name.endswith("output_max:0"))
        quantized.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
        quantized.fit(images, labels, batch_size=40, epochs=3, verbose=0,
                      callbacks=[KeepRanges(quantized)] if keep else [])
        if keep:
            assert float(relu_max.numpy()) == pytest.approx(expected, rel=1e-6)
        else:  # tfmot moves it towards the batch's maximum, which holds a spike image
            assert float(relu_max.numpy()) > expected * 1.02


def test_quantize_refuses_a_quantile_where_nothing_is_calibrated(tmp_path):
    from mobilecls.export.quantize import quantize

    model, _ = _spiky()
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.raises(ValueError, match="--range-quantile .* needs --int8 or --int16x8, not fp16"):
        quantize(path, "fp16", str(tmp_path / "m.tflite"), class_names=list("abcd"), range_quantile=0.9)
    assert not (tmp_path / "m.tflite").exists()


def test_quantize_refuses_a_quantile_for_a_qat_model_whose_ranges_were_trained(tmp_path):
    from mobilecls.export.quantize import quantize
    from mobilecls.optimize.qat import qat

    model, images = _spiky()
    path = str(tmp_path / "qat.h5")
    qat(model, calibration=images).save(path)
    with pytest.raises(ValueError, match="is a QAT model: its activation ranges were trained; --range-quantile"):
        quantize(path, "int8", str(tmp_path / "m.tflite"), class_names=list("abcd"), range_quantile=0.9)
    assert not (tmp_path / "m.tflite").exists()
