//! The relay binary as a child process, for what only a process shows: signals, exit codes,
//! its log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use tokio::sync::mpsc;

use super::{eventually, within};

pub struct Process {
    pub child: Child,
    /// The relay's log, line by line.
    log: mpsc::UnboundedReceiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Waits for a log line containing `needle`; returns it.
    pub async fn logged(&mut self, needle: &str) -> String {
        within(&format!("the relay to log {needle:?}"), async {
            loop {
                let line = self.log.recv().await.expect("the relay's log is open");
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
    }

    /// Every log line not read yet, once the process has exited (its stderr is closed).
    pub async fn rest_of_log(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = within("the rest of the log", self.log.recv()).await {
            lines.push(line);
        }
        lines
    }

    /// Waits (bounded) for the process to exit; returns its status.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        eventually("the process to exit", || {
            let status = self.child.try_wait().expect("wait");
            async move { status }
        })
        .await
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Starts the relay binary on port 0 with `args` and `env`, with none of the developer's
    /// `RELAY_*` variables, and reads the address it logs.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Process, SocketAddr) {
        let mut process = Process::spawn_raw(args, env);
        let addr = process.logged_addr("listening").await;
        (process, addr)
    }

    /// The relay binary as [`Process::spawn`] starts it, before it logs anything.
    pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
        // The relay under test has the documented defaults, whatever the developer's shell
        // exports (an exported RELAY_REDIS_URL would make it a Redis relay).
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RELAY_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        command
    }

    /// Starts the relay binary, its log read line by line as it comes.
    pub fn spawn_raw(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Process::command(args, env)
            .spawn()
            .expect("relay binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, log }
    }

    /// Waits for a log line containing `needle` and returns the `addr=` it names.
    pub async fn logged_addr(&mut self, needle: &str) -> SocketAddr {
        let line = self.logged(needle).await;
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the line names an address")
            .parse()
            .expect("a socket address")
    }
}
