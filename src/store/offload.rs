//! The store for async callers: [`Store::call`] runs a closure over the store on tokio's
//! blocking pool, so a SQLite call (and its fsync) never holds an async worker thread, and a
//! call whose task failed (the closure panicked, or the runtime is shutting down) comes back as
//! one error, [`StoreError::Task`], the same for every caller. [`ReadOnly`] is the store seen
//! through its queries only, for the parts that must never write (the API's reads, the status
//! pages). The store itself stays synchronous: this file is its only link to a runtime.

use serde::de::DeserializeOwned;

use super::{
    Analysis, AuditEntry, Cursor, OutboxCounts, Page, RunRecord, Store, StoreError, StoredRollout,
};

impl Store {
    /// Run `f` over this store on the blocking pool and return what it returns. A failed task
    /// becomes [`StoreError::Task`], converted into the caller's error type.
    ///
    /// ```ignore
    /// let stored = store.call(move |s| s.rollout::<RolloutState>(&name)).await?;
    /// ```
    pub async fn call<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Task {
                path: self.path().to_path_buf(),
                message: e.to_string(),
            }
            .into()),
        }
    }

    /// This store seen through its queries only.
    pub fn read_only(&self) -> ReadOnly<'_> {
        ReadOnly(self)
    }
}

/// The store's queries, and nothing that writes: each method is [`Store`]'s of the same name.
#[derive(Debug, Clone, Copy)]
pub struct ReadOnly<'a>(&'a Store);

impl ReadOnly<'_> {
    pub fn rollout<S: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<StoredRollout<S>>, StoreError> {
        self.0.rollout(name)
    }

    pub fn rollouts<S: DeserializeOwned>(&self) -> Result<Vec<StoredRollout<S>>, StoreError> {
        self.0.rollouts()
    }

    pub fn audit_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.0.audit_page(rollout, cursor, limit)
    }

    pub fn audit_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.0.audit_page_of(rollout, run, cursor, limit)
    }

    pub fn analyses_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        self.0.analyses_page(rollout, cursor, limit)
    }

    pub fn analyses_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        self.0.analyses_page_of(rollout, run, cursor, limit)
    }

    pub fn runs(&self, rollout: &str) -> Result<Vec<RunRecord>, StoreError> {
        self.0.runs(rollout)
    }

    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.0.outbox_counts()
    }

    pub fn flag<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<super::Flag<T>>, StoreError> {
        self.0.flag(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// A caller's own error type, as the API and the pages have.
    #[derive(Debug)]
    enum Caller {
        Store(StoreError),
        Refused,
    }

    impl From<StoreError> for Caller {
        fn from(e: StoreError) -> Self {
            Caller::Store(e)
        }
    }

    #[tokio::test]
    async fn a_call_returns_the_closures_answer_or_its_own_error_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_flag("emergency-stop", &"drill".to_string(), Utc::now())
            .unwrap();
        let flag = store
            .call(|s| s.read_only().flag::<String>("emergency-stop"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(flag.value, "drill");
        let refused: Result<(), Caller> = store.call(|_| Err(Caller::Refused)).await;
        assert!(matches!(refused, Err(Caller::Refused)), "{refused:?}");
    }

    #[tokio::test]
    async fn a_call_whose_task_panics_is_a_task_error_naming_the_database_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let failed: Result<u8, Caller> = store.call(|_| panic!("a bug in a query")).await;
        let Err(Caller::Store(error)) = failed else {
            panic!("expected a store error, got {failed:?}");
        };
        assert!(matches!(error, StoreError::Task { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&store.path().display().to_string()) && message.contains("panicked"),
            "{message}"
        );
        assert!(
            !error.is_storage_failure(),
            "a bug is not a storage failure"
        );
        // The store still answers afterwards.
        let counts = store.call(|s| s.read_only().outbox_counts()).await.unwrap();
        assert_eq!(counts.pending, 0);
    }
}
