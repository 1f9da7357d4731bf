"""The command line, run as a user would: a real subprocess."""
import json
import subprocess
import sys

from engine.presets import PRESETS


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def test_presets_lists_one_line_each():
    p = run("presets")
    assert p.returncode == 0
    lines = p.stdout.strip().splitlines()
    from engine.bsde import BSDE_PRESETS
    assert len(lines) == len(PRESETS) + len(BSDE_PRESETS)
    for name, line in zip([*PRESETS, *BSDE_PRESETS], lines):
        assert line.startswith(name) and "%" in line


def test_train_json_prints_events_and_summary():
    p = run("train", "--preset", "mlp", "--epochs", "1", "--train-limit", "640", "--test-limit",
            "500", "--lr", "0.05", "--batch-size", "64", "--seed", "1", "--json")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    kinds = [d.get("type") for d in lines[:-1]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("progress") == 10
    summary = lines[-1]
    assert summary["summary"] is True and summary["status"] == "completed"
    assert 0.5 < summary["test_accuracy"] <= 1.0
    assert summary["train_seconds"] > 0 and summary["images_per_second"] > 0
    assert lines[0]["config"]["train"]["lr"] == 0.05


def test_train_progress_bar_and_summary_on_stderr(tmp_path):
    ck = tmp_path / "w.npz"
    p = run("train", "--preset", "lenet", "--iterations", "3", "--train-limit", "256",
            "--test-limit", "100", "--checkpoint", str(ck))
    assert p.returncode == 0, p.stderr
    assert "ETA" in p.stderr and "test accuracy" in p.stderr and p.stdout == ""
    assert ck.exists()


def test_train_config_file_and_bad_config(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"model": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                                "train": {"iterations": 2}, "dataset": {"name": "digits8"}}))
    p = run("train", "--config", str(good), "--json")
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"model": [{"type": "dense", "units": 0}]}))
    p = run("train", "--config", str(bad))
    assert p.returncode == 2
    assert "layer 1 (dense): units must be between 1 and 65536, got 0" in p.stderr
    assert "Traceback" not in p.stderr
    p = run("train", "--config", str(tmp_path / "missing.json"))
    assert p.returncode == 2 and "cannot read --config" in p.stderr


def test_divergence_exit_code_and_message():
    p = run("train", "--preset", "mlp", "--lr", "1000000", "--iterations", "30",
            "--train-limit", "256", "--test-limit", "100")
    assert p.returncode == 3
    assert "diverged" in p.stderr and "lower the learning rate" in p.stderr


def test_threads_do_not_change_the_numbers():
    """--threads 1 and --threads 2 print the same losses for a conv net (two shards)."""
    args = ("train", "--preset", "student-cnn", "--iterations", "4", "--train-limit", "400",
            "--test-limit", "200", "--batch-size", "64", "--json")
    curves = []
    for threads in ("1", "2"):
        p = run(*args, "--threads", threads)
        assert p.returncode == 0, p.stderr
        curves.append([json.loads(s)["loss"] for s in p.stdout.splitlines()
                       if '"progress"' in s])
    assert len(curves[0]) == 4 and curves[0] == curves[1]


def test_threads_must_be_positive():
    p = run("train", "--preset", "mlp", "--iterations", "1", "--threads", "0")
    assert p.returncode == 2
    assert "--threads" in p.stderr and "at least 1" in p.stderr


def test_ctrl_c_then_resume_continues_exactly(tmp_path):
    """Ctrl-C stops between steps and --checkpoint keeps the training state; --resume takes
    exactly the remaining steps of the uninterrupted run (float64, one thread)."""
    import os
    import signal
    args = ["train", "--preset", "mlp", "--epochs", "40", "--train-limit", "640", "--test-limit",
            "100", "--batch-size", "64", "--seed", "2", "--dtype", "float64", "--threads", "1",
            "--json"]
    whole = run(*args)
    assert whole.returncode == 0, whole.stderr
    ref = [json.loads(s) for s in whole.stdout.splitlines()[:-1]]
    ref = [(d["step"], d["loss"]) for d in ref if d["type"] == "progress"]
    ck = tmp_path / "ck.npz"
    root = str(__import__("pathlib").Path(__file__).parents[2])
    p = subprocess.Popen([sys.executable, "-m", "engine", *args, "--checkpoint", str(ck)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
    seen = []
    for line in p.stdout:          # interrupt once it is well under way
        d = json.loads(line)
        seen.append(d)
        if d.get("type") == "progress" and d["step"] == 50:
            os.kill(p.pid, signal.SIGINT)
    assert p.wait(60) == 0
    first = [(d["step"], d["loss"]) for d in seen if d.get("type") == "progress"]
    assert seen[-1]["status"] == "stopped" and 50 <= len(first) < len(ref)
    second = run("train", "--resume", str(ck), "--threads", "1", "--json")
    assert second.returncode == 0, second.stderr
    lines = [json.loads(s) for s in second.stdout.splitlines()]
    assert lines[0]["type"] == "continued" and lines[0]["step"] == len(first)
    assert lines[-1]["status"] == "completed"
    assert first + [(d["step"], d["loss"]) for d in lines if d.get("type") == "progress"] == ref
    bad = run("train", "--resume", str(ck), "--lr", "0.1")
    assert bad.returncode == 2 and "only --epochs or --iterations" in bad.stderr
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    bad = run("train", "--resume", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--resume" in bad.stderr


def test_train_a_bsde_preset_prints_u0_and_its_error():
    p = run("train", "--preset", "bsde-hjb-d10", "--iterations", "200", "--json")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    assert lines[0]["type"] == "run_started" and lines[0]["config"]["task"] == "bsde"
    assert sum(d.get("type") == "progress" for d in lines) == 200
    s = lines[-1]
    assert s["summary"] and s["reference"] == 2.157022 and s["step"] == 200
    assert abs(s["relative_error"] - abs(s["u0"] - 2.157022) / 2.157022) < 1e-12
    bad = run("train", "--preset", "bsde-hjb-d10", "--iterations", "0")
    assert bad.returncode == 2 and "train.iterations" in bad.stderr
