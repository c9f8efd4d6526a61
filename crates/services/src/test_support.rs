//! Fixtures shared by the crate's unit tests.

use meseta_api::marathon::{App, AppDefinition};

/// The validated app of a Marathon JSON definition (panics on a bad one: tests pass good ones).
pub(crate) fn app(def: serde_json::Value) -> App {
    let d: AppDefinition = serde_json::from_value(def).expect("definition parses");
    crate::validate::validate_app(&d).expect("definition is valid")
}
