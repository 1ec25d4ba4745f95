//! The control socket: a Unix stream socket carrying JSON lines (see [`crate::protocol`]).
//!
//! The daemon [`bind`]s the socket and runs [`serve`], which hands every well-formed request
//! to the daemon's driver over a channel and writes back its answer; `failoverctl` calls
//! [`request`] (or keeps a [`Client`] for several requests).
//!
//! Access control is the socket file's mode (0660): whoever may open it may run every command,
//! including `switchover`. Input is bounded so a misbehaving client cannot make the daemon
//! buffer without limit: [`MAX_LINE`] per request and [`MAX_CONNECTIONS`] at once.

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::io_reason;
use crate::protocol::{Request, Response};

/// The longest request line the daemon reads, newline excluded; a longer one is answered with
/// an error and the connection is closed (its end cannot be found without reading it all).
pub const MAX_LINE: usize = 64 * 1024;

/// How many clients may be connected at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// The mode of the socket file: the owner and the group may use it.
pub const SOCKET_MODE: u32 = 0o660;

/// How [`serve`] passes a request to the daemon: the request and where to send the answer.
pub type RequestSender = mpsc::Sender<(Request, oneshot::Sender<Response>)>;

/// Errors of the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The client cannot reach the daemon.
    #[error("cannot connect to {}: {}({})", .path.display(), connect_hint(.error), io_reason(.error))]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why; its reason is part of the message, so it is not reported as a `source`.
        error: io::Error,
    },
    /// The connection failed while a request was under way.
    #[error("control connection to {}: {}", .path.display(), io_reason(.error))]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why; its reason is part of the message, so it is not reported as a `source`.
        error: io::Error,
    },
    /// The daemon closed the connection without answering.
    #[error("failoverd closed the control connection without answering")]
    Closed,
    /// The daemon's answer is not a response (a daemon of another version, or not failoverd).
    #[error("failoverd sent an invalid response: {0}")]
    BadResponse(String),
    /// The daemon answered with an error.
    #[error("failoverd: {0}")]
    Daemon(String),
    /// Another process listens on the socket path.
    #[error("cannot listen on {}: another process is listening there (is failoverd already running?)", .path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// The socket path holds something that is not a socket, which is never removed.
    #[error("cannot listen on {}: the path exists and is not a socket", .path.display())]
    NotASocket {
        /// The socket.
        path: PathBuf,
    },
    /// Creating the socket failed.
    #[error("cannot listen on {}: {}", .path.display(), io_reason(.error))]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why; its reason is part of the message, so it is not reported as a `source`.
        error: io::Error,
    },
}

/// What to try when connecting fails, by the reason.
fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => "is failoverd running? ",
        io::ErrorKind::PermissionDenied => {
            "run as root or as a member of the socket's group, or pass --socket "
        }
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// client

/// A connection to the daemon that can carry several requests, one after the other.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to the daemon's socket.
    pub async fn connect(path: &Path) -> Result<Client, ControlError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|error| ControlError::Connect {
                path: path.to_path_buf(),
                error,
            })?;
        let (reader, writer) = stream.into_split();
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// Sends `request` and returns the `data` of a successful response; a failed response
    /// is [`ControlError::Daemon`].
    pub async fn call(&mut self, request: &Request) -> Result<serde_json::Value, ControlError> {
        let io = |error| ControlError::Io {
            path: self.path.clone(),
            error,
        };
        // Invariant: a `Request` always serializes (no maps with non-string keys).
        let mut line = serde_json::to_vec(request).expect("a request serializes");
        line.push(b'\n');
        self.writer.write_all(&line).await.map_err(io)?;
        // The daemon is trusted: its answers (a long session list) are not bounded.
        let mut answer = String::new();
        let read = self.reader.read_line(&mut answer).await.map_err(io)?;
        if read == 0 {
            return Err(ControlError::Closed);
        }
        match serde_json::from_str(&answer) {
            Ok(Response::Ok(data)) => Ok(data),
            Ok(Response::Error(message)) => Err(ControlError::Daemon(message)),
            Err(err) => Err(ControlError::BadResponse(err.to_string())),
        }
    }
}

/// Connects, sends one request and returns the `data` of the response.
pub async fn request(socket: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
    Client::connect(socket).await?.call(request).await
}

