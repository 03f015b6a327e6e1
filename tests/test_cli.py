"""The ``cbloss`` command line: parsing, every error path (one line, non-zero exit, no traceback), the numbers
of ``cbloss weights`` against the core, and ``cbloss demo --quick`` end to end (JSON, PNGs, table vs JSON).

Framework-free: runs in nox's tests(numpy) session, which installs the ``demo`` extra.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbloss
from cbloss.cli import main

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m cbloss ARGS`` in a fresh interpreter (the real entry point, exit status and streams)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "cbloss", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300
    )


def assert_one_line_error(stderr: str, code: int, *fragments: str) -> None:
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("cbloss")
    assert "error" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ------------------------------------------------------------------------------------------------------------
# Errors: in-process through main(argv) (fast), and a few through a real subprocess
# ------------------------------------------------------------------------------------------------------------
def call(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse exits
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


BAD_ARGUMENTS = [
    (("demo", "--backend", "caffe"), "caffe"),
    (("demo", "--seeds", "0"), "--seeds"),
    (("demo", "--seeds", "two"), "--seeds"),
    (("demo", "--imbalance", "10,,50"), "--imbalance"),
    (("demo", "--imbalance", "0.5"), "--imbalance"),
    (("demo", "--imbalance", "500"), "--imbalance"),
    (("demo", "--models", "resnet"), "resnet"),
    (("demo", "--normalize", "rows"), "--normalize"),
    (("demo", "--focal-beta", "2"), "beta"),
    (("weights", "--beta", "0.9"), "--counts"),
    (("weights", "--counts", "10,5", "--beta", "1.5"), "beta"),
    (("weights", "--counts", "10,5", "--beta", "-0.1"), "beta"),
    (("weights", "--counts", "10,5", "--beta", "nan"), "NaN"),
    (("weights", "--counts", "10,5", "--beta", "abc"), "beta"),
    (("weights", "--counts", "10,5"), "--beta"),
    (("weights", "--counts", "10,x,5", "--beta", "0.9"), "'x'"),
    (("weights", "--counts", "10,-5", "--beta", "0.9"), "counts"),
    (("weights", "--counts", "10,inf", "--beta", "0.9"), "counts"),
    (("weights", "--counts", "", "--beta", "0.9"), "counts"),
    (("weights", "--counts", "10,0", "--beta", "0.9"), "--zero-count zero"),
    (("weights", "--counts", "10,5", "--num-classes", "3", "--beta", "0.9"), "--num-classes"),
    (("weights", "--counts", "10,5", "--labels", "y.npy", "--beta", "0.9"), "not allowed"),
    (("weights", "--labels", "/no/such/file.npy", "--beta", "0.9"), "no such file"),
    (("weights", "--counts", "10,5", "--beta", "0.9", "--normalize", "max"), "normalize"),
    (("plot",), "effective-number"),
    (("plot", "histogram"), "histogram"),
    (("plot", "effective-number", "--beta", "0.9,1.2"), "beta"),
    (("plot", "effective-number", "-o", "/no/such/dir/fig.png"), "no such folder"),
    (("plot", "effective-number", "-o", "fig.jpg"), ".png"),
    ((), "required"),
    (("frobnicate",), "frobnicate"),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD_ARGUMENTS, ids=[" ".join(a) or "<none>" for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, fragment):
    code, out, err = call(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, code, fragment)


def test_uninstalled_backend_is_one_line_error(capsys, monkeypatch):
    from cbloss.demo import backends

    monkeypatch.setattr(backends, "_installed", lambda module: module in ("numpy",))
    code, _, err = call(capsys, "demo", "--backend", "torch", "--no-plots")
    assert code == 2
    assert_one_line_error(err, code, "torch", "not installed")
    # and the default falls back to numpy when no framework is installed
    assert backends.default_backend() == "numpy"


def test_default_backend_is_first_installed_framework(monkeypatch):
    from cbloss.demo import backends

    monkeypatch.setattr(
        backends, "_installed", lambda module: module.split(".")[0] in ("numpy", "cbloss", "jax", "optax")
    )
    assert backends.default_backend() == "jax"
    monkeypatch.setattr(backends, "_installed", lambda module: True)
    assert backends.default_backend() == "torch"


@pytest.mark.parametrize(
    ("content", "suffix", "fragment"),
    [(b"1,2,x\n", ".csv", "cannot read"), (b"0,1.5,2\n", ".csv", "non-integer"), (b"", ".csv", "no labels"),
     (b"0,1\n", ".json", ".npy, .csv or .txt"), (b"not a npy file", ".npy", "cannot read")],
)  # fmt: skip
def test_bad_label_files(tmp_path, capsys, content, suffix, fragment):
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(content)
    code, _, err = call(capsys, "weights", "--labels", str(path), "--beta", "0.9")
    assert_one_line_error(err, code, fragment)


def test_negative_label_and_too_few_classes(tmp_path, capsys):
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 1, -1]))
    code, _, err = call(capsys, "weights", "--labels", str(path), "--beta", "0.9")
    assert_one_line_error(err, code, ">= 0")
    np.save(path, np.array([0, 1, 4]))
    code, _, err = call(capsys, "weights", "--labels", str(path), "--beta", "0.9", "--num-classes", "3")
    assert_one_line_error(err, code, "--num-classes")


@pytest.mark.parametrize(
    "argv",
    [
        ("demo", "--backend", "caffe"),
        ("weights", "--counts", "3,x", "--beta", "0.9"),
        ("weights", "--counts", "3,1", "--beta", "7"),
        ("weights", "--labels", "missing.npy", "--beta", "0.9"),
    ],
)
def test_errors_through_the_real_entry_point(argv, tmp_path):
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, result.returncode)


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "demo" in result.stdout and "weights" in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and cbloss.__version__ in result.stdout


# ------------------------------------------------------------------------------------------------------------
# cbloss weights: the numbers are the core's
# ------------------------------------------------------------------------------------------------------------
COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999, 1.0])
@pytest.mark.parametrize("normalize", ["classes", "samples", "none"])
def test_weights_json_equals_the_core(capsys, beta, normalize):
    code, out, err = call(
        capsys,
        "weights",
        "--counts",
        ",".join(map(str, COUNTS)),
        "--beta",
        repr(beta),
        "--normalize",
        normalize,
        "--json",
    )
    assert code == 0, err
    record = json.loads(out)
    norm = None if normalize == "none" else normalize
    assert record["counts"] == COUNTS
    assert record["effective_number"] == cbloss.effective_number(np.array(COUNTS, float), beta).tolist()
    assert record["raw_weights"] == cbloss.class_balanced_weights(COUNTS, beta, normalize=None).tolist()
    assert record["weights"] == cbloss.class_balanced_weights(COUNTS, beta, normalize=norm).tolist()
    # independent sanity: w_i = 1 / E_n and the normalisation's defining sum
    np.testing.assert_allclose(np.array(record["raw_weights"]) * record["effective_number"], 1.0, rtol=1e-12)
    if normalize == "classes":
        assert sum(record["weights"]) == pytest.approx(len(COUNTS), rel=1e-12)
    elif normalize == "samples":
        assert np.dot(record["weights"], COUNTS) == pytest.approx(sum(COUNTS), rel=1e-12)


def test_weights_table_matches_the_core(capsys):
    code, out, _ = call(capsys, "weights", "--counts", "100,10,1", "--beta", "0.99")
    assert code == 0
    rows = [line.split("|")[1:-1] for line in out.splitlines() if re.match(r"\|\s*\d", line)]
    table = np.array([[float(x) for x in row] for row in rows])
    np.testing.assert_array_equal(table[:, 1], [100, 10, 1])
    np.testing.assert_allclose(table[:, 2], cbloss.effective_number(np.array([100.0, 10, 1]), 0.99), rtol=1e-9)
    np.testing.assert_allclose(
        table[:, 3], cbloss.class_balanced_weights([100, 10, 1], 0.99, normalize=None), rtol=1e-9
    )
    np.testing.assert_allclose(table[:, 4], cbloss.class_balanced_weights([100, 10, 1], 0.99), rtol=1e-9)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_weights_from_a_label_file(tmp_path, capsys, fmt):
    labels = np.repeat(np.arange(4), [30, 7, 3, 1])
    path = tmp_path / f"labels.{fmt}"
    if fmt == "npy":
        np.save(path, labels)
    else:
        path.write_text(",".join(map(str, labels)) + "\n")
    code, out, err = call(capsys, "weights", "--labels", str(path), "--num-classes", "5", "--beta", "0.9",
                          "--zero-count", "zero", "--json")  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["counts"] == [30, 7, 3, 1, 0]
    expected = cbloss.class_balanced_weights([30, 7, 3, 1, 0], 0.9, zero_count="zero")
    assert record["weights"] == expected.tolist()


def test_plot_effective_number(tmp_path, capsys):
    out_file = tmp_path / "fig.png"
    code, _, err = call(capsys, "plot", "effective-number", "--beta", "0.9,0.99,0.999,0.9999", "-o", str(out_file))
    assert code == 0, err
    assert out_file.read_bytes()[:8] == PNG_MAGIC


def test_importing_cbloss_and_the_cli_stays_light():
    code = (
        "import sys, cbloss, cbloss.cli; "
        "heavy = [m for m in ('torch', 'jax', 'tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stderr


# ------------------------------------------------------------------------------------------------------------
# The demo end to end
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    json_path = out / "numbers.json"
    result = run_cli("demo", "--quick", "--backend", "numpy", "--out", str(out / "pictures"), "--json", str(json_path))
    return result, out / "pictures", json_path


def test_demo_quick_runs_and_writes_json_and_pngs(quick_demo):
    result, pictures, json_path = quick_demo
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "runs" in result.stderr  # the progress bar
    for name in ("per_class_accuracy.png", "effective_number.png", "toy_decision_boundary.png"):
        assert (pictures / name).read_bytes()[:8] == PNG_MAGIC, name
    record = json.loads(json_path.read_text())
    config = record["config"]
    assert config["backend"] == "numpy"
    expected_runs = (
        len(config["models"]) * len(config["imbalance_factors"]) * len(config["seeds"]) * len(config["methods"])
    )
    assert len(record["runs"]) == expected_runs
    for run in record["runs"]:
        counts = np.array(run["counts_by_rank"])
        assert np.all(np.diff(counts) <= 0)
        assert counts[0] == config["n_max"]
        assert counts[-1] == int(np.floor(config["n_max"] / run["imbalance"] + 1e-9))
        if run["weights_by_rank"] is not None:
            method = next(m for m in config["methods"] if m["key"] == run["method"])
            expected = cbloss.class_balanced_weights(counts, method["beta"], normalize=config["normalize"])
            np.testing.assert_allclose(run["weights_by_rank"], expected, rtol=1e-12)
        acc = np.array(run["accuracy_by_rank"])
        # balanced test set: the error is 1 - the mean per-class accuracy
        assert run["error"] == pytest.approx(1 - acc.mean(), abs=1e-12)
    assert record["conclusions"]["text"]


def _parse_table(stdout: str) -> dict:
    """{(model, imbalance, label): [error, head, tail, delta]} as (mean, std) pairs from the printed tables."""
    rows, model = {}, None
    number = r"([+-]?\d+\.\d+) ± (\d+\.\d+)"
    for line in stdout.splitlines():
        m = re.match(r"Model: [^(]*\((\w+)\)", line)
        if m:
            model = m.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.match(number, cells[2]):
            values = [tuple(map(float, re.match(number, c).groups())) if c != "—" else None for c in cells[2:]]
            rows[(model, cells[0], cells[1])] = values
    return rows


def test_printed_table_matches_the_json(quick_demo):
    result, _, json_path = quick_demo
    record = json.loads(json_path.read_text())
    labels = {m["key"]: m["label"] for m in record["config"]["methods"]}
    table = _parse_table(result.stdout)
    n = 0
    for model, blocks in record["summary"].items():
        for imbalance, block in blocks.items():
            for key, entry in block.items():
                printed = table[(model, imbalance, labels[key])]
                for value, metric in zip(
                    printed, ["error", "head_accuracy", "tail_accuracy", "delta_error_vs_ce"], strict=True
                ):
                    if value is None:
                        assert key == "ce"
                        continue
                    assert value[0] == pytest.approx(entry[metric]["mean"], abs=0.005 + 1e-9)
                    assert value[1] == pytest.approx(entry[metric]["std"], abs=0.005 + 1e-9)
                n += 1
    assert n == len(table) > 0
    # and the summary is the runs' own numbers: recompute one cell from the raw runs
    runs = [r for r in record["runs"] if r["model"] == "softmax" and r["imbalance"] == 50 and r["method"] == "ce"]
    errors = 100 * np.array([r["error"] for r in sorted(runs, key=lambda r: r["seed"])])
    assert record["summary"]["softmax"]["50"]["ce"]["error"]["mean"] == pytest.approx(errors.mean())
    assert record["summary"]["softmax"]["50"]["ce"]["error"]["std"] == pytest.approx(errors.std(ddof=1))


def test_conclusions_follow_from_the_numbers(quick_demo):
    result, _, json_path = quick_demo
    record = json.loads(json_path.read_text())
    seeds = len(record["config"]["seeds"])
    for setting in record["conclusions"]["settings"]:
        block = record["summary"][setting["model"]][f"{setting['imbalance']:g}"]
        best = min((k for k in block if k.startswith("cb_")), key=lambda k: block[k]["error"]["mean"])
        assert setting["best_cb"] == best
        delta = np.subtract(block[best]["error"]["values"], block["ce"]["error"]["values"])
        mean, std = delta.mean(), delta.std(ddof=1)
        clear = abs(mean) > max(2 * std / np.sqrt(seeds), 0.2 + 1e-9)
        expected = ("lower" if mean < 0 else "higher") if clear else "unclear"
        assert setting["best_cb_vs_ce"]["verdict"] == expected
        phrase = {"lower": "beats", "higher": "is worse than", "unclear": "is not clearly different from"}[expected]
        assert f"{phrase} plain CE" in result.stdout
