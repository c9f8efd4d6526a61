//! Typed errors for resource and attribute parsing and arithmetic.
//!
//! Used by every module of this crate; callers (master, agent, api, cli) match on
//! these or render them to users, so messages are lower-case and name the input.

/// An error parsing, deserializing or subtracting [`crate::Resources`] (or their parts).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ResourceError {
    /// A token of the `--resources` text syntax could not be understood.
    #[error("invalid resource token `{token}`: {reason}")]
    InvalidToken {
        /// The offending token (as written, whitespace removed).
        token: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A scalar amount was negative.
    #[error("negative value {value} for `{what}`")]
    Negative {
        /// What the value was for (a resource name or the raw number).
        what: String,
        /// The negative value.
        value: f64,
    },
    /// A scalar amount was NaN or infinite.
    #[error("non-finite value for `{what}`")]
    NotFinite {
        /// What the value was for (a resource name or the raw number).
        what: String,
    },
    /// A scalar amount does not fit in 64-bit milli-units.
    #[error("value {value} for `{what}` is too large")]
    TooLarge {
        /// What the value was for.
        what: String,
        /// The value.
        value: f64,
    },
    /// A ranges text such as `[31000-32000]` was malformed.
    #[error("invalid ranges `{text}`: {reason}")]
    InvalidRanges {
        /// The offending text.
        text: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A resource name or role was empty or contained reserved characters.
    #[error("invalid resource name or role `{name}`: {reason}")]
    InvalidName {
        /// The offending name or role.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The same resource name was used with two kinds (e.g. scalar and ranges).
    #[error("resource `{name}` used as both {first} and {second}")]
    KindMismatch {
        /// The resource name.
        name: String,
        /// The kind already present.
        first: String,
        /// The conflicting kind.
        second: String,
    },
    /// A subtraction asked for more than was available.
    #[error("insufficient resources: have `{have}`, want `{want}`")]
    Insufficient {
        /// The available resources (display syntax).
        have: String,
        /// The requested resources (display syntax).
        want: String,
    },
}

/// An error parsing or deserializing [`crate::Attributes`].
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AttributeError {
    /// A token of the `--attributes` text syntax (or a JSON attribute) was invalid.
    #[error("invalid attribute `{token}`: {reason}")]
    InvalidToken {
        /// The offending token.
        token: String,
        /// Why it was rejected.
        reason: String,
    },
}