// ---------------------------------------------------------------------------------------------
// server

/// Creates the control socket at `path` with mode [`SOCKET_MODE`], creating its directory if
/// needed. Must be called within a tokio runtime.
///
/// A socket file left by a daemon that died is removed first; a socket that a live process
/// listens on, and a path that is not a socket, are left alone and reported.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let bind_error = |error| ControlError::Bind {
        path: path.to_path_buf(),
        error,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ControlError::InUse {
                        path: path.to_path_buf(),
                    });
                }
                // Nobody accepts: the file is stale.
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path).map_err(bind_error)?;
                }
                Err(err) => return Err(bind_error(err)),
            }
        }
        Ok(_) => {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(bind_error(err)),
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // The umask decides the mode `bind` creates the file with; until this call the socket
    // may be more restricted than intended, never less (with the usual umask 022 or 077).
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(bind_error)?;
    Ok(listener)
}

/// Accepts control connections on `listener` until `shutdown` completes, then closes them.
///
/// Each request line is parsed and sent to `handler` with a channel for the answer, which is
/// written back as one line. A line that is not a request is answered with
/// `{"ok":false,"error":"bad request: ..."}` and the connection stays usable; a line longer
/// than [`MAX_LINE`] is answered with an error and the connection is closed. When `handler`
/// is closed (the daemon is stopping), requests are answered with an error.
pub async fn serve(listener: UnixListener, handler: RequestSender, shutdown: impl Future) {
    tokio::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() >= MAX_CONNECTIONS => {
                    // A fresh socket's send buffer takes one short line without blocking.
                    let line = response_line(&Response::error(format!(
                        "too many control connections (at most {MAX_CONNECTIONS})"
                    )));
                    let _ = stream.try_write(&line);
                }
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, handler.clone()));
                }
                Err(err) => {
                    // Typically out of file descriptors: wait instead of spinning on the error.
                    tracing::warn!("control socket: accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Serves one client until it closes the connection or sends a line that is too long.
async fn connection(stream: UnixStream, handler: RequestSender) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // One byte more than allowed tells a line of exactly MAX_LINE bytes from a longer one.
        let limit = MAX_LINE as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) => {
                tracing::debug!("control connection: {err}");
                return;
            }
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_LINE {
            let too_long = Response::error(format!(
                "bad request: line longer than {MAX_LINE} bytes; closing the connection"
            ));
            let _ = writer.write_all(&response_line(&too_long)).await;
            return;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let response = match serde_json::from_slice::<Request>(text) {
            Ok(request) => forward(&handler, request).await,
            Err(err) => Response::error(format!("bad request: {err}")),
        };
        if let Err(err) = writer.write_all(&response_line(&response)).await {
            tracing::debug!("control connection: {err}");
            return;
        }
    }
}

/// Passes a request to the daemon and waits for its answer.
async fn forward(handler: &RequestSender, request: Request) -> Response {
    let (answer, answered) = oneshot::channel();
    if handler.send((request, answer)).await.is_err() {
        return Response::error("failoverd is shutting down");
    }
    answered
        .await
        .unwrap_or_else(|_| Response::error("failoverd dropped the request (shutting down?)"))
}

