//! A private D-Bus session bus for one jamid: a `dbus-daemon` listening on a path socket
//! in the test's directory, with no service directory. A normal session bus would start
//! `/usr/libexec/jamid` itself (Debian installs `cx.ring.Ring.service`), in the host
//! namespace and with the real HOME; this one answers `ServiceUnknown` instead.

use super::{poll, terminate, TERM_GRACE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zbus::blocking::Connection;

/// How long a D-Bus method call may take before we give up on the daemon.
const METHOD_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `dbus-daemon` (stopped on drop; only this process is touched).
pub struct PrivateBus {
    child: Child,
    address: String,
    /// The bus socket.
    pub socket: PathBuf,
}

/// The bus configuration: session type, one path socket, EXTERNAL auth, everything
/// allowed, and deliberately no `<servicedir>`.
pub fn bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

impl PrivateBus {
    /// Write `dir/bus.conf`, start `dbus-daemon` on `dir/bus` (log in `dir/dbus.log`) and
    /// wait until the socket accepts connections: the daemon creates the file when it
    /// binds, a moment before it listens, and a client in between is refused (this made
    /// one NAT-lab cell fail with "Connection refused").
    pub fn start(dir: &Path) -> Result<PrivateBus> {
        let socket = dir.join("bus");
        let conf = dir.join("bus.conf");
        std::fs::write(&conf, bus_config(&socket))?;
        let log = std::fs::File::create(dir.join("dbus.log"))?;
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dbus-daemon")?;
        let mut bus = PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
            socket,
        };
        if poll(Duration::from_secs(10), || {
            Ok(std::os::unix::net::UnixStream::connect(&bus.socket)
                .is_ok()
                .then_some(()))
        })?
        .is_none()
        {
            bus.stop();
            bail!("dbus-daemon does not listen on {}", bus.socket.display());
        }
        Ok(bus)
    }

    /// `unix:path=…`, for `DBUS_SESSION_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client connection. Path sockets are not network-namespaced, so this works from
    /// any namespace (the tests connect from their own).
    pub fn connect(&self) -> Result<Connection> {
        zbus::blocking::connection::Builder::address(self.address.as_str())?
            .method_timeout(METHOD_TIMEOUT)
            .build()
            .context("connecting to the private bus")
    }

    /// SIGTERM, then SIGKILL after [`TERM_GRACE`]; idempotent.
    pub fn stop(&mut self) {
        terminate(&mut self.child, TERM_GRACE);
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn config_listens_on_the_socket_and_has_no_service_dir() {
        let c = bus_config(Path::new("/tmp/x/bus"));
        assert!(c.contains("<listen>unix:path=/tmp/x/bus</listen>"));
        assert!(
            !c.contains("servicedir"),
            "a service dir would let the bus spawn jamid"
        );
        assert!(!c.contains("standard_session_servicedirs"));
    }
}
