//! Starts node-oidc-provider (`interop/node-oidc-provider/provider.mjs`, installed by
//! `scripts/test`) on a free loopback port for an interop test, and stops it when dropped.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

/// A running provider; killed when the test ends, pass or fail.
pub(crate) struct Provider {
    child: Child,
    /// Its issuer identifier, `http://127.0.0.1:PORT`.
    pub(crate) issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider with `args` after the port, or `None` (the test skips) when
/// `KEYBOUND_OIDC_PROVIDER_DIR` is unset outside CI. Under CI a missing provider fails.
pub(crate) fn start_provider(args: &[&str]) -> Option<Provider> {
    let Ok(dir) = std::env::var("KEYBOUND_OIDC_PROVIDER_DIR") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the interop test: KEYBOUND_OIDC_PROVIDER_DIR is unset"
        );
        eprintln!(
            "skipped: node-oidc-provider not installed (run scripts/test, which installs it when node is present)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .arg(port.to_string())
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let provider = Provider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    };
    let mut lines = std::io::BufReader::new(stdout).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening"));
    assert!(started, "node-oidc-provider did not start");
    // Keep reading what it prints (notices) so its stdout never fills or breaks.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Some(provider)
}
