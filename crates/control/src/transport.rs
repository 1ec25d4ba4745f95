//! The control socket: a Unix stream socket carrying JSON lines (see [`crate::protocol`]).
//!
//! The daemon [`bind`]s the socket and runs [`serve`], which hands every well-formed request
//! to the daemon's driver over a channel and writes back its answer (whole, or streamed in
//! pieces: [`Answer`]); `failoverctl` calls
//! [`request`] (or keeps a [`Client`] for several requests).
//!
//! Every local user may connect (mode 0666) and read the status; a command that changes state
//! or lists the sessions ([`Request::privileged`]) needs root, the daemon's own user or the
//! configured group ([`Access`]), as the kernel reports the client with `SO_PEERCRED` and
//! `SO_PEERGROUPS` when it connects, and is logged with the client's uid, gid and pid. Input is
//! bounded so a misbehaving client cannot make the daemon buffer without limit: [`MAX_LINE`]
//! per request and [`MAX_CONNECTIONS`] at once; a connection idle for [`IDLE_TIMEOUT`] is
//! closed, and when all are taken the longest idle one makes room for a new client.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::io_reason;
use crate::protocol::{Request, Response};

/// The longest request line the daemon reads, newline excluded; a longer one is answered with
/// an error and the connection is closed (its end cannot be found without reading it all).
pub const MAX_LINE: usize = 64 * 1024;

/// How many clients may be connected at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// A connection that sends no request for this long is closed, and so is one whose client does
/// not take an answer for this long: an idle client does not hold one of the
/// [`MAX_CONNECTIONS`] for ever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The mode of the socket file: every local user may connect; what each may run is checked
/// per command ([`Access`]). Restrict reading with the directory's mode.
pub const SOCKET_MODE: u32 = 0o666;

/// How [`serve`] passes a request to the daemon: the request and where to send the answer.
pub type RequestSender = mpsc::Sender<(Request, oneshot::Sender<Answer>)>;

/// The daemon's answer to one request.
#[derive(Debug)]
pub enum Answer {
    /// A whole response.
    Done(Response),
    /// A successful response whose `data` arrives in pieces that together are one JSON value
    /// (a long session list, never held whole). Written as they come; a sender dropped before
    /// the value is complete leaves the client a line that does not parse.
    Stream(mpsc::Receiver<Vec<u8>>),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Answer::Done(response)
    }
}

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
// access

/// Who may run the commands that change state: root, the daemon's own user, and members of
/// `group` (the client's effective group or one of its supplementary groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The daemon's effective uid.
    pub owner: u32,
    /// `control.group`, resolved.
    pub group: Option<u32>,
}

impl Access {
    /// Root, this process's user and, if given, the members of `group`.
    pub fn new(group: Option<u32>) -> Access {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        Access { owner, group }
    }

    fn allows(&self, client: &Credentials) -> bool {
        client.uid == 0
            || client.uid == self.owner
            || self
                .group
                .is_some_and(|g| client.gid == g || client.groups.contains(&g))
    }
}

/// Resolves a group name, or a number, to a gid.
pub fn group_id(name: &str) -> io::Result<u32> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the group name"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed `group` is a valid out-parameter (plain data and null pointers).
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is `buf`'s size.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if found.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group named {name:?}"),
        ));
    }
    Ok(group.gr_gid)
}

/// The client as the kernel saw it when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
    groups: Vec<u32>,
}

impl Credentials {
    fn of(stream: &UnixStream) -> io::Result<Credentials> {
        let cred = stream.peer_cred()?;
        Ok(Credentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
            groups: peer_groups(stream)?,
        })
    }
}

/// The client's supplementary groups when it connected (`SO_PEERGROUPS`, Linux 4.13).
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd;
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * GID) as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes; the kernel writes at most that much.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / GID);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        // Too small: the kernel says how much it needs.
        if error.raw_os_error() == Some(libc::ERANGE) && len as usize > groups.len() * GID {
            groups.resize(len as usize / GID, 0);
            continue;
        }
        return Err(error);
    }
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

/// A connection being served: how to end it, and since when it waits for a request
/// ([`BUSY`] while it has one under way), in milliseconds since `serve` began.
struct Slot {
    task: AbortHandle,
    idle_since: Arc<AtomicU64>,
}

