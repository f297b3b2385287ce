"""Nothing lost when the machine fails: a run killed at any moment of a checkpoint's save resumes
from a complete checkpoint to the same losses; a torn pointer, a damaged checkpoint, a full disk
and a second run in the same folder each end in one line (or are survived), never a traceback.

The kills are real SIGKILLs at hooks on the real functions (tests/sqltune_with_seams.py's
KILL_POINTS), in processes forked from one that imported sqltune once; the full disk is a real
tmpfs of a few MB where this machine lets us mount one, else a file size limit (RLIMIT_FSIZE)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import read_metrics, tiny_config, write_config
from sqltune import cli, manifest, rundir
from sqltune_with_seams import KILL_POINTS

TESTS = Path(__file__).resolve().parent


def _cfg(tmp: Path, out: str, **args: object) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp, training_args={"output_dir": str(tmp / out), "max_steps": 4, "save_steps": 2,
                                          "eval_steps": 4, **args})
    cfg["hyperparameters"]["eval"] = {"generate_samples": 0}
    return cfg


def _stored(run: Path) -> dict[int, Path]:
    """The run's stored checkpoint-N folders by step (complete or not)."""
    return {int(p.name.split("-")[1]): p for p in (run / "checkpoints").glob("*/checkpoint-*")}


# ---- atomic writes -------------------------------------------------------------------------------


def test_an_atomic_write_is_whole_or_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / rundir.LATEST
    rundir.write_atomic(path, '{"storage_id": "old"}')
    assert path.read_text() == '{"storage_id": "old"}'

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        rundir.write_atomic(path, '{"storage_id": "new"}')
    assert path.read_text() == '{"storage_id": "old"}'  # untouched, and no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.LATEST]


