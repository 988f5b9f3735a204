"""Studies on Ray Tune: the study file, one trial, and the smoke study end to end.

The end-to-end tests start one local Ray for the module and run ``studies/smoke.toml`` on
generated images, then check the results table against each trial's own run-folder records.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_data import CLASS_NAMES
from helpers_training import benchmark_script, default_sigint
from PIL import Image

from scratchcnn.cli import main
from scratchcnn.studies.spec import load_study, parse_override
from scratchcnn.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"


def write_study(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the study file --------------------------------------------------------------------------
def test_smoke_study_file_loads_with_its_grid():
    study = load_study(SMOKE)
    assert study.name == "smoke" and study.trial_count() == 2
    assert study.parameter_names == ["lr"] and study.train["batch_size"] == 32
    assert study.train["epochs"] == 2 and study.train["train_subset"] == 400
    # every other field comes from the default recipe
    assert study.train["optimizer"] == TrainConfig().optimizer
    config = study.trial_config({"lr": 0.05}, "/tmp/trials", "t1")
    assert (config.lr, config.batch_size, config.name, config.progress) == (0.05, 32, "t1", False)
    assert config.run_dir == "/tmp/trials"


def test_study_options_and_overrides_apply(tmp_path):
    study = load_study(SMOKE, {"epochs": 5, "data": "elsewhere.zip"})
    assert study.train["epochs"] == 5 and study.train["data"] == "elsewhere.zip"
    changed = study.with_options(num_samples=3, scheduler="asha", max_concurrent=None)
    assert (changed.num_samples, changed.scheduler, changed.max_concurrent) == (3, "asha", None)
    assert changed.trial_count() == 6
    assert type(changed).from_dict(changed.to_dict()) == changed


def test_seed_recipe_study_starts_from_the_seed_recipe(tmp_path):
    path = write_study(
        tmp_path / "s.toml", '[study]\nrecipe = "seed"\n[space]\nlr = { choice = [0.01, 0.02] }\n'
    )
    study = load_study(path)
    assert study.train["batch_size"] == 64 and study.train["schedule"] == "constant"
    assert study.name == "s"


def test_a_table_of_settings_varies_several_fields_together(tmp_path):
    path = write_study(
        tmp_path / "methods.toml",
        """[train]
epochs = 5
[space]
method = { grid = [
    { label = "plain sgd", optimizer = "sgd", momentum = 0.0, nesterov = false },
    { optimizer = "adam", nesterov = false, lr = 0.001, epochs = 7 },
] }
schedule = { grid = ["constant", "cosine"] }
""",
    )
    study = load_study(path)
    method = study.space[0]
    assert method.values == ("plain sgd", "optimizer=adam, nesterov=False, lr=0.001, epochs=7")
    assert study.trial_count() == 4 and study.max_epochs == 7
    config = study.trial_config({"method": method.values[1], "schedule": "constant"}, "r", "t")
    assert (config.optimizer, config.nesterov, config.lr, config.epochs) == (
        "adam",
        False,
        0.001,
        7,
    )
    assert config.momentum == study.train["momentum"] and config.schedule == "constant"
    config = study.trial_config({"method": "plain sgd", "schedule": "cosine"}, "r", "t")
    assert (config.optimizer, config.momentum, config.lr) == ("sgd", 0.0, study.train["lr"])
    assert config.epochs == 5
    assert type(study).from_dict(study.to_dict()) == study


def test_a_table_value_in_a_bundle_is_merged_into_the_base(tmp_path):
    """Model options (a table-valued TrainConfig field) add to the base's instead of replacing
    it; a table holding only a label is the base itself."""
    path = write_study(
        tmp_path / "merge.toml",
        """[train]
