"""The ``cbloss`` command line: parsing, every error path (one line, non-zero exit, no traceback), the numbers
of ``cbloss weights`` against the core, and ``cbloss demo --quick`` end to end (JSON, PNGs, table vs JSON),
including its deferred re-weighting rows and the step at which their weights switch. The multi-label task is
tested in tests/test_demo_multilabel.py.

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
    (("demo", "--task", "detection"), "--task"),
    (("demo", "--models", "linear"), "--models"),
    (("demo", "--task", "multi-label", "--models", "softmax"), "--models"),
    (("demo", "--task", "multi-label", "--focal-beta", "0.9"), "--focal-beta"),
    (("demo", "--task", "multi-label", "--imbalance", "500"), "--imbalance"),
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
    (("plot", "effective-number", "--counts", "10,0"), "every count must be > 0"),
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


@pytest.mark.parametrize("labels", [np.array([True, False]), np.array(["0", "1"])], ids=["bool", "str"])
def test_label_arrays_of_no_integers_are_a_usage_error(tmp_path, capsys, labels):
    path = tmp_path / "y.npy"
    np.save(path, labels)
    code, _, err = call(capsys, "weights", "--labels", str(path), "--beta", "0.9")
    assert code == 2
    assert_one_line_error(err, code, "must hold integer class labels, got dtype")


def test_demo_output_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, _, err = call(capsys, "demo", "--quick", "--out", str(afile))
    assert code == 2
    assert_one_line_error(err, code, "exists and is not a folder")


@pytest.mark.parametrize(
    "raised, code, fragment",
    [(KeyboardInterrupt(), 130, "interrupted"), (OSError(28, "No space left on device"), 1, "No space left")],
    ids=["ctrl-c", "oserror"],
)
def test_an_interrupt_or_an_os_error_ends_in_one_line(capsys, monkeypatch, raised, code, fragment):
    """Ctrl-C and a failing write stop the command with one line on stderr, not a traceback."""
    from cbloss import cli

    def fail(args):
        raise raised

    monkeypatch.setitem(cli.COMMANDS, "weights", fail)
    got, out, err = call(capsys, "weights", "--counts", "10,5", "--beta", "0.9")
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("cbloss weights: ") and fragment in err


@pytest.mark.parametrize(
    "labels", [np.array([0, 2**62]), np.array([0, 2**64 - 1], dtype=np.uint64), np.array([0.0, 1e20])], ids=str
)
def test_labels_beyond_int32_are_a_usage_error(tmp_path, capsys, labels):
    """A label is a class index: one of 2**31 or more would size a count array by it (or wrap in int64)."""
    path = tmp_path / "y.npy"
    np.save(path, labels)
    code, _, err = call(capsys, "weights", "--labels", str(path), "--beta", "0.9")
    assert code == 2
    assert_one_line_error(err, code, "--labels: labels must be below 2**31", str(int(labels.max())))


def test_outputs_that_are_folders_are_usage_errors(tmp_path, capsys):
    """Checked before anything runs: a demo must not fail at its end, after the whole experiment."""
    folder = tmp_path / "out.png"
    folder.mkdir()
    code, _, err = call(capsys, "plot", "effective-number", "-o", str(folder))
    assert code == 2
    assert_one_line_error(err, code, "-o/--output", "is a folder")
    code, _, err = call(
        capsys, "demo", "--backend", "numpy", "--quick", "--out", str(tmp_path / "run"), "--json", str(folder)
    )
    assert code == 2
    assert_one_line_error(err, code, "--json", "is a folder")


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_outputs_where_nothing_can_be_written_are_usage_errors_before_the_run(
    tmp_path, capsys, monkeypatch, flag, task
):
    """A folder that cannot be made (below a file) is exit status 2 before the experiment starts, not status 1
    after it."""
    from cbloss.demo import run

    def never(*args, **kwargs):
        raise AssertionError("the experiment ran")

    monkeypatch.setattr(run, "main", never)
    monkeypatch.setattr(run, "main_multilabel", never)
    afile = tmp_path / "afile"
    afile.write_text("")
    where = {"--out": str(afile / "run"), "--json": str(afile / "sub" / "results.json")}
    out = [] if flag == "--out" else ["--out", str(tmp_path / "run")]
    code, _, err = call(capsys, "demo", "--task", task, "--quick", *out, flag, where[flag])
    assert code == 2
    assert_one_line_error(err, code, flag, "cannot make the folder")


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


def test_output_into_a_closed_pipe_stops_quietly():
    """A reader that goes away (``cbloss weights ... | head -1``) ends the command without an error message."""
    counts = ",".join(str(1 + i % 97) for i in range(5000))  # a table far larger than a pipe's buffer
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "cbloss", "weights", "--counts", counts, "--beta", "0.99"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert process.stdout.read(16)
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and err.decode() == ""


def test_plot_effective_number_draws_each_beta_once(tmp_path, monkeypatch):
    """beta = 1 given among the betas is drawn once in each panel (E_n = n, inverse frequency), and fractional
    counts are labelled as given."""
    from matplotlib.figure import Figure

    from cbloss.demo.plots import plot_effective_number

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: drawn.append(figure))
    plot_effective_number([0.9, 1.0], tmp_path / "fig.png", counts=[30, 7, 0.5])
    left, right = drawn[0].axes
    for axes in (left, right):
        labels = [text.get_text() for text in axes.get_legend().get_texts()]
        assert len(labels) == len(set(labels)) == 2, labels
    assert [tick.get_text() for tick in right.get_xticklabels()] == ["30", "7", "0.5"]


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
        method = next(m for m in config["methods"] if m["key"] == run["method"])
        assert (run["weights_by_rank"] is None) == (run["beta"] is None) == (method["kind"] == "ce")
        if run["weights_by_rank"] is not None:
            expected = cbloss.class_balanced_weights(counts, run["beta"], normalize=config["normalize"])
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
    from cbloss.demo.report import row_label

    result, _, json_path = quick_demo
    record = json.loads(json_path.read_text())
    labels = {m["key"]: m["label"] for m in record["config"]["methods"]}
    table = _parse_table(result.stdout)
    n = 0
    for model, blocks in record["summary"].items():
        for imbalance, block in blocks.items():
            for key, entry in block.items():
                printed = table[(model, imbalance, row_label(labels, key, entry))]
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


# ------------------------------------------------------------------------------------------------------------
# Deferred re-weighting (DRW)
# ------------------------------------------------------------------------------------------------------------
def test_full_demo_has_both_drw_rows():
    from cbloss.demo.experiment import DemoConfig

    drw = [m for m in DemoConfig().methods if m.kind == "drw"]
    assert [(m.key, m.beta, m.loss) for m in drw] == [
        ("drw_beta0.9999", 0.9999, "softmax"),
        ("drw_best", None, "softmax"),
    ]


def test_drw_rows_exist_and_switch_in_the_last_quarter(quick_demo):
    result, _, json_path = quick_demo
    record = json.loads(json_path.read_text())
    config = record["config"]
    keys = {m["key"] for m in config["methods"] if m["kind"] == "drw"}
    assert keys == {"drw_best"}  # --quick: the best CB softmax beta, here 0.99 (the full run adds beta=0.9999)
    assert config["steps"] == 100 and config["drw"]["start_step"] == 75
    labels = {m["key"]: m["label"] for m in config["methods"]}
    table = _parse_table(result.stdout)
    for model, blocks in record["summary"].items():
        for imbalance, block in blocks.items():
            runs = [r for r in record["runs"] if r["model"] == model and f"{r['imbalance']:g}" == imbalance]
            # the best CB softmax beta of this setting, by mean test error over the seeds
            cb = [m for m in config["methods"] if m["kind"] == "cb" and m["loss"] == "softmax"]
            best = min(cb, key=lambda m: np.mean([r["error"] for r in runs if r["method"] == m["key"]]))
            for key in keys:
                drw_runs = [r for r in runs if r["method"] == key]
                assert len(drw_runs) == len(config["seeds"])
                assert all(r["drw_start_step"] == 75 for r in drw_runs)
                beta = 0.9999 if key == "drw_beta0.9999" else best["beta"]
                assert all(r["beta"] == beta for r in drw_runs)
                entry = block[key]
                assert entry["beta"] == beta
                # the paired differences are the differences of the per-seed errors
                ce = block["ce"]["error"]["values"]
                np.testing.assert_allclose(entry["delta_error_vs_ce"]["values"],
                                           np.subtract(entry["error"]["values"], ce), atol=1e-9)  # fmt: skip
                if key == "drw_best":
                    start = block[best["key"]]["error"]["values"]
                    assert entry["from_start"] == best["key"]
                    np.testing.assert_allclose(entry["delta_error_vs_from_start"]["values"],
                                               np.subtract(entry["error"]["values"], start), atol=1e-9)  # fmt: skip
                label = labels[key] if key != "drw_best" else f"DRW beta={beta:g} (best CB softmax beta)"
                assert (model, imbalance, label) in table


def test_drw_conclusions_follow_from_the_numbers(quick_demo):
    result, _, json_path = quick_demo
    record = json.loads(json_path.read_text())
    seeds = len(record["config"]["seeds"])
    items = record["conclusions"]["drw"]
    assert len(items) == len(record["config"]["models"]) * len(record["config"]["imbalance_factors"])
    overall = {"lower": 0, "higher": 0, "unclear": 0}
    better_than_start = 0
    for item in items:
        block = record["summary"][item["model"]][f"{item['imbalance']:g}"]
        delta = np.subtract(block[item["method"]]["error"]["values"], block["ce"]["error"]["values"])
        mean, std = delta.mean(), delta.std(ddof=1)
        clear = abs(mean) > max(2 * std / np.sqrt(seeds), 0.2 + 1e-9)
        expected = ("lower" if mean < 0 else "higher") if clear else "unclear"
        assert item["vs_ce"]["verdict"] == expected
        overall[expected] += 1
        if "vs_from_start" in item:
            better_than_start += item["vs_from_start"]["verdict"] == "lower"
    assert record["conclusions"]["overall"]["drw"]["vs_ce"] == overall
    line = next(line for line in record["conclusions"]["text"] if line.startswith("Deferred re-weighting"))
    assert f"beats plain CE clearly in {overall['lower']}, is clearly worse in {overall['higher']}" in line
    assert line in result.stdout
    # the sentence on deferral says what the comparison with CB from the start found
    assert ("does not clearly help" in line) == (better_than_start == 0)


class _RecordingTrainer:
    """A demo backend that records the weights argument of every fit and trains with the NumPy backend."""

    def __init__(self):
        from cbloss.demo import backends

        self.numpy = backends.load("numpy")
        self.calls = []

    def fit(self, layers, x, y, weights, **kwargs):
        self.calls.append((np.array(y), None if weights is None else np.array(weights), kwargs))
        return self.numpy.fit(layers, x, y, weights, **kwargs)


def test_drw_weights_per_step_are_the_schedule(monkeypatch):
    """The experiment hands the backend DeferredReweighting(counts, beta, start)(t) as the weights of step t:
    all ones before the switch, the class-balanced weights from it on."""
    from cbloss.demo import backends
    from cbloss.demo.experiment import DemoConfig, default_methods, drw_start, run_experiment
    from cbloss.schedules import DeferredReweighting

    recorder = _RecordingTrainer()
    monkeypatch.setattr(backends, "load", lambda name: recorder)
    keys = {"ce", "cb_softmax_beta0.9", "cb_softmax_beta0.999", "drw_beta0.9999", "drw_best"}
    methods = [m for m in default_methods() if m.key in keys]
    config = DemoConfig(backend="numpy", models=("softmax",), imbalances=(10.0,), seeds=2, steps=12, methods=methods)
    record = run_experiment(config, progress=False)
    start = drw_start(12)
    assert start == 9  # the last quarter: steps 9, 10, 11
    drw_runs = [r for r in record["runs"] if r["method"].startswith("drw")]
    assert len(drw_runs) == 4
    for run, (y, table, kwargs) in zip(record["runs"], recorder.calls, strict=True):
        if not run["method"].startswith("drw"):
            assert table is None or table.ndim == 1
            continue
        counts = cbloss.count_samples_per_class(y, 10)
        schedule = DeferredReweighting(counts, run["beta"], start=start, normalize="classes")
        assert table.shape == (12, 10) and kwargs["steps"] == 12
        for t in range(12):
            np.testing.assert_array_equal(table[t], schedule(t))
        np.testing.assert_array_equal(table[:start], 1.0)
        balanced = cbloss.class_balanced_weights(counts, run["beta"])
        np.testing.assert_array_equal(table[start:], np.tile(balanced, (12 - start, 1)))
        assert not np.allclose(table[start], 1.0)
    # the best CB softmax beta is the one with the lower mean error of the two
    errors = {k: np.mean([r["error"] for r in record["runs"] if r["method"] == k])
              for k in ("cb_softmax_beta0.9", "cb_softmax_beta0.999")}  # fmt: skip
    best = 0.9 if errors["cb_softmax_beta0.9"] <= errors["cb_softmax_beta0.999"] else 0.999
    assert {r["beta"] for r in drw_runs if r["method"] == "drw_best"} == {best}


def test_numpy_backend_weighs_step_t_with_row_t(monkeypatch):
    from cbloss.demo import backends
    from cbloss.demo.models import init_params

    trainer = backends.load("numpy")
    seen = []
    core = cbloss.class_balanced_loss_and_grad

    def recording(logits, labels, weights, **kwargs):
        seen.append(None if weights is None else np.array(weights))
        return core(logits, labels, weights, **kwargs)

    monkeypatch.setattr(cbloss, "class_balanced_loss_and_grad", recording)
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 64), dtype=np.float32), rng.integers(0, 10, 30)
    table = rng.random((6, 10)) + 0.5
    init = init_params("softmax", 64, 10, seed=0)
    trained = trainer.fit(init, x, y, table, loss="softmax", gamma=None, steps=6, lr=0.05)
    assert len(seen) == 6
    for t in range(6):
        np.testing.assert_array_equal(seen[t], table[t].astype(np.float32))
    # a table of identical rows is the constant vector, bit for bit
    seen.clear()
    constant = trainer.fit(init, x, y, np.tile(table[2], (6, 1)), loss="softmax", gamma=None, steps=6, lr=0.05)
    vector = trainer.fit(init, x, y, table[2], loss="softmax", gamma=None, steps=6, lr=0.05)
    for (w1, b1), (w2, b2) in zip(constant, vector, strict=True):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(trained[0][0], vector[0][0])
