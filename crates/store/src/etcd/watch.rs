//! Watches over the gateway's streamed `POST /v3/watch`: one HTTP stream per watch, read line
//! by line (each line a JSON `{"result": WatchResponse}`), forwarded into a [`WatchStream`].
//!
//! ```text
//! watch() ── open: wait for {"created":true} (or {"canceled", "compact_revision"} → Compacted;
//!            a start in compacted history is found by a read at that revision first, since
//!            etcd confirms such a watch before it cancels it)
//!    └─ task: lines ─▶ events ─▶ mpsc ─▶ WatchStream
//!             stream lost (member died) ─▶ reopen on the next member from last revision + 1
//!             canceled with compact_revision ─▶ Err(Compacted), end
//! ```
//!
//! Events older than the next expected revision are dropped, so a resumed watch never repeats
//! an event; resuming from exactly the next revision never skips one (etcd does not split one
//! revision's events across answers).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::client::{decode, error_from, Client, Retry, REQUEST_TIMEOUT};
use super::wire::{
    b64, ErrorBody, RangeRequest, RangeResponse, WatchCreate, WatchLine, WatchRequest,
    WatchResponse,
};
use super::Keys;
use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// Events a watcher may have in flight before the stream stops reading from etcd.
const CHANNEL: usize = 1024;
/// Pause between reconnection attempts (doubling up to [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Chunks = futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// A streamed answer split into lines.
struct Lines {
    chunks: Chunks,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    fn new(resp: reqwest::Response) -> Lines {
        Lines {
            chunks: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next non-empty line; `Ok(None)` at the end of the stream.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("watch stream broke: {e}")),
                None => self.done = true,
            }
        }
    }

    /// The next watch answer; `Err` when the stream is lost or carries a gateway error.
    async fn answer(&mut self) -> Result<Option<WatchResponse>, StoreError> {
        let Some(line) = self.next().await.map_err(StoreError::Unavailable)? else {
            return Ok(None);
        };
        let line: WatchLine = decode("/v3/watch", &line)?;
        if let Some(err) = line.error {
            let body: ErrorBody = serde_json::from_value(err).unwrap_or_default();
            return Err(error_from(500, &body));
        }
        Ok(Some(line.result.unwrap_or_default()))
    }
}

/// What the watch is about.
struct Spec {
    client: Arc<Client>,
    keys: Keys,
    key: Vec<u8>,
    range_end: Vec<u8>,
}

/// Whether `from` is older than etcd's compacted history (a read at that revision fails).
async fn is_compacted(spec: &Spec, from: Revision) -> Result<bool, StoreError> {
    let req = RangeRequest {
        key: b64(&spec.key),
        range_end: b64(&spec.range_end),
        count_only: true,
        revision: from,
        ..RangeRequest::default()
    };
    let res: Result<RangeResponse, _> = spec.client.call("/v3/kv/range", &req, Retry::Always).await;
    match res {
        Ok(_) => Ok(false),
        Err(StoreError::Compacted { .. }) => Ok(true),
        Err(e) if e.is_retryable() => Err(e),
        // A future revision: nothing compacted, the watch waits for it.
        Err(_) => Ok(false),
    }
}

/// Waits for etcd to cancel a watch created on compacted history (it confirms the watch first
/// and cancels it on its next sync) and returns the error naming the compact revision.
async fn compacted_error(lines: &mut Lines, from: Revision) -> StoreError {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, lines.answer()).await {
            Ok(Ok(Some(res))) if res.canceled => return canceled(&res, from),
            Ok(Ok(Some(_))) => continue,
            _ => {
                return StoreError::Compacted {
                    requested: from,
                    oldest: from + 1,
                }
            }
        }
    }
}

