"""The command line's refusals and its handling of a scenario whose set-up fails, with made-up
scenarios that time nothing; the machine facts the results keep (filesystem type, git state)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import cli, machine
from benchmarks.suite import Case, Metric, Plan, Scenario


class Steady(Scenario):
    """Two systems answering a fixed rate at once."""

    name = "steady"
    title = "Steady"
    about = "Made-up figures."
    metrics = (Metric("rate", "ops/s", "/s", "higher"),)

    def cases(self, plan: Plan) -> list[Case]:
        return [
            Case(
                {"size": 1},
                {"actorstate": lambda number: {"rate": 100.0}, "baseline": lambda number: {"rate": 50.0}},
                baseline="baseline",
            )
        ]


class BrokenSetUp(Steady):
    """A scenario whose set-up (a template, npm ci) raises."""

    name = "broken"

    def cases(self, plan: Plan) -> list[Case]:
        raise OSError("no space left on device")


@pytest.fixture
def fake_scenarios(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "SCENARIOS", {"broken": BrokenSetUp, "steady": Steady})
    monkeypatch.setattr(cli, "RESULTS", str(tmp_path / "results"))


def _exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    return int(stopped.value.code or 0)


def test_a_failed_set_up_is_that_scenarios_failure_and_the_others_run(
    fake_scenarios: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario whose cases() raises is recorded as its failure ("setting up: ..."), listed in
    the report and on stderr, exit status 1; the next scenario still runs and is measured."""
    out = tmp_path / "run"
    status = cli.main(["--quick", "--reps", "1", "--out", str(out)])
    assert status == 1
    results = json.loads((out / "results.json").read_text())
    assert results["scenarios"]["broken"]["failure"] == "setting up: OSError: no space left on device"
    assert results["scenarios"]["steady"]["cases"][0]["systems"]["actorstate"]["runs"] == [{"rate": 100.0}]
    assert "broken: setting up: OSError" in (out / "report.md").read_text()
    assert "FAILED: broken: setting up" in capsys.readouterr().err


def test_out_naming_the_compare_folder_is_refused(fake_scenarios: None, tmp_path: Path) -> None:
    """--compare OLD --out OLD would rewrite OLD while the run goes and compare the run with
    itself: refused with exit status 2, OLD left as it was."""
    old = tmp_path / "old"
    assert cli.main(["--quick", "--reps", "1", "--scenario", "steady", "--out", str(old)]) == 0
    before = (old / "results.json").read_text()
    assert _exit_status(["--quick", "--scenario", "steady", "--compare", str(old), "--out", str(old)]) == 2
    assert _exit_status(["--quick", "--compare", str(old), "--out", str(old) + "/."]) == 2
    assert (old / "results.json").read_text() == before


def test_compare_after_a_run_reads_the_old_results_before_it(fake_scenarios: None, tmp_path: Path) -> None:
    """--compare OLD compares with OLD as it was when the run started: a regression against it is
    found (exit 1) even though OLD's folder changes during the run."""
    old = tmp_path / "old"
    assert cli.main(["--quick", "--reps", "1", "--scenario", "steady", "--out", str(old)]) == 0
    as_run = (old / "results.json").read_text()
    results = json.loads(as_run)
    results["scenarios"]["steady"]["cases"][0]["systems"]["actorstate"]["runs"] = [{"rate": 200.0}]
    (old / "results.json").write_text(json.dumps(results))

    class Rewriting(Steady):
        """Puts OLD back to figures equal to this run's while the run goes."""

        def cases(self, plan: Plan) -> list[Case]:
            (old / "results.json").write_text(as_run)
            return super().cases(plan)

    cli.SCENARIOS["steady"] = Rewriting
    new = tmp_path / "new"
    status = cli.main(
        ["--quick", "--reps", "1", "--scenario", "steady", "--out", str(new), "--compare", str(old)]
    )
    assert status == 1


