"""The Docker gateway's build side: `docker build` of a workspace, and Berth's built images.

Used by the build job (`controller.loop.build_job`: `build`, `image_present`), the build
dispatcher (`controller.loop.builder`: retention, `built_images`, `remove_built`) and the
janitor (a deleted deployment's images). The build runs the `docker` CLI (classic
builder, `--force-rm`) in its own process group (`controller.gateways.commands`): killing
it closes its connection, on which the engine stops the build and removes its intermediate
container; output arrives line by line.
Images are read and removed through docker-py's low-level API, and only images in Berth's
build repositories (`controller.model.names.build_repository`) are ever removed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from controller.gateways.commands import run_command
from controller.gateways.docker_engine import DockerGateway, translated
from controller.gateways.retry import retry_transient
from controller.model.errors import (
    BuildCancelled,
    BuildStepFailed,
    DockerConflict,
    DockerRejected,
    DockerServerError,
    DockerUnavailable,
)
from controller.model.names import BUILD_REPOSITORY_PREFIX, build_repository
from controller.policy.builds import failed_step

# The classic builder: its "Step N/M" lines give progress; BuildKit is not installed with
# Debian's docker.io. A build context sent to the engine is the workspace's context dir.
BUILD_ENV = {"DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
_ENGINE_DOWN = (
    "cannot connect to the docker daemon",
    "error during connect",
    "is the docker daemon running",
)


class DockerBuilder:
    def __init__(self, docker: DockerGateway, timeout_s: float) -> None:
        self.docker = docker
        self.timeout_s = timeout_s

    def image_present(self, image: str) -> bool:
        return self.docker.image_present(image)

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        on_line: Callable[[str, str], None],
        cancelled: threading.Event,
    ) -> None:
        """Build `context` with `dockerfile` as `tag`. BuildStepFailed names the step and its
        exit code; BuildCancelled once `cancelled` killed it; DockerUnavailable when the
        engine did not answer (transient: the build is retried)."""
        # No labels: `--label` would add a LABEL step (a container) to every build. The
        # repository namespace (names.build_repository) and the builds table say what
        # Berth built.
        args = ["docker", "build", "--force-rm", "--rm", "-f", str(dockerfile), "-t", tag]
        args.append(str(context))
        seen: list[str] = []

        def keep(stream: str, line: str) -> None:
            seen.append(line)
            del seen[:-200]
            on_line(stream, line)

        result = run_command(args, keep, cancelled, self.timeout_s, env=BUILD_ENV)
        if result.cancelled:
            raise BuildCancelled("cancelled during docker build")
        if result.timed_out:
            raise BuildStepFailed(
                f"docker build took longer than {self.timeout_s:g}s (BERTH_BUILD_TIMEOUT_S)"
            )
        if result.exit_code == 0:
            return
        text = "\n".join(seen[-5:]).lower()
        if any(marker in text for marker in _ENGINE_DOWN):
            raise DockerUnavailable(f"docker build: engine unreachable: {seen[-1] if seen else ''}")
        step, exit_code = failed_step(seen)
        last = "\n".join(line for line in seen[-5:] if line.strip())
        where = step or "before the first step"
        if exit_code is None and "error response from daemon" in text and "500" in text:
            raise DockerServerError(f"docker build failed at {where}: {last}")
        raise BuildStepFailed(
            f"{where} failed"
            + (f" with exit code {exit_code}" if exit_code is not None else "")
            + f":\n{last}",
            exit_code,
        )

    @retry_transient
    def publish(self, tag: str, registry: str) -> str:
        """Push the built image `tag` to `registry` (BERTH_REGISTRY); its pinned reference,
        `registry/repository@sha256:...`, which every node pulls exactly. The registry's tag
        is removed from this engine afterwards (the image keeps `tag`, which retention
        counts). An unreachable registry is transient (DockerServerError: retried)."""
        repository, _, version = tag.rpartition(":")
        remote = f"{registry}/{repository}"
        api = self.docker.api
        with translated("tag", tag):
            api.tag(tag, remote, version)
        digest = ""
        try:
            with translated("push", remote):
                for message in api.push(remote, tag=version, stream=True, decode=True):
                    if "error" in message:
                        raise DockerServerError(f"push of {tag} to {registry}: {message['error']}")
                    digest = str((message.get("aux") or {}).get("Digest") or digest)
        finally:
            with translated("untag", remote):
                api.remove_image(f"{remote}:{version}", noprune=True)
        if not digest.startswith("sha256:"):
            raise DockerServerError(f"push of {tag} to {registry}: the registry named no digest")
        return f"{remote}@{digest}"

    @retry_transient
    def built_images(self, deployment: str, cluster: str) -> list[dict[str, object]]:
        """Images Berth built for `deployment` in `cluster`, newest first."""
        with translated("list_images"):
            images = self.docker.api.images(name=build_repository(deployment, cluster))
        return sorted(images, key=lambda image: int(str(image.get("Created") or 0)), reverse=True)

    @retry_transient
    def every_built_image(self) -> list[dict[str, object]]:
        """Every image named in Berth's build repositories (any deployment, any cluster):
        one list call, for the janitor."""
        with translated("list_images"):
            images = self.docker.api.images(filters={"reference": [f"{BUILD_REPOSITORY_PREFIX}*"]})
        return list(images)

    def remove_built(self, image: dict[str, object], deployment: str, cluster: str) -> int:
        """Remove a built image's names in `deployment`'s build repository (the image goes
        with its last name; one also tagged elsewhere keeps that name); a name a container
        uses is kept. How many names went."""
        repository = build_repository(deployment, cluster) + ":"
        tags = image.get("RepoTags")
        names = (
            [str(tag) for tag in tags if str(tag).startswith(repository)]
            if isinstance(tags, list)
            else []
        )
        removed = 0
        for name in names:
            try:
                with translated("remove_image", name):
                    self.docker.api.remove_image(name, force=False, noprune=False)
                removed += 1
            except (DockerConflict, DockerRejected, DockerServerError):
                continue
        return removed