model = "vgg"
model_options = { width = 0.5, dropout = 0.1 }
[space]
variant = { grid = [
    { label = "reference" }, { label = "5x5", model_options = { kernel_size = 5 } },
] }
""",
    )
    study = load_study(path)
    config = study.trial_config({"variant": "5x5"}, "r", "t")
    assert config.model_options == {"width": 0.5, "dropout": 0.1, "kernel_size": 5}
    reference = study.trial_config({"variant": "reference"}, "r", "t")
    assert reference.model_options == {"width": 0.5, "dropout": 0.1}
    assert study.trial_count() == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[train]\nlearning_rate = 0.1\n[space]\nlr = { grid = [0.1] }",
            "unknown TrainConfig fields ['learning_rate']",
        ),
        (
            "[space]\nlearning_rate = { grid = [0.1] }",
            "[space] learning_rate: unknown TrainConfig field",
        ),
        (
            "[study]\nsamples = 3\n[space]\nlr = { grid = [0.1] }",
            "unknown [study] keys ['samples']",
        ),
        (
            "[search]\nlr = 1\n[space]\nlr = { grid = [0.1] }",
            "unknown top-level keys or tables ['search']",
        ),
        ("[space]\nlr = { uniform = [0.1, 0.01] }", "needs finite low < high, got [0.1, 0.01]"),
        ("[space]\nlr = { loguniform = [0.0, 0.1] }", "loguniform needs 0 < low < high"),
        ("[space]\nlr = { uniform = [0.1] }", "needs [low, high] (two numbers)"),
        ("[space]\nbatch_size = { uniform = [32, 128] }", "batch_size is int; use { choice"),
        ("[space]\nlr = { grid = [] }", "grid needs a non-empty list"),
        ("[space]\nlr = { grid = [0.1, 'big'] }", "grid value 'big' is not float"),
        ("[space]\nlr = { grid = [0.1, 0.0] }", "lr = 0.0 is not a valid setting: lr must be > 0"),
        ("[space]\nscale = { uniform = [0.0, 2.0] }", "scale = 2.0 is not a valid setting"),
        ("[space]\nlr = { between = [0.1, 0.2] }", "expected one of { grid = [...] }"),
        ("[space]\nlr = 0.1", "expected one of { grid = [...] }"),
        ("[space]\nrun_dir = { grid = ['a'] }", "the sweep sets run_dir itself"),
        (
            "[train]\nname = 'x'\n[space]\nlr = { grid = [0.1] }",
            "['name'] cannot be set in a study",
        ),
        (
            "[train]\nepochs = 'ten'\n[space]\nlr = { grid = [0.1] }",
            "epochs must be int, got 'ten'",
        ),
        ("[study]\nsearch = 'optuna'\n[space]\nlr = { grid = [0.1] }", "Optuna cannot search"),
        (
            "[study]\nscheduler = 'hyperband'\n[space]\nlr = { grid = [0.1] }",
            "scheduler must be one of ['fifo', 'asha']",
        ),
        (
            "[study]\nnum_samples = 0\n[space]\nlr = { grid = [0.1] }",
            "num_samples must be >= 1, got 0",
        ),
        (
            "[study]\nscheduler = 'asha'\ngrace_period = 9\n[train]\nepochs = 3\n"
            "[space]\nlr = { grid = [0.1] }",
            "grace_period (9 epochs) exceeds",
        ),
        ("[train]\nepochs = 2\n", "the search space is empty"),
        ("[space]\n", "the search space is empty"),
        ("[space\nlr = 1", "not valid TOML"),
        ("[space]\nvariant = { grid = [{}] }", "sets no field and has no label"),
        (
            "[space]\nvariant = { grid = [{ model_options = { kernel = 5 } }] }",
            "model 'seed_cnn' has no option 'kernel'",
        ),
        ("[space]\nlr_knots = { grid = [[[0.5, 1.0]]] }", "lr_knots applies to the 'piecewise'"),
    ],
)
def test_bad_study_files_say_what_is_wrong(tmp_path, text, message):
    path = write_study(tmp_path / "bad.toml", text)
    with pytest.raises(ValueError) as err:
        load_study(path)
    assert message in str(err.value)
    assert str(path) in str(err.value) or "--set" in str(err.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        load_study(SMOKE, {"epoch": 3})
    with pytest.raises(ValueError, match="--set expects FIELD=VALUE"):
        parse_override("epochs")
    with pytest.raises(FileNotFoundError, match="no study file"):
        load_study(tmp_path / "missing.toml")


def test_parse_override_reads_toml_values_and_plain_paths():
    assert parse_override("lr=0.1") == ("lr", 0.1)
    assert parse_override("flip=false") == ("flip", False)
    assert parse_override('optimizer="adam"') == ("optimizer", "adam")
    assert parse_override("data=../data/cifar10.zip") == ("data", "../data/cifar10.zip")


# --- one trial, without Ray ------------------------------------------------------------------
def make_noisy_image_folder(root: Path, train_per_class: int, test_per_class: int) -> Path:
    """Like ``helpers_data.make_image_folder`` (class k brightens channel 2 - k), with a faint
    signal in strong noise, so that two epochs do not reach 100% and trials differ."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 220, size=(8, 8, 3))
                pixels[..., 2 - label] += 20
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """600 training and 30 test images of 3 colour classes, 8x8."""
    root = tmp_path_factory.mktemp("sweep-data") / "images"
    return make_noisy_image_folder(root, train_per_class=200, test_per_class=10)


