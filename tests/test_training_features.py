"""The trainer's features beyond the loop, end to end on tiny data: zoo models and their
options, architectures from files, models passed in, transfer learning and freezing,
re-initialisation, the airbench recipe's parts (patch whitening, a batch-norm bias group,
Lookahead, EMA, alternating flips, piecewise lr, test-time augmentation), the per-epoch hook,
activation records, and exact resume with all of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_data import make_image_folder
from helpers_training import assert_same_weights, fast_config, tiny_config, without_timing

from scratchcnn.cli import main
from scratchcnn.errors import CheckpointError, ConfigError
from scratchcnn.init import patch_whitening
from scratchcnn.models import build_model, model_config, seed_cnn
from scratchcnn.serialization import load_arrays, load_checkpoint, save_arrays
from scratchcnn.training import TrainConfig, load_toml, resolve_config, train, trainer
from scratchcnn.training.config import FAST_BATCH_SIZE, FAST_LR, FAST_WEIGHT_DECAY
from scratchcnn.training.setup import build_run, init_model, make_batch, prepare_data


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """3 colour classes, 40 + 10 images each, 8x8."""
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def images32(tmp_path_factory) -> Path:
    """3 colour classes, 16 + 4 images each, 32x32: big enough for airbench's grid."""
    root = tmp_path_factory.mktemp("images32")
    return make_image_folder(root, train_per_class=16, test_per_class=4, size=32)


class InterruptAfter:
    """Stands in for the trainer's Ctrl-C flag: "pressed" once ``batches`` batches have run
    (the loop reads ``requested`` once per batch), so a test interrupts mid-epoch exactly."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.reads = 0

    def __enter__(self) -> InterruptAfter:
        return self

    def __exit__(self, *exc) -> None:
        pass

    @property
    def requested(self) -> bool:
        self.reads += 1
        return self.reads >= self.batches


def every_tensor(run_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of a run's last checkpoint: model, optimizer and weight averages."""
    arrays, _ = load_arrays(run_dir / "last.safetensors")
    return arrays


def run_cli(*args: str) -> int:
    return main(["train", "--no-progress", *args])


# --- the fast recipe's settings --------------------------------------------------------------
def test_fast_recipe_takes_airbench93s_settings():
    config = resolve_config("fast")
    assert (config.model, config.model_options, config.epochs, config.val_size) == (
        "airbench",
        {},
        11,
        0,
    )
    assert (config.optimizer, config.momentum, config.nesterov) == ("sgd", 0.85, True)
    assert config.batch_size == FAST_BATCH_SIZE == 512
    assert config.lr == FAST_LR == 0.75 and config.weight_decay == pytest.approx(0.0153 / 11.5)
    assert (config.bn_bias_lr_scale, config.label_smoothing, config.lookahead) == (64.0, 0.2, 10)
    assert config.schedule == "piecewise" and config.lr_knots == ((0, 0.2), (0.23, 1), (1, 0.07))
    assert (config.whiten_init, config.whiten_bias_epochs, config.tta) == (True, 3, 2)
    assert (config.flip, config.alternating_flip) == (True, True)
    assert (config.crop_padding, config.crop_padding_mode) == (2, "reflect")


