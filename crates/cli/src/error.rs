//! The CLI's error classes: input errors (bad arguments, files, columns, formulas) exit with status 2, every
//! other failure with status 1.

use std::fmt;

/// A problem with what the user gave: a file, a column, a value, a formula or an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl InputError {
    /// An input error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        InputError(message.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Marks library errors that stem from user input as [`InputError`]s, keeping their message.
pub fn input<E: fmt::Display>(context: impl fmt::Display) -> impl FnOnce(E) -> anyhow::Error {
    move |e| InputError::new(format!("{context}: {e}")).into()
}

/// The process exit status for an error: 2 when any cause in the chain is an input error, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.downcast_ref::<InputError>().is_some()) { 2 } else { 1 }
}