def test_out_must_be_a_new_or_empty_folder(fake_scenarios: None, tmp_path: Path) -> None:
    """--out naming a file or a folder with something in it is refused (exit 2); an empty folder
    is fine."""
    afile = tmp_path / "file"
    afile.write_text("x")
    assert _exit_status(["--quick", "--out", str(afile)]) == 2
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert _exit_status(["--quick", "--out", str(full)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--quick", "--reps", "1", "--scenario", "steady", "--out", str(empty)]) == 0


def test_a_quick_run_is_not_compared_with_a_full_one(fake_scenarios: None, tmp_path: Path) -> None:
    """--compare of a quick run with a full one is refused on the command line (exit 2), before
    anything runs, both for two folders and for a run against a folder."""
    quick, full = tmp_path / "quick", tmp_path / "full"
    assert cli.main(["--quick", "--reps", "1", "--scenario", "steady", "--out", str(quick)]) == 0
    assert cli.main(["--reps", "1", "--scenario", "steady", "--out", str(full)]) == 0
    assert _exit_status(["--compare", str(quick), str(full)]) == 2
    assert _exit_status(["--scenario", "steady", "--compare", str(quick), "--out", str(tmp_path / "n")]) == 2
    assert not (tmp_path / "n").exists()
    assert cli.main(["--compare", str(full), str(full)]) == 0


def test_default_folders_never_collide_and_the_work_folder_goes_inside(fake_scenarios: None) -> None:
    """Two runs in the same second get different results folders (milliseconds, then a suffix);
    the default work folder is inside the results folder and is removed after the run, its
    filesystem kept in results.json."""
    import datetime

    moment = datetime.datetime(2026, 11, 26, 1, 2, 3, 456_000, tzinfo=datetime.UTC)
    first, second = cli.new_folder(moment), cli.new_folder(moment)
    assert first != second
    assert first.endswith("2026-11-26T01-02-03.456Z")
    assert second.endswith("-2")
    assert cli.main(["--quick", "--reps", "1", "--scenario", "steady"]) == 0
    made = sorted(Path(cli.RESULTS).iterdir())[-1]
    results = json.loads((made / "results.json").read_text())
    assert results["machine"]["workdir"] == str(made / "work")
    assert results["machine"]["workdir_fs"]
    assert not (made / "work").exists()


def test_workdir_gets_a_fresh_folder_inside_it(fake_scenarios: None, tmp_path: Path) -> None:
    """--workdir DIR: the databases go to a fresh folder inside DIR (recorded in results.json with
    its filesystem), removed after the run; what DIR already held is left alone."""
    work = tmp_path / "disk"
    work.mkdir()
    (work / "mine.txt").write_text("keep")
    out = tmp_path / "run"
    assert (
        cli.main(
            ["--quick", "--reps", "1", "--scenario", "steady", "--out", str(out), "--workdir", str(work)]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    used = Path(results["machine"]["workdir"])
    assert used.parent == work
    assert results["machine"]["workdir_fs"] == machine.filesystem_type(str(work))
    assert not used.exists()
    assert [path.name for path in work.iterdir()] == ["mine.txt"]
    assert not (out / "work").exists()


def test_filesystem_type_takes_the_longest_mount_point(tmp_path: Path) -> None:
    """The work folder's filesystem is the one mounted at the longest prefix of its path."""
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
        "tmpfs /tmpx tmpfs rw 0 0\n"
        "/dev/vdb /tmp/disk xfs rw 0 0\n"
    )
    assert machine.filesystem_type("/tmp/a/b", str(mounts)) == "tmpfs"
    assert machine.filesystem_type("/tmp/disk/b", str(mounts)) == "xfs"
    assert machine.filesystem_type("/tmpdir", str(mounts)) == "ext4"
    assert machine.filesystem_type("/tmp", str(mounts)) == "tmpfs"


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_git_commit_counts_new_files_under_the_measured_folders(tmp_path: Path) -> None:
    """A new (untracked) file under actorstate/ or benchmarks/ makes the commit +dirty; one
    elsewhere (a results folder, notes) does not."""

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "actorstate").mkdir()
    (tmp_path / "actorstate" / "a.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert not (machine.git_commit(str(tmp_path)) or "").endswith("+dirty")
    (tmp_path / "notes.txt").write_text("mine")
    assert not (machine.git_commit(str(tmp_path)) or "").endswith("+dirty")
    (tmp_path / "actorstate" / "new.py").write_text("y = 2\n")
    assert (machine.git_commit(str(tmp_path)) or "").endswith("+dirty")
