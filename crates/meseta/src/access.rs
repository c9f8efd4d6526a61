//! `--acl` and the bulk-delete guard's flags of `meseta dev` and `meseta master`: they open the
//! access edge (`meseta-access`) on the master's store and hand it to the master as the layer
//! around its whole router, and, with `--acl`, give agents the key their own HTTP endpoints
//! then require.

use std::sync::Arc;

use anyhow::Context;
use meseta_access::{AccessConfig, Edge};
use meseta_master::{EdgeLayer, MasterConfig};
use meseta_store::Store;

/// Access control flags.
#[derive(clap::Args, Debug)]
pub struct AccessArgs {
    /// Require a token on every request (but the one-time `meseta acl bootstrap`): see
    /// README "Access control". Off by default.
    #[arg(long, env = "MESETA_ACL")]
    pub acl: bool,
    /// Deleting more apps or jobs than this in one request, or within a minute with one
    /// token, needs `?confirm=true` (and an admin grant with --acl), as does deleting a group
    /// that holds apps.
    #[arg(long, default_value_t = 10)]
    pub bulk_delete_limit: usize,
    /// Entries the audit log keeps (the oldest go first).
    #[arg(long, default_value_t = 10_000)]
    pub audit_capacity: usize,
}

/// Opens the access edge on `store` and sets it as `cfg`'s layer.
pub async fn install(
    a: &AccessArgs,
    store: Arc<dyn Store>,
    cfg: &mut MasterConfig,
) -> anyhow::Result<()> {
    let access = AccessConfig {
        enabled: a.acl,
        bulk_delete_limit: a.bulk_delete_limit,
        audit_capacity: a.audit_capacity,
    };
    let edge = Edge::open(access, store)
        .await
        .context("opening the access edge (tokens, policies, audit log)")?;
    cfg.edge = Some(EdgeLayer(Arc::new(move |r, m| {
        edge.wrap(r, m.shared_store())
    })));
    if a.acl {
        // Agents' sandbox logs, state and statistics then answer only this master's proxy,
        // which checks the caller's token. A new key per master process: agents take the
        // leader's when they (re-)register.
        cfg.agent_http_key = Some(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ));
    }
    Ok(())
}
