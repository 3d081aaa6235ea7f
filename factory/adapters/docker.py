"""The one adapter over docker and buildx (python-on-whales). Nothing else imports python_on_whales.

The engine is checked once, on first use: version >= 26 and the containerd image store, without
which buildx's docker driver cannot build or load multi-platform images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from factory.adapters.tools import INSTALL_HINT, Runner
from factory.core import log
from factory.core.errors import CommandError, EnvironmentProblem

MIN_ENGINE_MAJOR = 26


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    containerd_store: bool
    builder: str
    builder_platforms: tuple[str, ...]


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _error(step: str, e: DockerException) -> CommandError:
    return CommandError(e.docker_command, e.return_code, (e.stderr or e.stdout or "").strip(), step=step)


class Docker:
    def __init__(self, runner: Runner, builder: str | None = None) -> None:
        self._runner = runner
        self._builder = builder

    @cached_property
    def client(self) -> DockerClient:
        return DockerClient(client_call=[self._runner.require("docker")])

    @cached_property
    def engine(self) -> EngineInfo:
        """Engine facts, read once per process; raises when the engine cannot do our job."""
        try:
            info = self.client.system.info()
            server = self.client.version().server
            builder = self.client.buildx.inspect(self._builder, bootstrap=True)
        except DockerException as e:
            raise EnvironmentProblem(
                f"docker engine not reachable: {(e.stderr or '').strip()}",
                hint="run `make services` to start dockerd, or set DOCKER_HOST",
            ) from None
        except ValueError as e:  # JSONDecodeError, pydantic's ValidationError: not docker's JSON answer
            raise EnvironmentProblem(
                f"the docker command printed something that is not its JSON answer ({type(e).__name__}: "
                f"{str(e)[:200]})",
                hint="check which `docker` is found first (tools_path, PATH) and that it is the docker CLI",
            ) from None
        driver_status = " ".join(" ".join(map(str, pair)) for pair in (info.driver_status or []))
        platforms = tuple(str(p) for node in (builder.nodes or []) for p in (node.platforms or []))
        return EngineInfo(
            # An engine that does not say its version counts as too old (check() says so).
            server_version=str(server.version or "") if server else "",
            containerd_store="io.containerd.snapshotter" in driver_status,
            builder=builder.name or "",
            builder_platforms=platforms,
        )

    def check(self) -> EngineInfo:
        eng = self.engine
        if _major(eng.server_version) < MIN_ENGINE_MAJOR:
            raise EnvironmentProblem(f"docker engine {eng.server_version} is too old (need >= {MIN_ENGINE_MAJOR})",
                                     hint=INSTALL_HINT)
        if not eng.containerd_store:
            raise EnvironmentProblem(
                "docker engine does not use the containerd image store",
                hint='set {"features": {"containerd-snapshotter": true}} in daemon.json (make services does)',
            )
        return eng

    def build(
        self,
        context: Path,
        *,
        platforms: Sequence[str],
        output: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        push: bool = False,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        cache: bool = True,
        metadata_file: Path | None = None,
        file: Path | None = None,
        step: str = "build",
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """One buildx build for all platforms. BuildKit's own provenance/SBOM stay off: they are
        unsigned and make the index digest non-reproducible."""
        self.check()
        logger = log.get("buildx")
        logger.info("buildx build", context=str(context), platforms=list(platforms))
        try:
            # Streamed plain progress: each line is logged (debug) and shown on a terminal; on failure
            # python-on-whales still puts buildx's stderr on the exception, so the real error reaches the user.
            lines = self.client.buildx.build(
                context, platforms=list(platforms), output=dict(output or {}), tags=list(tags),
                push=push, build_args=dict(build_args or {}), labels=dict(labels or {}),
                provenance=False, sbom=False, cache=cache, builder=self._builder, progress="plain",
                metadata_file=metadata_file, file=file, stream_logs=True,
            )
            assert isinstance(lines, Iterator)  # what stream_logs=True returns: buildx's output lines
            for line in lines:
                logger.debug("buildx", line=line.rstrip())
                if on_line:
                    on_line(line.rstrip())
        except DockerException as e:
            raise _error(step, e) from None

    def load(self, archive: Path) -> str:
        """docker load an OCI archive; returns the loaded image id (the index digest)."""
        try:
            out = self.client.image.load(archive, quiet=True)
        except DockerException as e:
            raise _error("load", e) from None
        return out[0] if out else ""

    def export_filesystem(self, image: str, platform: str, dest: Path) -> None:
        """Write the flattened filesystem of one platform of ``image`` to a tar file (no shell needed)."""
        try:
            container = self.client.container.create(image, platform=platform, entrypoint="/nonexistent")
            try:
                container.export(dest)
            finally:
                container.remove(force=True)
        except DockerException as e:
            raise _error("export", e) from None

    def remove_image(self, image: str) -> None:
        try:
            self.client.image.remove(image, force=True)
        except DockerException as e:
            raise _error("image rm", e) from None

    def run(self, image: str, command: Sequence[str], *, platform: str, hardened: bool = True,
            user: str | None = None, entrypoint: str | None = None,
            network: str | None = None) -> tuple[int, str, str]:
        """Run a container to completion; returns (exit code, stdout, stderr). ``network``: e.g.
        "host", to reach a service on the host's loopback (the TLS handshake test)."""
        try:
            # Empty lists and False add no flag: an unhardened run is a plain `docker run`.
            out = self.client.run(image, list(command), platform=platform, remove=True, user=user,
                                  entrypoint=entrypoint, read_only=hardened, cap_drop=["ALL"] if hardened else [],
                                  security_options=["no-new-privileges"] if hardened else [],
                                  tmpfs=["/tmp"] if hardened else [], networks=[network] if network else [])
            return 0, str(out or ""), ""
        except DockerException as e:
            return e.return_code, e.stdout or "", e.stderr or ""
