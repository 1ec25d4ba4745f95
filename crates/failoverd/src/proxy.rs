//! A TCP relay between the demo's two nodes that can go silent: once silenced it keeps every
//! connection open but forwards nothing and answers nothing (no FIN, no RST), the way a dead
//! host or a cut cable looks to a TCP peer. Only the demo uses it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay.
pub(crate) struct Relay {
    /// Where the relay listens.
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on a loopback port and forwards each connection to the address `target`
    /// resolves to (known only once the target has bound its port).
    pub(crate) async fn start(
        target: watch::Receiver<Option<SocketAddr>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let silent = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&silent);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Some(to) = *target.borrow() else { continue };
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(to).await {
                        relay(inbound, outbound, flag).await;
                    }
                });
            }
        });
        Ok(Self { addr, silent })
    }

    /// From now on, nothing passes in either direction, and nothing is closed.
    pub(crate) fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}

async fn relay(a: TcpStream, b: TcpStream, silent: Arc<AtomicBool>) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let (a_read, a_write) = a.into_split();
    let (b_read, b_write) = b.into_split();
    tokio::join!(
        pipe(a_read, b_write, Arc::clone(&silent)),
        pipe(b_read, a_write, silent)
    );
}

/// Copies until either side closes; once silenced, reads and discards, and never closes the
/// other side (a silent peer sends no FIN).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if silent.load(Ordering::SeqCst) {
        // Hold the write half open: dropping it would send a FIN.
        std::future::pending::<()>().await;
    }
}
