"""Every writer is all or nothing: a rejecting hook, a failing signer, Ctrl-C at any step,
thousands of files, and two writers at once. Real repositories, the real CLI in a
subprocess, real signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_validate_corpus import CASES

EXE = str(Path(sys.executable).parent / "flagstone")
SETTINGS = (
    "version: 1\nproject: shop\nenvironments: [dev, staging, prod]\n"
    "config_schema: schemas/config.schema.json\npinned: [config.api.base_url]\n"
)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def state(root: Path) -> tuple[dict[str, tuple[bytes, int]], str, str]:
    """Every file outside .git (bytes and mode), the index, and HEAD."""
    files = {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    folders = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_dir() and ".git" not in p.relative_to(root).parts
    )
    files["<folders>"] = ("\n".join(folders).encode(), 0)
    return files, git(root, "ls-files", "--stage"), git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(git_repo, commit) -> Path:
    """dev, staging, prod; dev moved ahead, then staging's timeout changed on its own."""
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    shutil.copytree(root / "environments" / "prod", root / "environments" / "staging")
    (root / "flagstone.yaml").write_text(SETTINGS)
    commit(message="three environments")
    dev_flags = root / "environments" / "dev" / "flags.yaml"
    dev_flags.write_text(dev_flags.read_text().replace("on: 20, off: 80", "on: 40, off: 60"))
    commit(message="dev: wider rollout")
    config = root / "environments" / "staging" / "config.yaml"
    config.write_text(config.read_text().replace("timeout_ms: 500", "timeout_ms: 900"))
    commit(message="staging: slower timeout")
    return root


# Each writer as a user runs it, committing.
WRITERS = {
    "edit": ["flag", "disable", "new-checkout", "--env", "prod", "--commit"],
    "promote": ["promote", "dev", "staging", "--yes", "--commit"],
    "rollback": ["rollback", "staging", "--to", "HEAD~1", "--yes"],
    "revert": ["revert", "HEAD", "--yes"],
    "experiment": [
        "experiment",
        "create",
        "banner-test",
        "--flag",
        "banner-text",
        "--env",
        "prod",
        "--metric",
        "primary:ctr:proportion",
        "--commit",
    ],
}