/// Opens a watch from `from` (`0`: future events) and waits until etcd confirms it.
/// Returns the lines and the first revision the watch delivers.
async fn open(spec: &Spec, from: Revision) -> Result<(Lines, Revision), StoreError> {
    let compacted = from > 0 && is_compacted(spec, from).await?;
    let body = WatchRequest {
        create_request: WatchCreate {
            key: b64(&spec.key),
            range_end: b64(&spec.range_end),
            start_revision: from,
        },
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| StoreError::Encode(format!("encoding watch request: {e}")))?;
    let mut last = None;
    for _ in 0..spec.client.endpoints().len() {
        let (idx, resp) = spec.client.open_stream("/v3/watch", &body).await?;
        let mut lines = Lines::new(resp);
        let first = tokio::time::timeout(REQUEST_TIMEOUT, lines.answer()).await;
        match first {
            Ok(Ok(Some(res))) if res.canceled => return Err(canceled(&res, from)),
            Ok(Ok(Some(res))) if res.created && compacted => {
                return Err(compacted_error(&mut lines, from).await)
            }
            Ok(Ok(Some(res))) if res.created => {
                let start = if from > 0 {
                    from
                } else {
                    res.header.revision + 1
                };
                return Ok((lines, start));
            }
            Ok(Ok(other)) => {
                last = Some(StoreError::Backend(format!(
                    "etcd did not confirm the watch: {other:?}"
                )));
            }
            Ok(Err(e)) if !e.is_retryable() => return Err(e),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(StoreError::Unavailable(format!(
                    "etcd did not confirm the watch within {REQUEST_TIMEOUT:?}"
                )))
            }
        }
        spec.client.advance(idx);
    }
    Err(last.unwrap_or_else(|| StoreError::Unavailable("no etcd member to watch on".into())))
}

/// The error for a watch etcd canceled.
fn canceled(res: &WatchResponse, from: Revision) -> StoreError {
    if res.compact_revision > 0 {
        StoreError::Compacted {
            requested: from,
            oldest: res.compact_revision,
        }
    } else {
        StoreError::Backend(format!("etcd canceled the watch: {}", res.cancel_reason))
    }
}

/// Starts a watch on the (namespaced) range `key..range_end` from `from_revision`.
pub(crate) async fn start(
    client: Arc<Client>,
    keys: Keys,
    key: Vec<u8>,
    range_end: Vec<u8>,
    from_revision: Revision,
) -> Result<WatchStream, StoreError> {
    let spec = Spec {
        client,
        keys,
        key,
        range_end,
    };
    let (lines, next) = open(&spec, from_revision.max(0)).await?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(run(spec, lines, next, tx));
    Ok(WatchStream::new(rx))
}

type Sender = mpsc::Sender<Result<WatchEvent, StoreError>>;

/// Forwards events until the receiver is dropped or the watch ends for good.
async fn run(spec: Spec, mut lines: Lines, mut next: Revision, tx: Sender) {
    loop {
        let answer = tokio::select! {
            _ = tx.closed() => return,
            answer = lines.answer() => answer,
        };
        match answer {
            Ok(Some(res)) if res.canceled => {
                let _ = tx.send(Err(canceled(&res, next))).await;
                return;
            }
            Ok(Some(res)) => {
                if !forward(&spec.keys, res, &mut next, &tx).await {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(next_revision = next, "etcd watch stream lost; resuming");
                match reopen(&spec, next, &tx).await {
                    Some(l) => lines = l,
                    None => return,
                }
            }
        }
    }
}

/// Sends the answer's events; `false` when the receiver is gone or an event is unreadable.
/// Events of one revision may share an answer, so `next` moves past the answer as a whole.
async fn forward(keys: &Keys, res: WatchResponse, next: &mut Revision, tx: &Sender) -> bool {
    let from = *next;
    for ev in res.events {
        let rev = ev.kv.mod_revision;
        if rev < from {
            continue;
        }
        let item = keys.event(ev);
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return false;
        }
        *next = (*next).max(rev + 1);
    }
    true
}

/// Reopens the watch from `next` (on whichever member answers), retrying with backoff while
/// the receiver lives. `None` when the receiver is gone or the history is compacted (the error
/// is sent first).
async fn reopen(spec: &Spec, next: Revision, tx: &Sender) -> Option<Lines> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match open(spec, next).await {
            Ok((lines, _)) => return Some(lines),
            Err(e @ StoreError::Compacted { .. }) => {
                let _ = tx.send(Err(e)).await;
                return None;
            }
            Err(e) => {
                tracing::warn!(next_revision = next, error = %e, "etcd watch not resumed yet")
            }
        }
        tokio::select! {
            _ = tx.closed() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