/// A response as one JSON line.
fn response_line(response: &Response) -> Vec<u8> {
    // Invariant: a `Response` always serializes (its data is already a JSON value).
    let mut line = serde_json::to_vec(response).expect("a response serializes");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::protocol::Generated;

    /// A daemon stand-in: answers `status` with a fixed object, `sessions-generate` with its
    /// count, and everything else with an error.
    fn spawn_daemon(dir: &Path) -> (PathBuf, oneshot::Sender<()>) {
        let path = dir.join("run/failoverd.sock");
        let listener = bind(&path).unwrap();
        let (handler, mut requests) = mpsc::channel::<(Request, oneshot::Sender<Response>)>(8);
        tokio::spawn(async move {
            while let Some((request, answer)) = requests.recv().await {
                let response = match request {
                    Request::Status => Response::Ok(json!({"state": "silence"})),
                    Request::SessionsGenerate { count } => Response::ok(&Generated {
                        created: count,
                        table_full: 0,
                    }),
                    other => Response::error(format!("not implemented: {other:?}")),
                };
                let _ = answer.send(response);
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, handler, async {
            let _ = stopped.await;
        }));
        (path, stop)
    }

    /// Writes raw bytes and reads one response line.
    async fn exchange(client: &mut BufReader<UnixStream>, bytes: &[u8]) -> serde_json::Value {
        client.get_mut().write_all(bytes).await.unwrap();
        let mut line = String::new();
        client.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_several_requests_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = spawn_daemon(dir.path());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
        assert_eq!(
            request(&path, &Request::Status).await.unwrap(),
            json!({"state": "silence"})
        );
        let mut client = Client::connect(&path).await.unwrap();
        let generated = client
            .call(&Request::SessionsGenerate { count: 7 })
            .await
            .unwrap();
        assert_eq!(generated, json!({"created": 7, "table_full": 0}));
        match client.call(&Request::Peer).await {
            Err(ControlError::Daemon(message)) => assert_eq!(message, "not implemented: Peer"),
            other => panic!("{other:?}"),
        }
        assert!(client.call(&Request::Status).await.is_ok());
    }

    #[tokio::test]
    async fn garbage_gets_an_error_and_the_connection_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = spawn_daemon(dir.path());
        let mut client = BufReader::new(UnixStream::connect(&path).await.unwrap());
        for garbage in [
            &b"hello\n"[..],
            b"{\"cmd\":\"reboot\"}\n",
            b"\xff\xfe\n",
            b"[]\r\n",
        ] {
            let answer = exchange(&mut client, garbage).await;
            assert_eq!(answer["ok"], json!(false));
            let error = answer["error"].as_str().unwrap();
            assert!(error.starts_with("bad request: "), "{error}");
        }
        // Blank lines are skipped; the next request is answered.
        let answer = exchange(&mut client, b"\n\n{\"cmd\":\"status\"}\n").await;
        assert_eq!(answer, json!({"ok": true, "data": {"state": "silence"}}));
    }

    #[tokio::test]
    async fn oversized_lines_are_rejected_and_the_connection_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = spawn_daemon(dir.path());
        // Exactly MAX_LINE bytes is still allowed.
        let mut client = BufReader::new(UnixStream::connect(&path).await.unwrap());
        let padded = format!("{{\"cmd\":\"status\"{:1$}}}\n", "", MAX_LINE - 16);
        assert_eq!(padded.len(), MAX_LINE + 1);
        assert_eq!(
            exchange(&mut client, padded.as_bytes()).await["ok"],
            json!(true)
        );

        let mut client = BufReader::new(UnixStream::connect(&path).await.unwrap());
        let mut long = vec![b' '; MAX_LINE + 10];
        long.push(b'\n');
        let answer = exchange(&mut client, &long).await;
        assert_eq!(answer["ok"], json!(false));
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("longer than 65536 bytes")
        );
        let mut rest = Vec::new();
        // The daemon closed: reading ends (what was not read yet may reset the connection).
        let _ = client.read_to_end(&mut rest).await;
        assert!(!rest.contains(&b'{'));
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = spawn_daemon(dir.path());
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(b"{\"cmd\":\"status\"}").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "{\"ok\":true,\"data\":{\"state\":\"silence\"}}\n");
    }

    #[tokio::test]
    async fn shutdown_and_a_closed_handler() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failoverd.sock");
        let listener = bind(&path).unwrap();
        let (handler, requests) = mpsc::channel(1);
        drop(requests);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, handler, async {
            let _ = stopped.await;
        }));
        match request(&path, &Request::Status).await {
            Err(ControlError::Daemon(message)) => assert_eq!(message, "failoverd is shutting down"),
            other => panic!("{other:?}"),
        }
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bind_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failoverd.sock");
        let listener = bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(ControlError::InUse { .. })));
        drop(listener);
        // The file is left behind by the dropped listener: stale, so replaced.
        assert!(path.exists());
        let _listener = bind(&path).unwrap();

        let file = dir.path().join("not-a-socket");
        fs::write(&file, "keep me").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn connect_errors_say_what_to_do() {
        let err = request(Path::new("/nonexistent/failoverd.sock"), &Request::Status)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot connect to /nonexistent/failoverd.sock: is failoverd running? (No such file or directory)"
        );
    }
}
