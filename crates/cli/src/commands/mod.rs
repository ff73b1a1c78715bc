//! One module per command; none imports another.

pub mod evaluate;
pub mod families;
pub mod gaps;
pub mod lmm;
pub mod r#match;
pub mod power;
pub mod report;
pub mod simulate;
pub mod value_added;
