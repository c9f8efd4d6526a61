//! Reading the documents verbs take as input (`app add FILE`, `job add FILE`, …): a file, or
//! stdin when the name is `-`.

use std::io::Read;

use anyhow::Context;
use serde_json::Value;

/// Reads `file`, or stdin when `file` is `-`.
pub fn read_input(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))
    }
}

/// Reads a JSON document from `file`, or from stdin when `file` is `-`.
pub fn read_json(file: &str) -> anyhow::Result<Value> {
    let text = read_input(file)?;
    let name = if file == "-" { "stdin" } else { file };
    serde_json::from_str(&text).with_context(|| format!("{name} is not valid JSON"))
}
