use portauthority_core::Refusal;

/// Why a store call failed. Cloneable, because one commit's failure is reported to every
/// request that shared it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The job or task does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the stored state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The request can never apply (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// The caller's key may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The database cannot be reached or is overloaded; retrying later may work (HTTP 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store was configured wrongly (bad URL, unreadable file).
    #[error("{0}")]
    Config(String),
    /// Anything else: a bug or a corrupt database. Logged, never shown to clients.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict(m) => StoreError::Conflict(m),
            Refusal::Invalid(m) => StoreError::Invalid(m),
            Refusal::NotFound(m) => StoreError::NotFound(m),
            Refusal::Forbidden(m) => StoreError::Forbidden(m),
        }
    }
}

impl StoreError {
    /// The command was refused (not found, conflict, invalid): retrying it cannot help,
    /// unlike a failure of the database.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound(_)
                | StoreError::Conflict(_)
                | StoreError::Invalid(_)
                | StoreError::Forbidden(_)
        )
    }

    pub fn job_not_found(id: impl std::fmt::Display) -> StoreError {
        Refusal::job_not_found(id).into()
    }

    pub fn task_not_found(job: impl std::fmt::Display, task: impl std::fmt::Display) -> StoreError {
        Refusal::task_not_found(job, task).into()
    }
}
