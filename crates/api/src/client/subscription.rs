//! A Mesos v1 scheduler subscription over HTTP (`POST /api/v1/scheduler`).
//!
//! [`MasterClient::subscribe`] opens the subscription; its chunked RecordIO body is decoded into
//! [`Event`]s by [`SchedulerSession::next_event`], and [`SchedulerCaller`] sends calls with the
//! subscription's `Mesos-Stream-Id`.

use std::collections::VecDeque;

use reqwest::Method;

use super::masters::{Failure, Sent};
use super::{expect_status, ClientError, MasterClient};
use crate::recordio::{self, Decoder, RecordIoError};
use crate::scheduler::{Call, CallKind, Event, FrameworkInfo, IdValue, Subscribe};

/// The scheduler API path.
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";
/// The response header carrying a subscription's stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

impl MasterClient {
    /// POSTs one scheduler call and expects 202.
    async fn post_call(&self, call: &Call, stream_id: Option<&str>) -> Result<(), ClientError> {
        let body = recordio::to_ascii_json(call);
        let build = |r: reqwest::RequestBuilder| {
            let r = r
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body.clone());
            match stream_id {
                Some(id) => r.header(STREAM_ID_HEADER, id),
                None => r,
            }
        };
        let Sent { resp, url } = self.send_plain(Method::POST, SCHEDULER_PATH, build).await?;
        expect_status(resp, &url, &[200, 202]).await.map(drop)
    }

    /// Subscribes `framework_info` (re-subscribing when its `id` is set) and waits for the
    /// SUBSCRIBED event, which [`SchedulerSession::next_event`] then returns first.
    pub async fn subscribe(
        &self,
        framework_info: FrameworkInfo,
    ) -> Result<SchedulerSession, ClientError> {
        let call = Call {
            framework_id: framework_info.id.clone(),
            kind: CallKind::Subscribe {
                subscribe: Subscribe {
                    framework_info,
                    suppressed_roles: None,
                },
            },
        };
        // The stream is answered by the leader (a follower's 307 is followed); later calls go to
        // the master that answered, which the client now remembers.
        let body = recordio::to_ascii_json(&call);
        let Sent { resp, url } = self
            .send(&self.stream_http, Method::POST, SCHEDULER_PATH, |r| {
                r.header("Content-Type", "application/json")
                    .header("Accept", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(Failure::plain)?;
        let resp = expect_status(resp, &url, &[200]).await?;
        let stream_id = resp
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode {
                url: url.clone(),
                reason: format!("missing {STREAM_ID_HEADER} header"),
            })?;
        let mut session = SchedulerSession {
            caller: SchedulerCaller {
                client: self.clone(),
                stream_id,
                framework_id: IdValue::default(),
            },
            body: Some(resp),
            decoder: Decoder::new(),
            pending: VecDeque::new(),
        };
        session.await_subscribed().await?;
        Ok(session)
    }
}

/// Sends calls on behalf of a subscribed framework; cheap to clone and usable while another task
/// reads the event stream.
#[derive(Clone, Debug)]
pub struct SchedulerCaller {
    client: MasterClient,
    stream_id: String,
    framework_id: IdValue,
}

impl SchedulerCaller {
    /// The subscription's `Mesos-Stream-Id`.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The framework id assigned in SUBSCRIBED.
    pub fn framework_id(&self) -> &IdValue {
        &self.framework_id
    }

    /// Sends `kind` with the framework id and stream id; `Ok` on 202.
    pub async fn call(&self, kind: CallKind) -> Result<(), ClientError> {
        let call = Call {
            framework_id: Some(self.framework_id.clone()),
            kind,
        };
        self.client.post_call(&call, Some(&self.stream_id)).await
    }
}

/// An open scheduler subscription.
#[derive(Debug)]
pub struct SchedulerSession {
    caller: SchedulerCaller,
    body: Option<reqwest::Response>,
    decoder: Decoder,
    pending: VecDeque<Event>,
}

impl SchedulerSession {
    /// The subscription's `Mesos-Stream-Id`.
    pub fn stream_id(&self) -> &str {
        self.caller.stream_id()
    }

    /// The framework id assigned in SUBSCRIBED.
    pub fn framework_id(&self) -> &IdValue {
        self.caller.framework_id()
    }

    /// A handle that sends calls for this subscription.
    pub fn caller(&self) -> SchedulerCaller {
        self.caller.clone()
    }

    /// Sends `kind` with the framework id and stream id; `Ok` on 202.
    pub async fn call(&self, kind: CallKind) -> Result<(), ClientError> {
        self.caller.call(kind).await
    }

    async fn await_subscribed(&mut self) -> Result<(), ClientError> {
        loop {
            match self.read_event().await? {
                Some(Event::Subscribed { subscribed }) => {
                    self.caller.framework_id = subscribed.framework_id.clone();
                    self.pending.push_back(Event::Subscribed { subscribed });
                    return Ok(());
                }
                Some(Event::Error { error }) => {
                    return Err(ClientError::Rejected {
                        message: error.message,
                    })
                }
                Some(_) => continue,
                None => {
                    return Err(ClientError::Stream {
                        reason: "stream ended before SUBSCRIBED".into(),
                    })
                }
            }
        }
    }

    /// The next event; `Ok(None)` once the master closed the stream. Event types meseta does not
    /// model are skipped.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        self.read_event().await
    }

    async fn read_event(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(record) = self.decoder.next_record().map_err(stream_err)? {
                if let Some(ev) = parse_event(&record)? {
                    return Ok(Some(ev));
                }
                continue;
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.chunk().await {
                Ok(Some(bytes)) => self.decoder.feed(&bytes),
                Ok(None) => {
                    self.body = None;
                    if self.decoder.buffered() > 0 {
                        return Err(ClientError::Stream {
                            reason: format!(
                                "stream ended inside a record ({} bytes left)",
                                self.decoder.buffered()
                            ),
                        });
                    }
                    return Ok(None);
                }
                Err(e) => {
                    self.body = None;
                    return Err(ClientError::Stream {
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Decodes one record; `None` for event types [`Event`] does not model.
fn parse_event(record: &[u8]) -> Result<Option<Event>, ClientError> {
    // Updates and offers straight from the bytes; other events, and errors, through a `Value`.
    if let Some(ev) = crate::scheduler::decode_hot_event(record) {
        return Ok(Some(ev));
    }
    let value: serde_json::Value = serde_json::from_slice(record).map_err(stream_err)?;
    let known = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| Event::TYPE_NAMES.contains(&t));
    if !known {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ClientError::Stream {
            reason: format!("invalid event: {e}"),
        })
}

fn stream_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Stream {
        reason: e.to_string(),
    }
}

impl From<RecordIoError> for ClientError {
    fn from(e: RecordIoError) -> Self {
        stream_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_types_are_skipped() {
        let rec = br#"{"type":"RESCIND_INVERSE_OFFER","rescind_inverse_offer":{"inverse_offer_id":{"value":"o"}}}"#;
        assert!(parse_event(rec).expect("valid").is_none());
        let rec = br#"{"type":"INVERSE_OFFERS","inverse_offers":{"inverse_offers":[]}}"#;
        assert!(matches!(
            parse_event(rec).expect("valid"),
            Some(Event::InverseOffers { .. })
        ));
        let hb = parse_event(br#"{"type":"HEARTBEAT"}"#).expect("valid");
        assert_eq!(hb, Some(Event::Heartbeat));
        assert!(parse_event(b"{not json").is_err());
    }
}
