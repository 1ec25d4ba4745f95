//! Requests sent in batches on the command socket: many requests per `send`, each acknowledged
//! (`NLM_F_ACK`) and its answer matched to it by sequence number.

use std::io;

use super::socket::{Datagrams, NlSocket};
use super::wire::{self, MSG_NEW, NLMSG_ERROR, Writer};

/// Receive buffer of the command socket: a batch's answers all queue up during the `send` (the
/// kernel handles a batch synchronously), and an answer that does not fit is lost.
const ANSWER_BUFFER: usize = 4 << 20;

/// Receive slot: an acknowledgement is 36 bytes, a looked-up entry well under 1 KiB.
const ANSWER_SLOT: usize = 8192;

/// How the kernel answered one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Answer {
    /// The acknowledgement: 0 for success, else the errno. `None`: no answer (an I/O error ended
    /// the batch).
    pub errno: Option<i32>,
    /// Whether an entry came back (a lookup that found one).
    pub found: bool,
}

pub(super) struct Command {
    socket: NlSocket,
    writer: Writer,
    datagrams: Datagrams,
    next_seq: u32,
    /// Sequence number of the batch's first request.
    base: u32,
    answers: Vec<Answer>,
    /// Sends so far.
    pub batches: u64,
}

impl Command {
    pub(super) fn open() -> io::Result<Self> {
        let socket = NlSocket::open()?;
        socket.set_receive_buffer(ANSWER_BUFFER)?;
        Ok(Self {
            socket,
            writer: Writer::default(),
            datagrams: Datagrams::new(ANSWER_SLOT),
            next_seq: 1,
            base: 1,
            answers: Vec::new(),
            batches: 0,
        })
    }

    /// The port id the kernel stamps on the events our requests cause.
    pub(super) fn port_id(&self) -> u32 {
        self.socket.port_id()
    }

    /// Starts a new batch.
    pub(super) fn begin(&mut self) {
        self.writer.clear();
        self.answers.clear();
        self.base = self.next_seq;
    }

    /// Adds a request, written by `encode` with the sequence number it is given, and returns its
    /// index in the batch.
    pub(super) fn push(&mut self, encode: impl FnOnce(&mut Writer, u32)) -> usize {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        encode(&mut self.writer, seq);
        self.answers.push(Answer::default());
        self.answers.len() - 1
    }

    pub(super) fn answer(&self, request: usize) -> Answer {
        self.answers[request]
    }

    /// Sends the batch and waits until every request is answered. On an I/O error the requests
    /// not answered yet keep `errno: None`.
    pub(super) fn execute(&mut self) -> io::Result<()> {
        if self.writer.is_empty() {
            return Ok(());
        }
        self.socket.send(self.writer.bytes())?;
        self.batches += 1;
        let mut unanswered = self.answers.len();
        while unanswered > 0 {
            let received = match self.datagrams.recv(self.socket.fd(), libc::MSG_WAITFORONE) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            for i in 0..received {
                for message in wire::messages(self.datagrams.get(i)) {
                    let message = message?;
                    // Answers of an earlier batch that failed half-way are skipped.
                    let index = message.seq.wrapping_sub(self.base) as usize;
                    let Some(answer) = self.answers.get_mut(index) else {
                        continue;
                    };
                    match message.message_type {
                        NLMSG_ERROR if answer.errno.is_none() => {
                            answer.errno = Some(-wire::error_code(message.payload)?);
                            unanswered -= 1;
                        }
                        MSG_NEW => answer.found = true,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}