/// [`Slot::idle_since`] of a connection with a request under way.
const BUSY: u64 = u64::MAX;

/// Accepts control connections on `listener` until `shutdown` completes, then closes them.
///
/// Each request line is parsed and, if `access` allows the client to run it, sent to
/// `handler` with a channel for the answer, which is written back as one line. A line that is
/// not a request is answered with `{"ok":false,"error":"bad request: ..."}` and the connection
/// stays usable; a line longer than [`MAX_LINE`] is answered with an error and the connection
/// is closed. When `handler` is closed (the daemon is stopping), requests are answered with an
/// error.
pub async fn serve(
    listener: UnixListener,
    handler: RequestSender,
    access: Access,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut connections = JoinSet::new();
    let mut slots: Vec<Slot> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    slots.retain(|slot| !slot.task.is_finished());
                    if slots.len() >= MAX_CONNECTIONS && !evict_idlest(&mut slots) {
                        // A fresh socket's send buffer takes one short line without blocking.
                        let line = response_line(&Response::error(format!(
                            "too many control connections, all busy (at most {MAX_CONNECTIONS})"
                        )));
                        let _ = stream.try_write(&line);
                        continue;
                    }
                    let idle_since = Arc::new(AtomicU64::new(0));
                    let task = connections.spawn(connection(
                        stream,
                        handler.clone(),
                        access,
                        started,
                        idle_since.clone(),
                    ));
                    slots.push(Slot { task, idle_since });
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

/// Closes the connection that has waited longest for a request, if one waits: a new client
/// is served rather than refused because idle ones hold every slot.
fn evict_idlest(slots: &mut Vec<Slot>) -> bool {
    let idlest = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| (slot.idle_since.load(Ordering::Relaxed), i))
        .filter(|&(since, _)| since != BUSY)
        .min();
    let Some((_, index)) = idlest else {
        return false;
    };
    slots.swap_remove(index).task.abort();
    true
}

/// Serves one client until it closes the connection, sends a line that is too long or stays
/// idle for [`IDLE_TIMEOUT`].
async fn connection(
    stream: UnixStream,
    handler: RequestSender,
    access: Access,
    started: Instant,
    idle_since: Arc<AtomicU64>,
) {
    let credentials = match Credentials::of(&stream) {
        Ok(credentials) => credentials,
        Err(err) => {
            tracing::warn!("control connection: cannot read the client's credentials: {err}");
            return;
        }
    };
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        idle_since.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        // One byte more than allowed tells a line of exactly MAX_LINE bytes from a longer one.
        let limit = MAX_LINE as u64 + 1;
        let mut bounded = (&mut reader).take(limit);
        match tokio::time::timeout(IDLE_TIMEOUT, bounded.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::debug!("control connection: {err}");
                return;
            }
            Err(_) => {
                tracing::debug!("control connection idle for {IDLE_TIMEOUT:?}: closed");
                return;
            }
        }
        idle_since.store(BUSY, Ordering::Relaxed);
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
        let answer = match serde_json::from_slice::<Request>(text) {
            Ok(request) if !request.privileged() => forward(&handler, request).await,
            Ok(request) => authorized(&handler, request, access, &credentials).await,
            Err(err) => Response::error(format!("bad request: {err}")).into(),
        };
        if let Err(err) = write_answer(&mut writer, answer).await {
            tracing::debug!("control connection: {err}");
            return;
        }
    }
}

/// Writes one answer as one line; a client that takes nothing of it for [`IDLE_TIMEOUT`] is
/// an error.
async fn write_answer(writer: &mut OwnedWriteHalf, answer: Answer) -> io::Result<()> {
    async fn write(writer: &mut OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(IDLE_TIMEOUT, writer.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no answer for {IDLE_TIMEOUT:?}"),
            )),
        }
    }
    match answer {
        Answer::Done(response) => write(writer, &response_line(&response)).await,
        Answer::Stream(mut pieces) => {
            // The envelope `Response::Ok` serializes to, around the data.
            write(writer, b"{\"ok\":true,\"data\":").await?;
            while let Some(piece) = pieces.recv().await {
                write(writer, &piece).await?;
            }
            write(writer, b"}\n").await
        }
    }
}

