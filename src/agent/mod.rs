//! A force's producer agent: reads exports, pseudonymises joint references,
//! keeps the ledger of what it published and publishes new revisions, once
//! (`publish`) or as a service on an inbox folder (`watch`).

mod deliver;
pub mod export;
mod inbox;
pub mod ledger;
mod pipeline;
pub mod plan;
pub mod pseudonym;
mod publish;
pub mod secrets;
mod send;
pub mod sign;
pub mod units;
mod watch;

pub use deliver::DeliveryError;
pub use publish::{publish_files, publish_report, resend, FileSummary, PublishError, Rejection, Report, Summary};
pub use secrets::SecretError;
pub use watch::{watch, WatchError, WatchStats, WatchStatus, Watcher};
