//! A minimal QMP client: connect to a qemu's control socket, negotiate capabilities,
//! run one command and read its answer (skipping asynchronous events).

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Runs `command` (with `arguments`, if any) on the qemu whose QMP socket is `socket`.
pub fn execute(socket: &Path, command: &str, arguments: Option<Value>) -> Result<Value> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!(
            "qmp `{command}` on `{}`: {what}: {e}",
            socket.display()
        ))
    };
    let stream = UnixStream::connect(socket).map_err(|e| err("cannot connect", &e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| err("socket", &e))?;
    let mut writer = stream.try_clone().map_err(|e| err("socket", &e))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut read = |reader: &mut BufReader<UnixStream>| -> Result<Value> {
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| err("cannot read", &e))?;
            if n == 0 {
                return Err(err("closed", &"the socket closed"));
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| err("bad answer", &e))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    };
    read(&mut reader)?; // the greeting
    let mut send = |v: Value| -> Result<()> {
        let mut text = v.to_string();
        text.push('\n');
        writer
            .write_all(text.as_bytes())
            .map_err(|e| err("cannot write", &e))
    };
    send(json!({"execute": "qmp_capabilities"}))?;
    read(&mut reader)?;
    let mut request = json!({"execute": command});
    if let Some(a) = arguments {
        request["arguments"] = a;
    }
    send(request)?;
    let answer = read(&mut reader)?;
    if let Some(e) = answer.get("error") {
        let desc = e.get("desc").and_then(Value::as_str).unwrap_or("error");
        return Err(err("refused", &desc));
    }
    Ok(answer.get("return").cloned().unwrap_or(Value::Null))
}

/// The run state qemu reports (`running`, `paused`, `shutdown`, ...).
pub fn status(socket: &Path) -> Result<String> {
    let v = execute(socket, "query-status", None)?;
    Ok(v.get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned())
}
