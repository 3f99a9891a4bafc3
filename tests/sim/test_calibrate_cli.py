"""`flmarket calibrate` on the command line: bad options refused before training, stdout a TOML fragment alone,
--out written atomically, a diverging training reported in one line."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from flmarket.market.errors import MarketError
from flmarket.market.fl.calibrate import LossCurve, PrecisionFit
from flmarket.market.fl.train import LARGEST_LEARNING_RATE as TRAINING_LIMIT
from flmarket.market.fl.train import SGDSettings
from flmarket.sim import calibrate
from flmarket.sim.calibrate import LARGEST_LEARNING_RATE, Calibration, run_calibration
from flmarket.sim.cli import main


def _fake_calibration(rounds: int, providers: int, local_iterations: int, seed: int, **_: object) -> Calibration:
    participation = np.arange(rounds + 1, dtype=np.float64) * providers
    curve = LossCurve(participation, 2.3 / (1.0 + participation), tuple(0.5 for _ in participation), 13.0)
    fit = PrecisionFit(theta0=2.3, theta1=1.0, local_iterations=float(local_iterations), residual_rms=4e-4, points=3)
    return Calibration(curve, fit, rounds, providers, local_iterations, seed)


def _no_training(*args: object, **kwargs: object) -> Calibration:
    raise AssertionError("bad input must be refused before training starts")


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line usage error of `flmarket calibrate ARGV` (exit status 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**64), "1.5", "x"])
def test_seed_outside_the_numpy_range_is_refused_like_run_and_reproduce(seed, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _no_training)
    message = _refusal(["--rounds", "3", f"--seed={seed}"], capsys)
    assert "argument --seed:" in message and seed in message
    assert "[0, 2**63)" in message or "integer" in message


def test_the_largest_seed_is_accepted(monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _fake_calibration)
    assert main(["calibrate", "--rounds", "2", "--seed", str(2**63 - 1)]) == 0
    assert tomllib.loads(capsys.readouterr().out)["learning"]["surrogate"]["theta0"] == 2.3


@pytest.mark.parametrize("rounds", ["1", "0", "-3"])
def test_rounds_too_few_to_fit_are_refused_up_front(rounds, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _no_training)
    message = _refusal(["--rounds", rounds], capsys)
    assert "argument --rounds:" in message and ">= 2" in message and f"got {rounds}" in message


@pytest.mark.parametrize("rate", ["nan", "inf", "-inf", "0", "-0.1", "fast"])
def test_non_finite_or_non_positive_learning_rate_is_refused_up_front(rate, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _no_training)
    message = _refusal(["--rounds", "2", f"--learning-rate={rate}"], capsys)
    assert "argument --learning-rate:" in message and repr(rate) in message
    assert "must be a finite number > 0" in message or "must be a number" in message


def test_stdout_is_the_toml_fragment_alone_and_status_goes_to_stderr(monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _fake_calibration)
    assert main(["calibrate", "--rounds", "2", "--providers", "1"]) == 0
    captured = capsys.readouterr()
    fragment = tomllib.loads(captured.out)["learning"]["surrogate"]
    assert set(fragment) == {"theta0", "theta1", "local_iterations", "update_l1_norm"}
    assert "fit residual RMS" in captured.err


def test_with_out_stdout_is_empty_and_the_file_is_the_fragment(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _fake_calibration)
    out = tmp_path / "c.toml"
    out.write_text("old", encoding="utf-8")  # replaced whole
    assert main(["calibrate", "--rounds", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {out}" in captured.err
    assert tomllib.loads(out.read_text(encoding="utf-8"))["learning"]["surrogate"]["theta1"] == 1.0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.toml"]


@pytest.mark.parametrize("case", ["existing folder", "missing folder", "parent is a file", "trailing slash"])
def test_out_is_checked_before_training(case, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _no_training)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("", encoding="utf-8")
    out = {
        "existing folder": str(tmp_path / "folder"),
        "missing folder": str(tmp_path / "missing" / "c.toml"),
        "parent is a file": str(tmp_path / "file" / "c.toml"),
        "trailing slash": str(tmp_path / "new") + "/",
    }[case]
    message = _refusal(["--rounds", "2", "--out", out], capsys)
    assert "argument --out:" in message and repr(out) in message
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["file", "folder"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch, capsys) -> None:
    """The target turns into a folder while training runs: the rename fails, and the temporary file goes."""
    out = tmp_path / "c.toml"

    def calibration_that_races(*args: object, **kwargs: object) -> Calibration:
        out.mkdir()
        return _fake_calibration(*args, **kwargs)

    monkeypatch.setattr(calibrate, "run_calibration", calibration_that_races)
    assert main(["calibrate", "--rounds", "2", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("flmarket: error: ") and captured.err.count("\n") == 1
    assert [path.name for path in tmp_path.rglob("*")] == ["c.toml"]
    assert out.is_dir()


def test_help_shows_each_default_once(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    (out_line,) = [line for line in text.splitlines() if line.lstrip().startswith("--out")]
    assert "default" not in out_line and "standard output" in out_line
    assert "(default: None)" not in text
    for line in text.splitlines():
        assert line.count("default") <= 1, line


def test_diverging_training_is_one_line_naming_the_learning_rate(capsys) -> None:
    """Real training at a huge learning rate: the weights overflow in round 1 (about 3 s, most of it importing
    torch)."""
    assert main(["calibrate", "--rounds", "2", "--providers", "1", "--learning-rate", "1e6"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (error,) = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("flmarket")]
    assert error.startswith("flmarket: error: --learning-rate: training diverged")
    assert "1000000.0" in error


def test_real_training_prints_a_fragment_that_parses_as_toml(capsys) -> None:
    """End to end on the smallest run the fit accepts (2 rounds, 1 provider): stdout parses as TOML."""
    assert main(["calibrate", "--rounds", "2", "--providers", "1", "--seed", "1"]) == 0
    fragment = tomllib.loads(capsys.readouterr().out)["learning"]["surrogate"]
    assert fragment["theta0"] > 0 and fragment["theta1"] > 0 and fragment["local_iterations"] == 1


def test_more_providers_than_records_names_the_option(capsys) -> None:
    """digits' 1,438 training records cannot make 2,000 shards: the error names --providers, as the others do."""
    assert main(["calibrate", "--rounds", "2", "--providers", "2000"]) == 2
    captured = capsys.readouterr()
    (error,) = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("flmarket")]
    assert error == "flmarket: error: --providers: must be <= the number of samples 1438, got 2000"


