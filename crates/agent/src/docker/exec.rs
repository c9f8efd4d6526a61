//! COMMAND health checks of DOCKER tasks, run inside the task's container (`docker exec`):
//! create an exec with the check's command, start it attached (its output is drained and
//! dropped), then read its exit code. The exec inherits the container's environment, user and
//! working directory. The caller bounds the whole check with the check's timeout; an exec that
//! outlives it is left to finish inside the container (the engine has no call to kill an exec).

use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;
use meseta_api::agent::HealthCommand;

use super::Engine;
use crate::health::Outcome;

/// Pause between inspections of an exec whose output ended but which has not exited yet.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// The argv of a check command: `/bin/sh -c value` for a shell command, else the program and
/// its arguments (Mesos: `arguments[0]` is argv0).
pub(crate) fn argv(c: &HealthCommand) -> Vec<String> {
    if c.shell {
        return vec!["/bin/sh".into(), "-c".into(), c.value.clone()];
    }
    std::iter::once(c.value.clone())
        .chain(c.arguments.iter().skip(1).cloned())
        .collect()
}

/// Run `c` in container `container` and report whether it exited 0.
pub(crate) async fn command_check(
    engine: &Engine,
    container: &str,
    c: &HealthCommand,
    what: &str,
) -> Outcome {
    let fail = |message: String| Outcome { ok: false, message };
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(argv(c)),
        ..ExecConfig::default()
    };
    let exec = match engine.docker.create_exec(container, config).await {
        Ok(e) => e.id,
        Err(e) => return fail(format!("{what}: cannot exec in the container: {e}")),
    };
    let opts = StartExecOptions {
        detach: false,
        ..StartExecOptions::default()
    };
    match engine.docker.start_exec(&exec, Some(opts)).await {
        Ok(StartExecResults::Attached { mut output, .. }) => {
            while let Some(item) = output.next().await {
                if item.is_err() {
                    break;
                }
            }
        }
        Ok(StartExecResults::Detached) => {}
        Err(e) => return fail(format!("{what}: cannot start the exec: {e}")),
    }
    loop {
        let info = match engine.docker.inspect_exec(&exec).await {
            Ok(i) => i,
            Err(e) => return fail(format!("{what}: cannot inspect the exec: {e}")),
        };
        if info.running == Some(true) {
            tokio::time::sleep(EXIT_POLL).await;
            continue;
        }
        return match info.exit_code {
            Some(0) => Outcome {
                ok: true,
                message: format!("{what} succeeded in the container"),
            },
            Some(code) => fail(format!("{what} exited with status {code} in the container")),
            None => fail(format!("{what}: the engine reports no exit status")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_of_shell_and_plain_commands() {
        let shell = HealthCommand {
            value: "test -f /tmp/ready".into(),
            shell: true,
            arguments: vec![],
        };
        assert_eq!(argv(&shell), ["/bin/sh", "-c", "test -f /tmp/ready"]);
        let plain = HealthCommand {
            value: "/bin/test".into(),
            shell: false,
            arguments: vec!["test".into(), "-f".into(), "/x".into()],
        };
        assert_eq!(argv(&plain), ["/bin/test", "-f", "/x"]);
    }
}