def tiny_config(images: Path, tmp_path: Path, **changes) -> TrainConfig:
    values = dict(
        data=str(images), cache_dir=str(tmp_path / "cache"), val_size=60, train_subset=120,
        epochs=2, batch_size=32, warmup_epochs=0.0, run_dir=str(tmp_path / "trials"),
        name="t0", progress=False,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def test_trial_reports_every_epoch_and_replays_a_finished_run(images, tmp_path):
    from scratchcnn.studies.trial import follow_training, read_trial_record

    config = tiny_config(images, tmp_path)
    run_dir = tmp_path / "trials" / "t0"
    reported: list[dict] = []
    recorded_when_reported = []  # was trial.json written when each epoch was reported?

    def report(epoch_record: dict) -> None:
        reported.append(epoch_record)
        recorded_when_reported.append((run_dir / "trial.json").is_file())

    record = follow_training(config, 1, report)
    written = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert reported == written and [r["epoch"] for r in reported] == [1, 2]
    # the last epoch is reported only once the run is tested and recorded (a scheduler that
    # stops the trial then loses nothing)
    assert recorded_when_reported[-1]
    assert record == read_trial_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 2 and record["seconds"] > 0
    tested = json.loads((run_dir / "results.json").read_text())
    assert record["test_accuracy"] == tested["test_accuracy"]

    # A finished trial that Ray runs again (a restored study) reports its records, no training.
    stamp = (run_dir / "results.json").stat().st_mtime_ns
    again: list[dict] = []
    assert follow_training(config, 1, again.append) == record
    assert again == written and (run_dir / "results.json").stat().st_mtime_ns == stamp


def test_trial_out_of_memory_gets_a_clear_error(images, tmp_path, monkeypatch):
    from scratchcnn.studies import trial
    from scratchcnn.training import trainer

    def no_memory(config, resume=None, **hooks):
        raise MemoryError("Unable to allocate 80.0 GiB for an array")

    monkeypatch.setattr(trainer, "train", no_memory)
    config = tiny_config(images, tmp_path, batch_size=64)
    with pytest.raises(trial.TrialOutOfMemory) as err:
        trial.follow_training(config, 2, lambda record: None)
    message = str(err.value)
    assert "out of memory" in message and "batch_size 64" in message
    assert "--max-concurrent" in message
    record = trial.read_trial_record(tmp_path / "trials" / "t0")
    assert record["status"] == "error" and record["error"] == message
    assert "Unable to allocate" in record["traceback"]


def test_ray_out_of_memory_kill_is_explained():
    pytest.importorskip("ray")
    from ray.exceptions import OutOfMemoryError

    from scratchcnn.studies.progress import summarize_ray_error

    text = f"Traceback ...\nray.exceptions.{OutOfMemoryError.__name__}: Task was killed due to "
    text += "the node running low on memory.\n"
    assert "--max-concurrent" in summarize_ray_error(text)
    assert summarize_ray_error("Traceback\nValueError: bad lr\n") == "ValueError: bad lr"


def fast_backend_workers() -> int:
    """The fast backend's worker count in the current scope."""
    from scratchcnn.fast import current_settings

    return current_settings().workers


def test_trial_threads_match_blas_and_fast_workers_to_the_cpus():
    from threadpoolctl import threadpool_info

    from scratchcnn.studies.trial import trial_threads

    before = fast_backend_workers()
    with trial_threads(3):
        assert fast_backend_workers() == 3
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(n == 3 for n in blas)
    assert fast_backend_workers() == before
    with pytest.raises(ValueError, match="cpus must be >= 1"):
        with trial_threads(0):
            pass


# --- the CLI before Ray starts ---------------------------------------------------------------
def test_unreachable_address_is_reported_within_seconds(tmp_path, capsys):
    pytest.importorskip("ray.tune")
    out = tmp_path / "study"
    started = time.monotonic()
    code = main(["sweep", str(SMOKE), "--address", "127.0.0.1:9", "--out", str(out)])
    assert code == 1 and time.monotonic() - started < 15
    assert "no Ray cluster answers at 127.0.0.1:9" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_cli_rejects_a_bad_study_before_starting(tmp_path, capsys):
    path = write_study(tmp_path / "bad.toml", "[space]\nlr = { loguniform = [-1.0, 0.1] }\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "loguniform needs 0 < low < high" in capsys.readouterr().err
    assert main(["sweep", str(SMOKE), "--num-samples", "0", "--out", str(tmp_path / "o")]) == 1
    assert "num_samples must be >= 1" in capsys.readouterr().err
    assert main(["sweep", "--summarize", str(tmp_path)]) == 1
    assert "is not a study folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- on Ray ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    pytest.importorskip("ray.tune")
    from scratchcnn.studies.sweep import connect_ray

    with connect_ray():
        yield


@pytest.fixture(scope="module")
def smoke_study(ray_session, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "study"
    cache = out.parent / "cache"
    args = ["sweep", str(SMOKE), "--set", f"data={images}", "--set", f"cache_dir={cache}",
            "--max-concurrent", "2", "--out", str(out)]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    (out.parent / "printed.txt").write_text(printed.getvalue())
    return out


# the seed CNN for 8x8 images and 3 classes: conv 3->32, conv 32->64, linear 64*2*2 -> 128 -> 3
SMOKE_PARAMETERS = (27 * 32 + 32) + (288 * 64 + 64) + (256 * 128 + 128) + (128 * 3 + 3)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_study_results_match_each_trials_records(smoke_study):
    out = smoke_study
    table = read_csv(out / "results.csv")
    document = json.loads((out / "results.json").read_text())
    assert len(table) == len(document["trials"]) == 2
    assert {float(r["lr"]) for r in table} == {0.01, 0.05}
    tune_seen = json.loads((out / "trials.json").read_text())
    for row, full in zip(table, document["trials"], strict=True):
        run_dir = out / row["folder"]
        assert row["trial"] == full["trial"] == run_dir.name and row["status"] == "completed"
        config = json.loads((run_dir / "config.json").read_text())
        assert (config["lr"], config["batch_size"]) == (float(row["lr"]), 32)
        assert full["config"] == config and config["epochs"] == 2 and config["train_subset"] == 400
        history = [
            json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        best = max(history, key=lambda r: r["val_accuracy"])
        assert float(row["best_val_accuracy"]) == full["best_val_accuracy"] == best["val_accuracy"]
        assert int(row["best_epoch"]) == best["epoch"] and int(row["epochs_run"]) == 2
        tested = json.loads((run_dir / "results.json").read_text())
        assert float(row["test_accuracy"]) == full["test_accuracy"] == tested["test_accuracy"]
        trial = json.loads((run_dir / "trial.json").read_text())
        assert float(row["seconds"]) == pytest.approx(trial["seconds"])
        # Ray Tune was told about every epoch as it ended
        assert tune_seen[row["trial"]]["epochs"] == 2
        assert tune_seen[row["trial"]]["params"] == {"lr": config["lr"]}
        assert row["optimizer"] == config["optimizer"] and row["data"] == config["data"]
        assert int(row["parameters"]) == SMOKE_PARAMETERS


def test_smoke_study_shows_its_progress(smoke_study):
    printed = (smoke_study.parent / "printed.txt").read_text()
    assert "study smoke: 2 trial(s) over lr; 1 CPU(s) each" in printed
    for row in read_csv(smoke_study / "results.csv"):
        assert f"trial {row['trial']} started: lr={float(row['lr']):.4g}" in printed
        assert f"trial {row['trial']} completed: lr=" in printed
    assert "[1/2] trial" in printed and "[2/2] trial" in printed
    assert "2 trial(s) in" in printed and "0 failed" in printed


def test_smoke_study_draws_its_summary_and_links_every_trial(smoke_study):
    from PIL import Image

    with Image.open(smoke_study / "summary.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 400
    page = (smoke_study / "report.html").read_text()
    for row in read_csv(smoke_study / "results.csv"):
        assert f'href="{row["folder"]}"' in page
    for anchor in ("settings", "results", "summary", "curves", "gradient-flow", "best"):
        assert f'<section id="{anchor}">' in page


def test_summarize_redraws_the_same_table(smoke_study, capsys):
    before = (smoke_study / "results.csv").read_text()
    (smoke_study / "results.csv").unlink()
    (smoke_study / "summary.png").unlink()
    assert main(["sweep", "--summarize", str(smoke_study)]) == 0
    assert (smoke_study / "results.csv").read_text() == before
    assert (smoke_study / "summary.png").is_file()


def test_zoo_table_script_tabulates_a_study_from_its_trials(smoke_study, tmp_path, capsys):
    """``benchmarks/zoo_table.py``: one row per trial with the trained model's size and the
    trial's own accuracy and time, a Markdown table and the two-panel figure."""
    script = benchmark_script("zoo_table")
    table, figure = tmp_path / "zoo.json", tmp_path / "zoo.png"
    assert script.main([str(smoke_study), "--output", str(table), "--figure", str(figure)]) == 0
    rows = json.loads(table.read_text())
    expected = {row["trial"]: row for row in read_csv(smoke_study / "results.csv")}
    assert sorted(row["trial"] for row in rows) == sorted(expected)
    for row in rows:
        trial = expected[row["trial"]]
        assert row["parameters"] == int(trial["parameters"])
        assert row["test_accuracy"] == pytest.approx(float(trial["test_accuracy"]))
        assert row["wall_minutes"] == pytest.approx(float(trial["seconds"]) / 60, abs=0.01)
        assert row["epochs"] == 2 and row["train_images"] == 400 and row["model"] == "seed_cnn"
        assert row["mflops"] > 0
    printed = capsys.readouterr().out
    assert printed.count("| seed_cnn |") == len(rows)
    assert figure.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileNotFoundError, match="not a study folder"):
        script.read_rows(tmp_path)


def test_resuming_a_finished_study_reruns_no_trial(smoke_study, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in smoke_study.glob("trials/*/results.json")}
    assert len(stamps) == 2
    assert main(["sweep", "--resume", str(smoke_study)]) == 0
    assert "2 finished trial(s) kept" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(read_csv(smoke_study / "results.csv")) == 2


def test_a_study_folder_is_not_overwritten(smoke_study, capsys):
    assert main(["sweep", str(SMOKE), "--out", str(smoke_study)]) == 1
    assert "already holds a study; continue it with --resume" in capsys.readouterr().err


def test_a_failing_trial_is_reported_and_the_others_finish(ray_session, images, tmp_path, capsys):
    path = write_study(
        tmp_path / "failing.toml",
        f"""[train]
data = "{images}"
cache_dir = "{tmp_path / "cache"}"
val_size = 60
epochs = 1
[space]
train_subset = {{ grid = [60, 100000] }}
""",
    )
    out = tmp_path / "study"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    rows = {int(r["train_subset"]): r for r in read_csv(out / "results.csv")}
    assert rows[60]["status"] == "completed" and float(rows[60]["test_accuracy"]) >= 0
    assert rows[100000]["status"] == "error"
    assert "train_subset must be in [1, 540] (600 training images, 60 for" in rows[100000]["error"]
    assert f"trial {rows[100000]['trial']} failed: ConfigError: train_subset" in printed


@pytest.mark.slow
def test_optuna_search_with_asha_stays_in_the_space(ray_session, images, tmp_path):
    path = write_study(
        tmp_path / "asha.toml",
        f"""[study]
search = "optuna"
scheduler = "asha"
num_samples = 4
grace_period = 1
reduction_factor = 2
[train]
data = "{images}"
cache_dir = "{tmp_path / "cache"}"
val_size = 60
train_subset = 120
epochs = 3
nesterov = false    # the default recipe's Nesterov momentum is for SGD only
[space]
lr = {{ loguniform = [0.001, 0.1] }}
optimizer = {{ choice = ["sgd", "rmsprop"] }}
""",
    )
    out = tmp_path / "study"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4
    for row in rows:
        assert 0.001 <= float(row["lr"]) <= 0.1 and row["optimizer"] in ("sgd", "rmsprop")
        assert row["status"] in ("completed", "stopped")
        assert 1 <= int(row["epochs_run"]) <= 3
        assert (int(row["epochs_run"]) == 3) == (row["status"] == "completed")


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_rerunning_finished_trials(images, tmp_path):
    """Ctrl-C (SIGINT) stops the sweep process mid-study; --resume finishes the rest."""
    import os
    import signal
    import subprocess
    import sys

    path = write_study(
        tmp_path / "long.toml",
        f"""[study]
max_concurrent = 1
[train]
data = "{images}"
cache_dir = "{tmp_path / "cache"}"
val_size = 60
train_subset = 300
epochs = 4
[space]
lr = {{ grid = [0.01, 0.02, 0.03] }}
""",
    )
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "scratchcnn", "sweep", str(path), "--out", str(out)]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/trial.json")) and time.monotonic() < deadline:
        time.sleep(0.5)  # wait for the first trial to finish
    process.send_signal(signal.SIGINT)
    printed = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, printed
    assert "continue with: scratchcnn sweep --resume" in printed
    finished = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/results.json")}
    assert 1 <= len(finished) < 3

    resumed = subprocess.run(
        [sys.executable, "-m", "scratchcnn", "sweep", "--resume", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = read_csv(out / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    for row in rows:
        history = (out / row["folder"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in history] == [1, 2, 3, 4]


def test_every_study_file_in_the_repository_loads():
    """The write-up's study files must stay valid as TrainConfig changes: each loads, and every
    trial of its grid makes a valid training config."""
    paths = sorted((ROOT / "studies").glob("*.toml"))
    assert {p.stem for p in paths} >= {"architecture", "initialisation", "parameters", "smoke"}
    for path in paths:
        study = load_study(path)
        assert study.trial_count() >= 1, path
        grids = [p for p in study.space if p.kind == "grid"]
        for parameter in grids:
            for value in parameter.values:
                config = study.trial_config({parameter.field: value}, "r", "t")
                assert isinstance(config, TrainConfig)