def test_fast_recipe_steps_equal_airbenchs_summed_loss_steps():
    """The derivation beside the recipe, checked: our SGD with the mean loss, lr 0.75 and
    coupled decay 0.0153 / 11.5 at batch 512 takes exactly the step of airbench's torch SGD
    (summed loss, lr 11.5 / kilostep_scale, per-group decay wd / lr), BN-bias group included,
    under a schedule factor that changes each step."""
    torch = pytest.importorskip("torch")
    from scratchcnn.optim import SGD, ParamGroup
    from scratchcnn.parameter import Parameter

    rng = np.random.default_rng(0)
    batch = FAST_BATCH_SIZE
    bias = Parameter(rng.standard_normal(6), "bias")
    weight = Parameter(rng.standard_normal((4, 3)), "weight")
    ours = SGD(
        [
            ParamGroup([bias], lr_scale=64, weight_decay=FAST_WEIGHT_DECAY / 64),
            ParamGroup([weight]),
        ],
        lr=FAST_LR,
        momentum=0.85,
        nesterov=True,
        weight_decay=FAST_WEIGHT_DECAY,
    )
    # airbench/utils.py train(): kilostep_scale, lr, wd, lr_biases and its param_configs
    kilostep_scale = 1024 * (1 + 1 / (1 - 0.85))
    lr = 11.5 / kilostep_scale
    wd = 0.0153 * batch / kilostep_scale
    torch_bias = torch.tensor(bias.data.copy(), requires_grad=True)
    torch_weight = torch.tensor(weight.data.copy(), requires_grad=True)
    theirs = torch.optim.SGD(
        [
            {"params": [torch_bias], "lr": lr * 64, "weight_decay": wd / (lr * 64)},
            {"params": [torch_weight], "lr": lr, "weight_decay": wd / lr},
        ],
        momentum=0.85,
        nesterov=True,
    )
    initial = [group["lr"] for group in theirs.param_groups]
    for factor in (0.2, 0.6, 1.0, 0.5):
        mean_grads = [rng.standard_normal(bias.data.shape), rng.standard_normal((4, 3))]
        bias.grad, weight.grad = mean_grads
        ours.lr = FAST_LR * factor
        ours.step()
        for group, lr0 in zip(theirs.param_groups, initial, strict=True):
            group["lr"] = lr0 * factor  # LambdaLR scales each group's lr
        torch_bias.grad = torch.tensor(batch * mean_grads[0])  # sum over the batch
        torch_weight.grad = torch.tensor(batch * mean_grads[1])
        theirs.step()
        np.testing.assert_allclose(bias.data, torch_bias.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(weight.data, torch_weight.detach().numpy(), rtol=1e-12)


def test_later_sources_replace_the_model_and_merge_its_options():
    assert resolve_config("fast", None, {"model": "vgg"}).model == "vgg"
    architecture = model_config(seed_cnn(num_classes=3, image_size=8))
    config = resolve_config("fast", {"architecture": architecture})
    assert (config.model, config.model_options, config.architecture) == (None, {}, architecture)
    merged = resolve_config(
        "default",
        {"model": "vgg", "model_options": {"width": 0.5, "dropout": 0.1}},
        {"model_options": {"dropout": 0.2}},
    )
    assert merged.model_options == {"width": 0.5, "dropout": 0.2}
    assert (
        resolve_config(
            "default", {"model": "vgg", "model_options": {"pool": "avg"}}, {"model": "seed_cnn"}
        ).model_options
        == {}
    )


# --- bad settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": "vggx"}, "unknown model 'vggx'; valid models: seed_cnn, vgg, resnet8"),
        ({"model": "vgg", "model_options": {"kernel": 5}}, "model 'vgg' has no option 'kernel'"),
        ({"model": "resnet20", "model_options": {"depth": 8}}, "no option 'depth'"),
        ({"model_options": {"num_classes": 3}}, "'num_classes' is set by the trainer"),
        ({"model_options": "width=2"}, "model_options must be a table of settings"),
        ({"model_options": {"width": float("nan")}}, "model_options.width must be a finite"),
        ({"model": "vgg", "architecture": {"type": "ReLU"}}, "so model cannot be set too"),
        ({"architecture": {"type": "Conv3d"}}, "architecture: top level: unknown layer type"),
        ({"init": "lsuv"}, "unknown init 'lsuv'; valid names are ['he', 'xavier'"),
        ({"freeze": [""]}, "freeze patterns must be non-empty"),
        ({"freeze": "0"}, "freeze must be a list, got '0'"),
        ({"init_from": " "}, "init_from must name a checkpoint file"),
        ({"whiten_bias_epochs": 2}, "but whiten_init is off"),
        ({"whiten_init": True, "whiten_bias_epochs": -1}, "whiten_bias_epochs must be >= 0"),
        ({"bn_bias_lr_scale": 0}, "bn_bias_lr_scale must be > 0"),
        ({"lookahead": -1}, "lookahead must be >= 0, got -1"),
        ({"ema_decay": 1.0}, "ema_decay must be in (0, 1)"),
        ({"lr_knots": [[0, 1], [1, 0]]}, "lr_knots applies to the 'piecewise' schedule, not"),
        (
            {"schedule": "piecewise", "lr_knots": [[0.5, 1], [0.2, 1]]},
            "lr_knots: knot fractions must increase strictly",
        ),
        ({"schedule": "piecewise", "lr_knots": [[0, 1, 2]]}, "lr_knots must be 2 numbers"),
        ({"flip": False, "alternating_flip": True}, "but flip is off"),
        ({"crop_padding_mode": "wrap"}, "unknown crop_padding_mode 'wrap'"),
        ({"tta": 3}, "tta must be one of [0, 1, 2]"),
        ({"record_activations": "yes"}, "record_activations must be true or false"),
    ],
)
def test_bad_settings_name_the_field(values, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(values)
    assert message in str(err.value)


def test_toml_takes_model_options_and_a_model_table(tmp_path):
    nested = tmp_path / "nested.toml"
    nested.write_text(
        '[train]\nmodel = "vgg"\nepochs = 2\n[train.model_options]\nwidth = 0.25\n'
        "channels = [8, 16]\n"
    )
    config = resolve_config("default", load_toml(nested))
    assert config.model_options == {"width": 0.25, "channels": [8, 16]} and config.epochs == 2
    table = tmp_path / "table.toml"
    table.write_text(
        'epochs = 1\n[model]\ntype = "Sequential"\n[[model.layers]]\ntype = "Flatten"\n'
        '[[model.layers]]\ntype = "Linear"\nin_features = 192\nout_features = 3\n'
    )
    config = resolve_config("fast", load_toml(table))
    assert config.model is None and config.architecture["layers"][1]["out_features"] == 3
    both = tmp_path / "both.toml"
    both.write_text('[train]\nmodel = "vgg"\n[model]\ntype = "Flatten"\n')
    with pytest.raises(ConfigError, match="model and a \\[model\\] table are both given"):
        load_toml(both)
    stray = tmp_path / "stray.toml"
    stray.write_text("[train]\nepochs = 1\n[optim]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown top-level keys or tables \\['optim'\\]"):
        load_toml(stray)
    broken = tmp_path / "broken.toml"
    broken.write_text('[model]\ntype = "Linear"\nin_features = 3\n')
    with pytest.raises(ConfigError, match="missing required argument 'out_features'"):
        resolve_config("default", load_toml(broken))


# --- zoo models, options and architectures from the command line ----------------------------
def test_cli_trains_a_zoo_model_with_options_and_saves_its_summary(tiny_data, tmp_path, capsys):
    code = run_cli(
        "--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"), "--val-size", "30",
        "--epochs", "1", "--batch-size", "16", "--run-dir", str(tmp_path), "--name", "vgg",
        "--model", "vgg", "--width", "0.125", "--model-option", "pool=avg",
        "--model-option", "channels=[16, 16, 32]", "--model-option", "dropout=0.1",
    )  # fmt: skip
    assert code == 0
    run = tmp_path / "vgg"
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "vgg"
    assert config["model_options"] == {"width": 0.125, "pool": "avg", "channels": [16, 16, 32],
                                       "dropout": 0.1}  # fmt: skip
    summary = (run / "summary.txt").read_text()
    assert "AvgPool2d" in summary and "Conv2d 3->2 3x3" in summary  # 16 x 0.125 channels
    assert summary.strip() in capsys.readouterr().out
    loaded = load_checkpoint(run / "best.safetensors")
    assert model_config(loaded.model)["layers"][0]["out_channels"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vggx"], "unknown model 'vggx'; valid models: seed_cnn, vgg"),
        (["--model", "vgg", "--model-option", "kernel=5"], "model 'vgg' has no option 'kernel'"),
        (["--width", "2", "--model-option", "width=3"], "model option 'width' is given twice"),
        (["--freeze", "*.bias", "--init", "nope"], "unknown init 'nope'"),
        (["--init-from", "missing.safetensors"], "init_from: no checkpoint at missing"),
    ],
)
def test_cli_refuses_bad_model_settings_before_reading_data(tmp_path, capsys, args, message):
    code = run_cli("--data", str(tmp_path / "no-such-data"), "--run-dir", str(tmp_path), *args)
    assert code == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_option_values_that_do_not_fit_fail_before_the_run_folder(tiny_data, tmp_path, capsys):
    args = ["--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"), "--val-size", "30"]
    args += ["--run-dir", str(tmp_path / "runs")]
    assert run_cli(*args, "--model", "vgg", "--model-option", "pool=median") == 1
    assert "vgg: pool must be one of ('max', 'avg'), got 'median'" in capsys.readouterr().err
    assert run_cli(*args, "--model", "airbench") == 1  # 8x8 images are too small
    assert "airbench: image_size must be >= 25" in capsys.readouterr().err
    assert run_cli(*args, "--model-option", "pool=avg") == 1
    assert "model 'seed_cnn' has no option 'pool'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def small_architecture(num_classes: int = 3) -> dict:
    """A net for 8x8 RGB images in the checkpoint's architecture format."""
    return {
        "type": "Sequential",
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
             "padding": 1},
            {"type": "BatchNorm2d", "num_features": 4, "frozen": ["weight"]},
            {"type": "ReLU"},
            {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Flatten"},
            {"type": "Linear", "in_features": 64, "out_features": num_classes},
        ],
    }  # fmt: skip


