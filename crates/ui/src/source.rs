//! The UI's reads: the master's public HTTP endpoints on loopback through the typed client of
//! `meseta-api` (the same calls the CLI makes), and the master's exported read
//! `Master::usage_snapshot`.

use meseta_api::client::{ClientError, MasterClient};
use meseta_master::Master;
use serde_json::Value;

/// A read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The public endpoint answered with an error or could not be reached.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The read took longer than the UI waits.
    #[error("the master did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// The loopback client of the UI's own master.
pub(crate) struct Source {
    client: MasterClient,
}

impl Source {
    /// A client of `master`'s own listener.
    pub fn new(master: &Master) -> Result<Source, SourceError> {
        let client = MasterClient::new(format!("http://{}", master.local_addr()))?;
        Ok(Source { client })
    }

    /// The typed client.
    pub fn client(&self) -> &MasterClient {
        &self.client
    }

    /// `GET path` → JSON, bounded by [`crate::READ_TIMEOUT`].
    pub async fn get(&self, path: &str) -> Result<Value, SourceError> {
        tokio::time::timeout(crate::READ_TIMEOUT, self.client.get_path(path))
            .await
            .map_err(|_| SourceError::Timeout(crate::READ_TIMEOUT))?
            .map_err(SourceError::from)
    }

    /// `GET path` → JSON, `None` when the path answers 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, SourceError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(SourceError::Client(e)) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