/// Runs a privileged command if `access` allows the client, logging who asked.
async fn authorized(
    handler: &RequestSender,
    request: Request,
    access: Access,
    client: &Credentials,
) -> Answer {
    let command = request.name();
    let pid = client
        .pid
        .map_or_else(|| "?".to_string(), |pid| pid.to_string());
    if !access.allows(client) {
        tracing::warn!(
            command,
            uid = client.uid,
            gid = client.gid,
            pid,
            "control: {command} refused: uid {} is not root and not in the control group",
            client.uid
        );
        return Response::error(format!(
            "permission denied: {command} needs root or the control group (control.group); \
             you are uid {} gid {}",
            client.uid, client.gid
        ))
        .into();
    }
    tracing::info!(
        command,
        uid = client.uid,
        gid = client.gid,
        pid,
        "control: {command} by uid {} pid {pid}",
        client.uid
    );
    forward(handler, request).await
}

/// Passes a request to the daemon and waits for its answer.
async fn forward(handler: &RequestSender, request: Request) -> Answer {
    let (answer, answered) = oneshot::channel();
    if handler.send((request, answer)).await.is_err() {
        return Response::error("failoverd is shutting down").into();
    }
    answered.await.unwrap_or_else(|_| {
        Response::error("failoverd dropped the request (shutting down?)").into()
    })
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
        let (handler, mut requests) = mpsc::channel::<(Request, oneshot::Sender<Answer>)>(8);
        tokio::spawn(async move {
            while let Some((request, answer)) = requests.recv().await {
                let response = match request {
                    Request::Status => Response::Ok(json!({"state": "silence"})),
                    Request::Sessions { .. } => {
                        let (pieces, stream) = mpsc::channel(1);
                        let _ = answer.send(Answer::Stream(stream));
                        for piece in ["{\"total\":", "2,", "\"sessions\":[]}"] {
                            pieces.send(piece.into()).await.unwrap();
                        }
                        continue;
                    }
                    Request::SessionsGenerate { count } => Response::ok(&Generated {
                        created: count,
                        table_full: 0,
                    }),
                    other => Response::error(format!("not implemented: {other:?}")),
                };
                let _ = answer.send(response.into());
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, handler, Access::new(None), async {
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
        let streamed = Request::Sessions {
            filter: Default::default(),
            limit: None,
        };
        assert_eq!(
            client.call(&streamed).await.unwrap(),
            json!({"total": 2, "sessions": []}),
            "a streamed answer arrives as one value"
        );
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
        let server = tokio::spawn(serve(listener, handler, Access::new(None), async {
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

    /// Issue 11, item 7: clients that connect and send nothing (more than there are slots)
    /// cannot lock out a new one: the idlest makes room, and `status` is answered. The control:
    /// when every slot has a request under way, a new client is refused (so the first check
    /// would see a lock-out).
    #[tokio::test]
    async fn idle_clients_make_room_for_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failoverd.sock");
        let listener = bind(&path).unwrap();
        let (handler, mut requests) = mpsc::channel::<(Request, oneshot::Sender<Answer>)>(64);
        let (held_tx, mut held_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((request, answer)) = requests.recv().await {
                match request {
                    Request::Status => {
                        let _ = answer.send(Response::Ok(json!({"state": "silence"})).into());
                    }
                    // Never answered while the test runs: the client stays busy.
                    _ => held_tx.send(answer).unwrap(),
                }
            }
        });
        let (_stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, handler, Access::new(None), async {
            let _ = stopped.await;
        }));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 8 {
            idle.push(UnixStream::connect(&path).await.unwrap());
        }
        assert_eq!(
            request(&path, &Request::Status).await.unwrap(),
            json!({"state": "silence"})
        );

        let mut busy = Vec::new();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut client = UnixStream::connect(&path).await.unwrap();
            client.write_all(b"{\"cmd\":\"peer\"}\n").await.unwrap();
            held.push(held_rx.recv().await.unwrap());
            busy.push(client);
        }
        match request(&path, &Request::Status).await {
            Err(ControlError::Daemon(message)) => {
                assert!(
                    message.contains("too many control connections"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A client that sends nothing is closed after [`IDLE_TIMEOUT`] (virtual time).
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = spawn_daemon(dir.path());
        let mut client = UnixStream::connect(&path).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert!(started.elapsed() >= IDLE_TIMEOUT, "{:?}", started.elapsed());
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
