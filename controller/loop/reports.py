"""What the reconciler says when replicas will not become ready: one line per replica.

Called by the reconciler when the health-check deadline passes (the message of the
`failed` status it then records). It inspects each unready replica of the current spec
for its last health-check output and exit code; output is sanitized (env values redacted,
bounded) before it is quoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.loop.ports import Runtime
from controller.model.errors import BerthError
from controller.model.replicas import ObservedReplica
from controller.policy.planner import DesiredDeployment
from controller.policy.redact import sanitize


def not_ready_report(
    runtime: Runtime,
    desired: DesiredDeployment,
    containers: Sequence[ObservedReplica],
    waited_s: float,
    env: Mapping[str, str],
    deadline_s: float,
) -> str:
    problems = []
    for container in containers:
        if container.ready or container.spec_hash != desired.spec_hash:
            continue
        detail = f"{container.name}: {container.state}, health {container.health}"
        try:
            state = runtime.inspect(container.id)
            output = sanitize(state.health_output, env, max_lines=3, max_chars=200)
            if output:
                detail += f", last check: {output}"
            if state.exit_code:
                detail += f", exit code {state.exit_code}"
        except BerthError:
            pass
        problems.append(detail)
    return f"replicas not ready after {waited_s:.0f}s (deadline {deadline_s:g}s): " + "; ".join(
        problems
    )