def test_cli_trains_an_architecture_from_a_json_file(tiny_data, tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(small_architecture()))
    common = ["--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"), "--epochs", "2",
              "--batch-size", "16", "--val-size", "30",
              "--run-dir", str(tmp_path / "runs")]  # fmt: skip
    assert run_cli(*common, "--name", "json", "--model-config", str(path)) == 0
    run = tmp_path / "runs" / "json"
    config = json.loads((run / "config.json").read_text())
    assert config["model"] is None and config["architecture"] == small_architecture()
    assert "Linear 64->3" in (run / "summary.txt").read_text()
    built = model_config(build_model(small_architecture()))
    assert model_config(load_checkpoint(run / "best.safetensors").model) == built
    capsys.readouterr()

    path.write_text(json.dumps(small_architecture(num_classes=5)))
    assert run_cli(*common, "--name", "bad", "--model-config", str(path)) == 1
    assert "its last layer must output 3 values" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "bad").exists()
    path.write_text(json.dumps({"type": "Sequential", "layers": [{"type": "Linear"}]}))
    assert run_cli(*common, "--name", "bad", "--model-config", str(path)) == 1
    assert "net.json: layers[0] (Linear): missing required argument" in capsys.readouterr().err


# --- a model object, the hook and resume -----------------------------------------------------
def test_a_model_passed_in_trains_stops_on_the_hook_and_resumes_exactly(tiny_data, tmp_path):
    model = build_model(small_architecture(), rng=np.random.default_rng(5))
    model.freeze("0.bias")
    whole = train(tiny_config(tiny_data, tmp_path, name="whole"), model=copy.deepcopy(model))

    seen: list[dict] = []

    def stop_after_first(record: dict) -> bool:
        seen.append(record)
        return record["epoch"] == 1

    config = tiny_config(tiny_data, tmp_path, name="split")
    first = train(config, model=model, on_epoch=stop_after_first)
    run = tmp_path / "split"
    assert first.status == "stopped" and [r["epoch"] for r in first.history] == [1]
    assert seen == [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert (run / "results.json").is_file()  # the best model so far was tested
    saved = json.loads((run / "config.json").read_text())
    architecture = model_config(build_model(small_architecture()))
    architecture["layers"][0]["frozen"] = ["bias"]  # the model's own frozen parameter
    assert saved["architecture"] == architecture and saved["model"] is None

    resumed = train(None, resume=run, on_epoch=seen.append)
    assert resumed.status == "completed" and [r["epoch"] for r in seen] == [1, 2, 3]
    assert_same_weights(every_tensor(run), every_tensor(tmp_path / "whole"))
    assert without_timing(resumed.history) == without_timing(whole.history)
    # frozen all along: the conv's bias is still its initial value
    np.testing.assert_array_equal(every_tensor(run)["model.0.bias"], model[0].bias.data)

    last = train(tiny_config(tiny_data, tmp_path, name="last"), on_epoch=lambda record: True)
    assert last.status == "stopped" and len(last.history) == 1
    whole_hooked = train(
        tiny_config(tiny_data, tmp_path, name="end", epochs=1), on_epoch=lambda record: True
    )
    assert whole_hooked.status == "completed"  # the last epoch: nothing left to stop


def test_a_model_passed_in_is_checked_against_the_settings(tiny_data, tmp_path):
    model = build_model(small_architecture())
    with pytest.raises(ConfigError, match="init='he' re-initialises a model the trainer builds"):
        train(tiny_config(tiny_data, tmp_path, init="he"), model=model)
    with pytest.raises(ConfigError, match="the model's parameters are float64, but dtype is"):
        train(tiny_config(tiny_data, tmp_path), model=model.astype(np.float64))
    with pytest.raises(ConfigError, match="do not pass model= as well"):
        train(None, resume=tmp_path, model=model)
    assert not (tmp_path / "run").exists()


# --- transfer learning and freezing ----------------------------------------------------------
def two_class_folder(root: Path) -> Path:
    """A 2-class dataset for fine-tuning: two of the three colour classes, renamed."""
    source = make_image_folder(root / "source", train_per_class=30, test_per_class=6, seed=3)
    target = root / "two"
    for split in ("train", "test"):
        for old, new in (("blue", "cold"), ("red", "warm")):
            (target / split).mkdir(parents=True, exist_ok=True)
            (source / split / old).rename(target / split / new)
    return target


def test_init_from_loads_matching_tensors_replaces_the_head_and_freezes(
    tiny_data, tmp_path, capsys
):
    base = train(tiny_config(tiny_data, tmp_path, name="base", epochs=2))
    pretrained = every_tensor(base.run_dir)
    two = two_class_folder(tmp_path / "data2")
    args = ["--data", str(two), "--cache-dir", str(tmp_path / "cache2"), "--val-size", "10",
            "--epochs", "2", "--batch-size", "16", "--run-dir", str(tmp_path), "--name", "tuned",
            "--init-from", str(base.run_dir / "best.safetensors"),
            "--freeze", "0", "--freeze", "3.weight"]  # fmt: skip
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "loaded 6 tensors, skipped 2, newly initialised 2" in out
    assert "skipped 9.weight: shape (3, 128) in the checkpoint" in out
    assert "(2, 128) in the model" in out
    run = tmp_path / "tuned"
    transfer = json.loads((run / "transfer.json").read_text())
    assert transfer["init_from"] == str((base.run_dir / "best.safetensors").resolve())
    assert transfer["newly_initialised"] == ["9.weight", "9.bias"]
    assert transfer["frozen"] == ["0.weight", "0.bias", "3.weight"]
    assert sorted(transfer["skipped"]) == ["9.bias", "9.weight"]
    config = json.loads((run / "config.json").read_text())
    assert config["freeze"] == ["0", "3.weight"] and config["init_from"].endswith(
        "best.safetensors"
    )
    tuned = every_tensor(run)
    for frozen in ("model.0.weight", "model.0.bias", "model.3.weight"):
        np.testing.assert_array_equal(tuned[frozen], pretrained[frozen])  # loaded, kept
    assert not np.array_equal(tuned["model.3.bias"], pretrained["model.3.bias"])  # loaded, trained
    assert tuned["model.9.weight"].shape == (2, 128)

    assert run_cli(*args[:-4], "--name", "nothing", "--freeze", "conv1") == 1
    assert "freeze: pattern 'conv1' matches no parameter" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    from scratchcnn.serialization import save_model

    save_model(build_model({"type": "Sequential", "layers": [{"type": "Flatten"}]}), other)
    assert run_cli(*args[:-6], "--name", "other", "--init-from", str(other)) == 1
    assert "init_from: no tensor of the checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "other").exists()


# --- initialisation --------------------------------------------------------------------------
def weights_of(model, kind: str) -> list[np.ndarray]:
    return [m.weight.data for m in model.modules() if type(m).__name__ == kind]


def test_init_redraws_conv_and_linear_weights(tiny_data, tmp_path):
    data = prepare_data(tiny_config(tiny_data, tmp_path))
    built = init_model(tiny_config(tiny_data, tmp_path), data)
    zeros = init_model(tiny_config(tiny_data, tmp_path, init="zeros"), data)
    assert all(not w.any() for w in weights_of(zeros, "Conv2d") + weights_of(zeros, "Linear"))
    small = init_model(tiny_config(tiny_data, tmp_path, init="small_normal"), data)
    flat = np.concatenate([w.ravel() for w in weights_of(small, "Conv2d")])
    assert abs(flat.std() - 0.01) < 0.001
    dirac = init_model(tiny_config(tiny_data, tmp_path, init="dirac"), data)
    first = weights_of(dirac, "Conv2d")[0]  # (32, 3, 3, 3): filter d copies channel d
    assert first[1, 1, 1, 1] == 1 and first.sum() == 3
    for a, b in zip(weights_of(dirac, "Linear"), weights_of(built, "Linear"), strict=True):
        np.testing.assert_array_equal(a, b)  # an identity conv has no linear counterpart
    again = init_model(tiny_config(tiny_data, tmp_path, init="small_normal"), data)
    for a, b in zip(weights_of(small, "Linear"), weights_of(again, "Linear"), strict=True):
        np.testing.assert_array_equal(a, b)  # seeded


# --- the fast recipe's parts -----------------------------------------------------------------
def test_fast_recipe_resumes_mid_epoch_exactly(images32, tmp_path, monkeypatch):
    """Lookahead, EMA, whitening (bias trained for one epoch), the BN-bias group, alternating
    flips, reflect crops, piecewise lr, label smoothing, activation records, TTA: interrupted
    in the middle of epoch 2 and resumed, the run equals the uninterrupted one bit for bit."""
    whole = train(fast_config(images32, tmp_path, name="whole"))
    monkeypatch.setattr(trainer, "_InterruptFlag", lambda: InterruptAfter(batches=9))
    interrupted = train(fast_config(images32, tmp_path, name="split"))
    assert interrupted.status == "interrupted"
    _, meta = load_arrays(tmp_path / "split" / "last.safetensors")
    assert (meta["loop"]["epoch"], meta["loop"]["batch"]) == (1, 2)
    monkeypatch.undo()
    resumed = train(None, resume=tmp_path / "split")
    assert resumed.status == "completed"
    reference = every_tensor(tmp_path / "whole")
    assert {k.split(".")[0] for k in reference} == {"model", "optim", "average"}
    assert_same_weights(every_tensor(tmp_path / "split"), reference)
    assert without_timing(resumed.history) == without_timing(whole.history)
    for name in ("activations.jsonl", "results.json"):
        assert (tmp_path / "split" / name).read_text() == (tmp_path / "whole" / name).read_text()
    environment = json.loads((tmp_path / "split" / "environment.json").read_text())
    assert environment["started"]["backend"] == "fast"
    assert [(r["epoch"], r["batch"]) for r in environment["resumed"]] == [(2, 2)]
    assert json.loads((tmp_path / "whole" / "environment.json").read_text())["resumed"] == []


def test_fast_recipe_parts_do_what_they_say(images32, tmp_path):
    biases: list[np.ndarray] = []
    weights: list[np.ndarray] = []

    def snapshot(record: dict) -> None:
        tensors = every_tensor(tmp_path / "run")
        biases.append(tensors["model.0.bias"])
        weights.append(tensors["model.0.weight"])

    result = train(fast_config(images32, tmp_path), on_epoch=snapshot)
    run = tmp_path / "run"
    tensors = every_tensor(run)
    _, meta = load_arrays(run / "last.safetensors")
    config = fast_config(images32, tmp_path)
    data = prepare_data(config)

    # whitening: the filters of all (here fewer than 5,000) training images, never trained;
    # the bias trains in epoch 1 only
    expected = patch_whitening((24, 3, 2, 2), data.normalizer(data.train_images), 5e-4)
    for weight in weights:
        np.testing.assert_allclose(weight, expected, rtol=1e-5, atol=1e-6)
    assert biases[0].any() and np.array_equal(biases[0], biases[1])
    assert np.array_equal(biases[1], biases[2])

    # the batch-norm biases in a group of their own: lr x 64, decay / 64
    groups = meta["optimizer"]["param_groups"]
    assert groups[0] == {
        "num_params": 6,
        "lr_scale": 64.0,
        "weight_decay": config.weight_decay / 64,
    }
    assert groups[1]["lr_scale"] == 1.0 and groups[1]["weight_decay"] is None

    # Lookahead ends on the slow weights; the EMA's averaged weights are the best model's
    model_keys = [k.removeprefix("model.") for k in tensors if k.startswith("model.")]
    for name in model_keys:
        np.testing.assert_array_equal(
            tensors[f"average.lookahead.{name}"], tensors[f"model.{name}"]
        )
    best = load_checkpoint(run / "best.safetensors").model.state_dict()
    for name in model_keys:
        np.testing.assert_array_equal(best[name], tensors[f"average.ema.{name}"])
    assert not np.array_equal(best["7.weight"], tensors["model.7.weight"])  # averaged != trained

    # piecewise lr: the last step's lr is 0.07 x lr's neighbourhood, the peak in between
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] > lrs[-1] and lrs[-1] < 0.2 * config.lr

    # activation statistics of the initial weights and after every epoch
    records = [json.loads(line) for line in (run / "activations.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert records[0]["layers"][0]["name"] == "gelu1 (after conv1)"

    # TTA: recorded in the model files and used by the final test, plain scores beside it
    assert load_checkpoint(run / "best.safetensors").metadata["tta"] == 1
    results = json.loads((run / "results.json").read_text())
    assert results["tta"] == 1 and "test_accuracy_without_tta" in results


def test_alternating_flip_mirrors_each_image_on_alternate_epochs(images32, tmp_path):
    config = fast_config(images32, tmp_path, crop_padding=0)
    data = prepare_data(config)
    run = build_run(config, data)
    indices = np.arange(len(data.train_labels))
    images, labels = data.train_images, data.train_labels
    first, _ = make_batch(images, labels, run, data.normalizer, 3, indices, epoch=0)
    second, _ = make_batch(images, labels, run, data.normalizer, 3, indices, epoch=1)
    third, _ = make_batch(images, labels, run, data.normalizer, 3, indices, epoch=2)
    plain = data.normalizer(images)
    np.testing.assert_array_equal(first, second[..., ::-1])  # every image, the other way
    np.testing.assert_array_equal(first, third)
    flipped = [not np.array_equal(a, b) for a, b in zip(first, plain, strict=True)]
    assert 0 < sum(flipped) < len(flipped)  # a random half of the images, once
    with pytest.raises(ValueError, match="needs the images' indices"):
        make_batch(images, labels, run, data.normalizer, 3)


def test_the_trainer_flips_by_image_index_and_epoch(images32, tmp_path, monkeypatch):
    from scratchcnn.data import transforms

    seen: dict[int, list[np.ndarray]] = {}
    flip = transforms.AlternatingFlip.__call__

    def recording(self, images, indices, epoch):
        seen.setdefault(epoch, []).append(np.array(indices))
        return flip(self, images, indices, epoch)

    monkeypatch.setattr(transforms.AlternatingFlip, "__call__", recording)
    train(fast_config(images32, tmp_path, lookahead=0, ema_decay=None))
    assert sorted(seen) == [0, 1, 2]
    for batches in seen.values():  # each epoch: every training image once, by its index
        assert sorted(np.concatenate(batches).tolist()) == list(range(48))


def test_bn_bias_lr_scale_and_whitening_need_a_model_that_has_them(tiny_data, tmp_path, capsys):
    with pytest.raises(ConfigError, match="the model has no batch norm"):
        train(tiny_config(tiny_data, tmp_path, bn_bias_lr_scale=64.0))
    linear = {"type": "Linear", "in_features": 192, "out_features": 3}
    architecture = {"type": "Sequential", "layers": [{"type": "Flatten"}, linear]}
    with pytest.raises(
        ConfigError, match="whiten_init needs a model whose first layer is a Conv2d"
    ):
        train(tiny_config(tiny_data, tmp_path, architecture=architecture, whiten_init=True))
    with pytest.raises(ConfigError, match="whiten_init: patch whitening of 3x3x3 patches makes 27"):
        train(tiny_config(tiny_data, tmp_path, whiten_init=True))  # seed_cnn: 32 filters
    assert not (tmp_path / "run").exists()


def test_evaluate_and_predict_use_the_recorded_tta_level(images32, tmp_path, capsys):
    train(fast_config(images32, tmp_path, tta=2, epochs=1))
    capsys.readouterr()  # the training log
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    common = ["evaluate", "--checkpoint", str(run / "best.safetensors"), "--data", str(images32),
              "--cache-dir", str(tmp_path / "cache"), "--json"]  # fmt: skip
    assert main(common) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["tta"] == 2 and default["test_accuracy"] == results["test_accuracy"]
    assert default["test_loss"] == pytest.approx(results["test_loss"])
    assert default["test_loss_without_tta"] == pytest.approx(results["test_loss_without_tta"])
    assert main([*common, "--tta", "0"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["tta"] == 0 and plain["test_loss"] == pytest.approx(
        results["test_loss_without_tta"]
    )
    assert main(common[:-1]) == 0
    assert "test-time augmentation: level 2" in capsys.readouterr().out

    picture = next((images32 / "test" / "red").iterdir())
    predict = ["predict", str(picture), "--checkpoint", str(run / "best.safetensors"), "--json"]
    probabilities = {}
    for level in (None, "2", "0"):
        assert main(predict + ([] if level is None else ["--tta", level])) == 0
        record = json.loads(capsys.readouterr().out)[0]["predictions"]
        probabilities[level] = {p["class"]: p["probability"] for p in record}
    assert probabilities[None] == probabilities["2"] != probabilities["0"]


def test_tampered_averages_or_tta_fields_are_refused(images32, tmp_path):
    train(fast_config(images32, tmp_path, epochs=1))
    arrays, meta = load_arrays(tmp_path / "run" / "last.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_arrays(bad, arrays, {**meta, "averages": {"ema": meta["averages"]["ema"]}})
    with pytest.raises(CheckpointError, match="weight average 'lookahead' that metadata"):
        trainer.load_training_checkpoint(bad)
    save_arrays(bad, arrays, {**meta, "tta": 5})
    with pytest.raises(CheckpointError, match="metadata field 'tta'"):
        load_checkpoint(bad)


def test_the_progress_bar_shows_images_per_second_and_when_the_run_ends(
    tiny_data, tmp_path, capsys
):
    train(tiny_config(tiny_data, tmp_path, epochs=1, progress=True))
    err = capsys.readouterr().err
    assert "img_s=" in err and "run_ends=" in err
    from datetime import datetime

    afternoon, late = datetime(2026, 12, 1, 14, 0, 10), datetime(2026, 12, 1, 23, 59, 30)
    # 120 steps at 0.5 s: a minute on; the date appears only when the run ends on another day
    assert trainer._projected_finish(120, 0.5, now=afternoon) == "14:01"
    assert trainer._projected_finish(120, 0.5, now=late) == "Dec 02 00:00"


def test_compare_refuses_what_pytorchs_side_does_not_mirror(tiny_data, tmp_path):
    from scratchcnn.interop.compare import compare_frameworks

    with pytest.raises(ConfigError, match=r"does not mirror \['ema_decay', 'lookahead'\]"):
        compare_frameworks(tiny_config(tiny_data, tmp_path, lookahead=5, ema_decay=0.9), steps=1)


def test_cli_lr_knots_set_the_piecewise_schedule(tiny_data, tmp_path, capsys):
    args = ["--data", str(tiny_data), "--cache-dir", str(tmp_path / "cache"), "--val-size", "30",
            "--epochs", "2", "--batch-size", "16", "--lr", "0.1", "--run-dir", str(tmp_path),
            "--name", "knots", "--schedule", "piecewise"]  # fmt: skip
    assert run_cli(*args, "--lr-knots", "0:1", "0.5:0.5", "1:0") == 0
    lines = (tmp_path / "knots" / "metrics.jsonl").read_text().splitlines()
    # 90 training images in batches of 16: 6 steps per epoch, 12 in all; an epoch's record
    # holds the lr of its last step, 5 and 11, at 5/12 and 11/12 of the run
    expected = [0.1 * (1 - 0.5 * (5 / 12) / 0.5), 0.1 * (0.5 - 0.5 * (11 / 12 - 0.5) / 0.5)]
    assert [json.loads(line)["lr"] for line in lines] == pytest.approx(expected)
    config = json.loads((tmp_path / "knots" / "config.json").read_text())
    assert config["lr_knots"] == [[0, 1], [0.5, 0.5], [1, 0]]
    with pytest.raises(SystemExit) as err:
        run_cli(*args, "--name", "bad", "--lr-knots", "0.5")
    assert err.value.code == 2 and "expected FRACTION:FACTOR" in capsys.readouterr().err


# --- mixed precision -------------------------------------------------------------------------
def test_mixed_precision_trains_like_float32_and_records_its_scale(images32, tmp_path):
    full = train(fast_config(images32, tmp_path, name="float32"))
    mixed = train(fast_config(images32, tmp_path, name="mixed", precision="mixed"))
    assert [(r["loss_scale"], r["skipped_steps"]) for r in mixed.history] == [(2.0**16, 0)] * 3
    assert "loss_scale" not in full.history[0]
    # float16 copies of the activations change the gradients only in their 4th digit or so
    for a, b in zip(mixed.history, full.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-2)
    _, meta = load_arrays(tmp_path / "mixed" / "last.safetensors")
    assert meta["loop"]["loss_scaler"]["scale"] == 2.0**16


def test_mixed_precision_skips_a_step_with_a_non_finite_gradient(
    images32, tmp_path, monkeypatch, capsys
):
    from scratchcnn.optim import SGD, DynamicLossScaler

    unscale, step = DynamicLossScaler.unscale, SGD.step
    calls = {"unscale": 0, "step": 0}

    def overflow_on_step_8(self, params):
        params = list(params)
        calls["unscale"] += 1
        if calls["unscale"] == 8:
            params[-1].grad[...] = np.inf
        return unscale(self, params)

    def counted_step(self):
        calls["step"] += 1
        return step(self)

    monkeypatch.setattr(DynamicLossScaler, "unscale", overflow_on_step_8)
    monkeypatch.setattr(SGD, "step", counted_step)
    result = train(fast_config(images32, tmp_path, precision="mixed"))
    assert calls == {"unscale": 18, "step": 17}  # 3 epochs of 6 batches, one step skipped
    assert [r["skipped_steps"] for r in result.history] == [0, 1, 0]
    assert [r["loss_scale"] for r in result.history] == [2.0**16, 2.0**15, 2.0**15]
    said = "epoch 2, batch 2: step skipped, a gradient was not finite; loss scale lowered to 32768"
    assert said in capsys.readouterr().out
    assert all(np.isfinite(w).all() for w in every_tensor(tmp_path / "run").values())


def test_mixed_precision_stops_when_the_scale_cannot_help(images32, tmp_path, monkeypatch):
    from scratchcnn.optim import DynamicLossScaler

    original = DynamicLossScaler.unscale

    def always_overflow(self, params):
        params = list(params)
        params[-1].grad[...] = np.nan
        return original(self, params)

    monkeypatch.setattr(DynamicLossScaler, "unscale", always_overflow)
    with pytest.raises(trainer.TrainingDiverged, match="loss scale fell below 1.*'float32'"):
        train(fast_config(images32, tmp_path, precision="mixed", epochs=4))


def test_mixed_precision_resumes_mid_epoch_exactly(images32, tmp_path, monkeypatch):
    whole = train(fast_config(images32, tmp_path, name="whole", precision="mixed"))
    monkeypatch.setattr(trainer, "_InterruptFlag", lambda: InterruptAfter(batches=9))
    train(fast_config(images32, tmp_path, name="split", precision="mixed"))
    monkeypatch.undo()
    resumed = train(None, resume=tmp_path / "split")
    assert_same_weights(every_tensor(tmp_path / "split"), every_tensor(tmp_path / "whole"))
    assert without_timing(resumed.history) == without_timing(whole.history)


def test_mixed_precision_needs_float32_and_the_fast_backend(images32, tmp_path):
    from scratchcnn.backend import use_backend

    with pytest.raises(ConfigError, match="needs dtype 'float32', got dtype 'float64'"):
        fast_config(images32, tmp_path, precision="mixed", dtype="float64")
    with pytest.raises(ConfigError, match="unknown precision 'half'; valid names"):
        fast_config(images32, tmp_path, precision="half")
    with use_backend("reference"), pytest.raises(ConfigError, match="no mixed precision"):
        train(fast_config(images32, tmp_path, precision="mixed"))
    assert not (tmp_path / "run").exists()  # refused before anything was written
