//! A force's producer agent: reads exports, pseudonymises joint references,
//! keeps the ledger of what it published and publishes new revisions.

pub mod export;
pub mod ledger;
pub mod plan;
pub mod pseudonym;
mod publish;
pub mod units;

pub use publish::{publish_files, resend, FileSummary, Summary};