# ----------------------------------------------- learning rates above float32's largest number

FLOAT32_MAX = 3.4028234663852886e38


def test_the_limit_is_float32s_largest_number() -> None:
    assert LARGEST_LEARNING_RATE == TRAINING_LIMIT == FLOAT32_MAX == float(np.finfo(np.float32).max)


@pytest.mark.parametrize("rate", ["1e39", "3.4028236e38", "1e300"])
def test_a_learning_rate_above_float32_is_refused_in_one_line(rate, monkeypatch, capsys) -> None:
    """1e39 trained and failed with 'RuntimeError: value cannot be converted to type float without overflow'."""
    monkeypatch.setattr(calibrate, "run_calibration", _no_training)
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--rounds", "2", "--providers", "2", "--learning-rate", rate])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert (
        f"argument --learning-rate: must be a finite number > 0 and at most {FLOAT32_MAX!r} (float32's largest, the "
        f"weights' type), got {rate!r}"
    ) in captured.err


def test_the_largest_learning_rate_is_accepted_and_the_help_states_the_range(monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "run_calibration", _fake_calibration)
    assert main(["calibrate", "--rounds", "2", "--learning-rate", repr(FLOAT32_MAX)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "a number > 0 and at most 3.4028235e+38" in " ".join(capsys.readouterr().out.split())


def test_sgd_settings_refuse_a_learning_rate_the_weights_cannot_take() -> None:
    """The guard behind every other way in (a scenario's learning.learning_rate, reproduce_bgfl, Python)."""
    assert SGDSettings(learning_rate=FLOAT32_MAX).learning_rate == FLOAT32_MAX
    for rate in (1e39, float("inf"), float("nan"), 0.0):
        with pytest.raises(MarketError, match=r"^learning_rate: must be > 0 and at most 3\.4028234663852886e\+38 "):
            SGDSettings(learning_rate=rate)


def test_run_calibration_refuses_it_before_training() -> None:
    """From Python: a MarketError when the backend is built, not torch's RuntimeError in round 1."""
    with pytest.raises(MarketError, match=r"learning_rate: must be > 0 and at most .*got 1e\+39"):
        run_calibration(2, 2, 1, 0, learning_rate=1e39)