def run(root: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def hook(root: Path, name: str, body: str) -> None:
    path = root / ".git" / "hooks" / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize("writer", WRITERS)
def test_writer__rejecting_pre_commit_hook__leaves_the_tree_and_index_as_they_were(
    repo: Path, writer: str
) -> None:
    hook(repo, "pre-commit", "echo 'lint: trailing whitespace in flags.yaml'\nexit 1\n")
    before = state(repo)
    result = run(repo, WRITERS[writer])
    assert result.returncode == 2, result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error: git commit failed: the pre-commit hook rejected it"), first
    assert "lint: trailing whitespace in flags.yaml" in result.stderr  # the hook's own words
    assert "Cmd(" not in result.stderr and "Traceback" not in result.stderr
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def configure_failing_signer(repo: Path, tmp_path: Path) -> None:
    """Commits must be SSH-signed, and the signing program always fails."""
    for key, value in {
        "commit.gpgsign": "true",
        "gpg.format": "ssh",
        "user.signingkey": str(tmp_path / "id_ed25519"),
        "gpg.ssh.program": "false",
    }.items():
        git(repo, "config", key, value)


@pytest.mark.parametrize("writer", WRITERS)
def test_writer__failing_signing_program__leaves_the_tree_and_index_as_they_were(
    repo: Path, writer: str, tmp_path: Path
) -> None:
    configure_failing_signer(repo, tmp_path)
    before = state(repo)
    result = run(repo, WRITERS[writer])
    assert result.returncode == 2, result.stderr
    assert "error: git commit failed: signing the commit failed" in result.stderr
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def default_signal_handlers() -> None:
    """In the child before exec: a parent that ignores SIGINT (nohup, some CI runners)
    hands that on, and a signal test would then test an ignored signal."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def interrupt_at(
    root: Path,
    args: list[str],
    step: str | None,
    marker: Path | None = None,
    signum: int = signal.SIGINT,
    *,
    whole_group: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a writer, wait until it reaches ``step`` (or the hook touches ``marker``),
    then send it SIGINT as Ctrl-C would: to the writer, or (``whole_group``) to its
    process group as a terminal does, git and the hook included."""
    env = {**os.environ, **({"FLAGSTONE_PAUSE_AT": step} if step else {})}
    process = subprocess.Popen(
        [EXE, *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signal_handlers,
        process_group=0 if whole_group else None,
    )
    assert process.stderr is not None
    if step is not None:
        line = process.stderr.readline()
        assert line == f"flagstone: paused at {step}\n", line + process.stderr.read()
    else:
        assert marker is not None
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
    if whole_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("step", ["snapshot", "written", "staged", "hook"])
def test_promote__sigint_before_the_commit__restores_everything(
    repo: Path, step: str, tmp_path: Path
) -> None:
    marker = tmp_path / "hook-started"
    # A hook that blocks: Ctrl-C arrives while git commit runs it.
    hook(repo, "pre-commit", f"touch {marker}\nsleep 5\n")
    before = state(repo)
    result = interrupt_at(
        repo,
        WRITERS["promote"],
        None if step == "hook" else step,
        marker if step == "hook" else None,
    )
    assert result.returncode == 130, result.stderr
    assert "interrupted by SIGINT: nothing was written, every file is as it was" in result.stderr
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""
    if step == "hook":  # ... and the promotion can simply be run again
        hook(repo, "pre-commit", "exit 0\n")
        again = run(repo, WRITERS["promote"])
        assert again.returncode == 0, again.stderr
        assert "Flagstone-Promote: dev -> staging" in git(repo, "log", "-1", "--format=%B")


def test_promote__ctrl_c_at_the_terminal_while_the_hook_runs__restores_everything(
    repo: Path, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C reaches git and the hook too, not only flagstone."""
    marker = tmp_path / "hook-started"
    hook(repo, "pre-commit", f"touch {marker}\nsleep 60\n")
    before = state(repo)
    started = time.monotonic()
    result = interrupt_at(repo, WRITERS["promote"], None, marker, whole_group=True)
    assert result.returncode == 130, result.stderr
    assert "interrupted by SIGINT: nothing was written, every file is as it was" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30  # it did not wait out the hook's 60 s
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_signal_tests__the_writer_starts_with_default_handlers(tmp_path: Path) -> None:
    """The Ctrl-C tests above stay meaningful under a parent that ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.run(
            [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=default_signal_handlers,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert child.stdout.strip() == str(signal.default_int_handler)


def test_promote__sigint_after_the_commit__leaves_the_commit_complete(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    result = interrupt_at(repo, WRITERS["promote"], "committed")
    assert result.returncode == 130
    assert "interrupted by SIGINT: the commit was already complete" in result.stderr
    assert git(repo, "rev-parse", "HEAD~1") == head
    assert "Flagstone-Promote: dev -> staging" in git(repo, "log", "-1", "--format=%B")
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("writer", ["edit", "rollback", "revert", "experiment"])
def test_writer__sigint_once_staged__restores_everything(repo: Path, writer: str) -> None:
    before = state(repo)
    result = interrupt_at(repo, WRITERS[writer], "staged")
    assert result.returncode == 130, result.stderr
    assert "nothing was written" in result.stderr
    assert state(repo) == before


def test_init__sigint_while_writing__removes_everything_it_created(tmp_path: Path) -> None:
    target = tmp_path / "new" / "config"
    result = interrupt_at(tmp_path, ["init", str(target)], "written")
    assert result.returncode == 130, result.stderr
    assert "nothing was written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init__inside_a_repository__sigint__leaves_it_untouched(repo: Path) -> None:
    before = state(repo)
    result = interrupt_at(repo, ["init", "more"], "snapshot")
    assert result.returncode == 130, result.stderr
    assert state(repo) == before


def many_flags(count: int) -> str:
    return "".join(
        f"checkout-experiment-flag-with-a-long-name-{i:04}:\n"
        "  variants: {on: true, off: false}\n"
        f"  default: {'on' if i % 2 else 'off'}\n"
        for i in range(count)
    )


@pytest.fixture
def thousands(git_repo, commit) -> Path:
    """dev holds 3,000 flags prod lacks; prod keeps one file per flag."""
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    (root / "flagstone.yaml").write_text(
        "version: 1\nproject: shop\nenvironments: [dev, prod]\nconfig_schema: schemas/config.schema.json\n"
    )
    text = many_flags(3000)
    for env in ("dev", "prod"):
        (root / "environments" / env / "flags.yaml").unlink()
        (root / "environments" / env / "flags.yaml").write_text(
            "new-checkout:\n  variants: {on: true, off: false}\n  default: off\n"
        )
    folder = root / "environments" / "prod" / "flags"
    folder.mkdir()
    (root / "environments" / "prod" / "flags.yaml").rename(folder / "new-checkout.yaml")
    (root / "environments" / "dev" / "flags.yaml").write_text(
        (root / "environments" / "dev" / "flags.yaml").read_text() + text
    )
    commit(message="3,000 new flags in dev")
    return root


@pytest.mark.slow
def test_promote__3000_changed_flags__commits_every_file_in_one_commit(thousands: Path) -> None:
    """Paths and message reach git through stdin and a file: no 'Argument list too long'."""
    root = thousands
    result = run(root, ["promote", "dev", "prod", "--yes", "--commit"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert git(root, "status", "--porcelain") == ""
    changed = git(root, "show", "--name-only", "--format=", "HEAD").split()
    assert len(changed) == 3000
    message = git(root, "log", "-1", "--format=%B")
    assert message.count("\n- flag checkout-experiment-flag-with-a-long-name-") == 3000
    assert "Flagstone-Keys: flags.checkout-experiment-flag-with-a-long-name-0000, " in message


@pytest.mark.slow
def test_edits__run_at_once__every_update_lands(repo: Path) -> None:
    """Each edit reads the file under the repository's lock: none overwrites another."""
    flags = repo / "environments" / "dev" / "flags.yaml"
    flags.write_text(
        flags.read_text()
        + "".join(
            f"f{i}:\n  variants: {{on: true, off: false}}\n  default: off\n" for i in range(8)
        )
    )
    git(repo, "commit", "-qam", "five flags")
    processes = [
        subprocess.Popen(
            [EXE, "flag", "disable", f"f{i}", "--env", "dev"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(5)
    ]
    results = [(p.communicate(timeout=60)[1], p.returncode) for p in processes]
    assert all(code == 0 for _, code in results), results
    text = flags.read_text()
    for i in range(5):
        block = text.split(f"\nf{i}:\n", 1)[1].split("\nf", 1)[0]
        assert "enabled: false" in block, (i, text)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_edit__sigterm_or_sighup_while_written__restores_everything(
    repo: Path, signum: int
) -> None:
    before = state(repo)
    result = interrupt_at(repo, WRITERS["edit"], "written", signum=signum)
    assert result.returncode == 128 + signum, result.stderr
    assert f"interrupted by {signal.Signals(signum).name}: nothing was written" in result.stderr
    assert state(repo) == before


@pytest.mark.slow
def test_promote__3000_changed_flags_and_a_failing_signer__leaves_the_tree_byte_identical(
    thousands: Path, tmp_path: Path
) -> None:
    """Everything written and staged, then the commit itself fails: all of it is undone."""
    configure_failing_signer(thousands, tmp_path)
    before = state(thousands)
    result = run(thousands, ["promote", "dev", "prod", "--yes", "--commit"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: git commit failed: signing the commit failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert state(thousands) == before
    assert git(thousands, "status", "--porcelain") == ""