def test_a_manifest_names_what_is_missing_short_or_damaged(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-2"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 1000)
    (ckpt / "sub" / "rng.pth").write_bytes(b"r" * 10)
    assert "sqltune_manifest.json is missing" in manifest.problem(ckpt)
    manifest.write(ckpt, manifest.entries(ckpt))
    assert manifest.problem(ckpt) is None
    (ckpt / "model.safetensors").write_bytes(b"w" * 999 + b"x")  # same size, one byte flipped
    assert manifest.problem(ckpt) == f"{ckpt / 'model.safetensors'} does not match its checksum (damaged)"
    (ckpt / "model.safetensors").write_bytes(b"w" * 10)
    assert manifest.problem(ckpt) == f"{ckpt / 'model.safetensors'} has 10 bytes, its manifest says 1,000"
    (ckpt / "model.safetensors").write_bytes(b"w" * 1000)
    (ckpt / "sub" / "rng.pth").unlink()
    assert manifest.problem(ckpt) == f"{ckpt / 'sub' / 'rng.pth'} is missing"
    (ckpt / manifest.MANIFEST).write_text('{"files": ')
    assert "is unreadable (JSONDecodeError)" in manifest.problem(ckpt)


# ---- the four failures of the issue --------------------------------------------------------------


def test_a_torn_pointer_resumes_from_the_newest_complete_checkpoint(tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path, "run")
    run = tmp_path / "run"
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    reference = read_metrics(run)
    (run / rundir.LATEST).write_text("")  # what a crash inside a plain write_text leaves
    cfg["hyperparameters"]["training_args"]["max_steps"] = 6
    capsys.readouterr()
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    err = capsys.readouterr().err
    assert f"WARNING sqltune.rundir: {run / rundir.LATEST} is unreadable: taking the newest complete checkpoint" in err
    step4 = _stored(run)[4].parent.name
    assert f"resuming from checkpoint {step4} (checkpoint-4)" in err
    after = read_metrics(run)
    assert [r["step"] for r in after if r["group"] == "training"][-2:] == [5, 6]
    assert after[: len(reference)] == reference  # steps 1-4 were not trained again
    assert json.loads((run / rundir.LATEST).read_text())["steps_completed"] == 6


def test_a_damaged_checkpoint_is_skipped_for_the_previous_one_and_refused_by_evaluate(
        tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path, "run")
    run = tmp_path / "run"
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    stored = _stored(run)
    bad = stored[4] / "optimizer.pt"
    size = bad.stat().st_size
    os.truncate(bad, size // 2)  # an interrupted copy to shared storage
    for command in (["evaluate", "--checkpoint", str(run)], ["predict", "Show the names.", "--checkpoint", str(run)],
                    ["merge", "--checkpoint", stored[4].parent.name, "--output", str(tmp_path / "merged")]):
        capsys.readouterr()
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err.strip()
        assert err.startswith("sqltune: error: --checkpoint: checkpoint ") and f"{bad} has " in err, err
        assert "\n" not in err and "Traceback" not in err
    cfg["hyperparameters"]["training_args"]["max_steps"] = 6
    capsys.readouterr()
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    warning = [line.split("WARNING sqltune.session: ")[1] for line in capsys.readouterr().err.splitlines()
               if "WARNING sqltune.session: " in line]
    assert warning == [f"checkpoint {stored[4].parent.name} is incomplete or damaged: {bad} has "
                       f"{size // 2:,} bytes, its manifest says {size:,}: resuming from "
                       f"checkpoint {stored[2].parent.name} (checkpoint-2) instead"]
    assert [r["step"] for r in read_metrics(run) if r["group"] == "training"][-4:] == [3, 4, 5, 6]


def _mount_tmpfs(where: Path, megabytes: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def checkpoint_mib(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The size of one stored checkpoint of these runs."""
    tmp = tmp_path_factory.mktemp("probe")
    assert cli.main(["train", str(write_config(tmp, _cfg(tmp, "run", max_steps=2)))]) == 0
    return sum(f.stat().st_size for f in _stored(tmp / "run")[2].rglob("*")) / 2**20


@pytest.mark.parametrize("where", ["upload", "trainer"])
def test_a_full_disk_ends_in_one_line_and_leaves_the_disk_as_it_was(tmp_path: Path, where: str, checkpoint_mib: float,
                                                                    capsys) -> None:
    """A real filesystem of a few MB (tmpfs): room for the Trainer's save but not for the stored
    copy ("upload"), or not even for the save ("trainer"). Without the right to mount, the same
    through a file size limit in a subprocess (the Trainer's save then fails)."""
    size = checkpoint_mib
    disk = tmp_path / "disk"
    megabytes = int(size * 1.5) + 1 if where == "upload" else max(1, int(size * 0.5))
    if not _mount_tmpfs(disk, megabytes):
        if where == "upload":
            pytest.skip("cannot mount a tmpfs here; the file size limit case below covers the Trainer's save")
        return _full_disk_by_file_size_limit(tmp_path, size)
    try:
        cfg = _cfg(tmp_path, "unused", output_dir=str(disk / "run"))
        capsys.readouterr()
        assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "Traceback" not in "".join(errors), errors
        err = errors[0][errors[0].index("sqltune: error: "):]  # after a progress bar cut short
        what = f"storing checkpoint-2 in {disk / 'run' / 'checkpoints'}" if where == "upload" else \
            f"saving a checkpoint in {disk / 'run'}"
        assert err.startswith(f"sqltune: error: {what} failed: "), err
        assert "o space left on device" in err and "starts from scratch" in err, err
        assert ("MiB were free there" if where == "upload" else "MiB written before it failed") in err, err
        assert not list((disk / "run").glob("checkpoint-*"))  # the Trainer's local copy is gone
        assert not any((disk / "run" / "checkpoints").iterdir())  # so is the partial stored one
        assert shutil.disk_usage(disk).used < 2**20  # the disk is as it was (metrics lines aside)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _full_disk_by_file_size_limit(tmp_path: Path, size_mib: float) -> None:
    cfg = _cfg(tmp_path, "limited")
    limit = int(size_mib * 2**20 * 0.3)
    done = subprocess.run([sys.executable, str(TESTS / "sqltune_with_seams.py"), "train", str(write_config(tmp_path, cfg))],
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr[-3000:]
    err = errors[0][errors[0].index("sqltune: error: "):]
    assert err.startswith(f"sqltune: error: saving a checkpoint in {tmp_path / 'limited'} failed: File too large"), err
    assert not list((tmp_path / "limited").glob("checkpoint-*"))


def test_a_second_train_in_a_busy_folder_is_refused_and_a_killed_owner_leaves_no_lock(tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path, "run")
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sqltune import rundir
        with rundir.RunFolder(Path({str(run)!r})).owned():
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (run / rundir.LATEST).write_text('{"storage_id": "kept"}')
        for extra in ([], ["--fresh"]):
            capsys.readouterr()
            assert cli.main(["train", str(write_config(tmp_path, cfg)), *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert err == (f"sqltune: error: training_args.output_dir {run} is in use by process {holder.pid} "
                           f"(`-c`, since {json.loads((run / rundir.LOCK).read_text())['started']}): wait for it to "
                           "end or stop it, or give this run another output_dir"), err
        assert (run / rundir.LATEST).read_text() == '{"storage_id": "kept"}'  # --fresh cleared nothing
        assert not (run / rundir.METRICS).exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    assert cli.main(["train", str(write_config(tmp_path, cfg)), "--fresh"]) == 0


# ---- fault injection -----------------------------------------------------------------------------

FORKS = """
import json, os, sys
sys.path.insert(0, {tests!r})
import sqltune_with_seams as seams
from sqltune import cli, session
from sqltune.recipes import sft  # the heavy imports happen once, here; each run is a fork

for point, argv, log in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if point:
            seams.kill_at(point)
        code = cli.main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps([point, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]), flush=True)
"""


def test_killed_at_every_moment_of_a_checkpoint_save_it_resumes_to_the_same_losses(tmp_path: Path) -> None:
    """Each run is SIGKILLed at one moment of its second checkpoint save (the first leaves a
    complete one of that run behind it); the next run resumes from a complete checkpoint. After
    one kill at every moment, a last run ends the training: its losses at every step are those
    of a run never interrupted."""
    max_steps = 2 + 2 * len(KILL_POINTS) + 2
    chain, straight = (write_config(tmp_path / name, _cfg(tmp_path / name, "run", max_steps=max_steps,
                                                              eval_steps=max_steps)) for name in ("chain", "straight"))
    plan = [[None, ["train", str(straight)], str(tmp_path / "straight.log")]]
    plan += [[point, ["train", str(chain)], str(tmp_path / f"chain-{i}.log")] for i, point in enumerate(KILL_POINTS)]
    plan += [[None, ["train", str(chain)], str(tmp_path / "chain-last.log")]]
    done = subprocess.run([sys.executable, "-c", FORKS.format(tests=str(TESTS)), json.dumps(plan)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = [json.loads(line) for line in done.stdout.splitlines()]
    logs = {Path(log).stem: Path(log).read_text() for _, _, log in plan}
    assert codes == [[None, 0], *[[p, -9] for p in KILL_POINTS], [None, 0]], {k: v[-2000:] for k, v in logs.items()}

    run = tmp_path / "chain" / "run"
    for i, point in enumerate([*KILL_POINTS, "last"]):
        log = logs[f"chain-{i}" if point != "last" else "chain-last"]
        assert "Traceback" not in log, log[-3000:]
        if i > 0:  # every run after the first resumed, from a checkpoint that is complete
            resumed = [line.split("resuming from checkpoint ")[1].split()[0] for line in log.splitlines()
                       if "resuming from checkpoint " in line]
            assert len(resumed) == 1, (point, log[-3000:])
            assert manifest.problem(rundir.hf_checkpoint(run / "checkpoints" / resumed[0])) is None

    def losses(folder: Path) -> dict[tuple[str, int], float]:
        rows = read_metrics(folder)
        return {(r["group"], r["step"]): r.get("loss", r.get("eval_loss")) for r in rows}

    ours, theirs = losses(run), losses(tmp_path / "straight" / "run")
    assert set(ours) == set(theirs) and len(theirs) >= max_steps + 1
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    pointer = json.loads((run / rundir.LATEST).read_text())
    assert pointer["steps_completed"] == max_steps
    assert manifest.problem(rundir.hf_checkpoint(run / "checkpoints" / pointer["storage_id"])) is None
    assert uuid.UUID(pointer["storage_id"])
