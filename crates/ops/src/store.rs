//! S3-compatible object storage for backups (`ops.backup.s3`): the same
//! layout as the local catalogue, `<prefix><id>/<file>`, with
//! `manifest.json` uploaded last. Every upload is checked afterwards: the
//! stored object must have the local file's size and the ETag its upload
//! returned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chatbot_common::config::S3Settings;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::catalog::{self, MANIFEST};
use crate::error::OpsError;
use crate::manifest::{self, Manifest};

/// Size of the parts of an upload (S3 wants at least 5 MiB but for the last).
const PART: usize = 8 << 20;
/// Parts uploaded at once.
const PARALLEL_PARTS: usize = 2;

/// A bucket holding backups under a prefix.
#[derive(Debug)]
pub struct Bucket {
    store: AmazonS3,
    name: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

/// A backup as found in the bucket: the files of ours it holds.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its id.
    pub id: String,
    /// Its files (known names only).
    pub files: BTreeSet<String>,
}

impl Bucket {
    /// The bucket of `settings`; `None` when no bucket is configured.
    /// Credentials: `access_key_id`/`secret_access_key`, else the standard
    /// `AWS_*` variables. An `http://` endpoint allows plain HTTP.
    pub fn from_settings(settings: &S3Settings) -> Result<Option<Self>, OpsError> {
        if settings.bucket.is_empty() {
            return Ok(None);
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_retry(retry())
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if !settings.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&settings.endpoint)
                .with_allow_http(settings.endpoint.starts_with("http://"));
        }
        if !settings.region.is_empty() {
            builder = builder.with_region(&settings.region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key.expose());
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .map_err(|e| OpsError::Usage(format!("ops.backup.s3: {e}")))?;
        let mut prefix = settings.prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Some(Self {
            store,
            name: settings.bucket.clone(),
            prefix,
        }))
    }

    /// `s3://bucket/prefix/id/`.
    pub fn url(&self, id: &str) -> String {
        format!("s3://{}/{}{id}/", self.name, self.prefix)
    }

    fn key(&self, id: &str, file: &str) -> Key {
        Key::from(format!("{}{id}/{file}", self.prefix))
    }

    fn fail(&self, what: &str, key: &Key, e: &object_store::Error) -> OpsError {
        OpsError::storage(format!("{what} s3://{}/{key}", self.name), e)
    }

    /// Uploads the local file `path` as `id/file` and checks the stored copy.
    pub async fn upload(&self, id: &str, file: &str, path: &Path) -> Result<(), OpsError> {
        let key = self.key(id, file);
        let mut local = tokio::fs::File::open(path)
            .await
            .map_err(|e| OpsError::io(format!("reading {}", path.display()), e))?;
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.fail("uploading", &key, &e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0_u8; 1 << 20];
        let mut size = 0_u64;
        loop {
            let n = match local.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(OpsError::io(format!("reading {}", path.display()), e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARALLEL_PARTS).await {
                return Err(self.fail("uploading", &key, &e));
            }
            writer.write(&buf[..n]);
            size += n as u64;
        }
        let done = writer
            .finish()
            .await
            .map_err(|e| self.fail("uploading", &key, &e))?;
        self.verify(&key, size, done.e_tag).await
    }

    /// Uploads `manifest` as `id/manifest.json` and checks the stored copy.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<(), OpsError> {
        let key = self.key(&manifest.id, MANIFEST);
        let bytes = manifest.to_bytes();
        let size = bytes.len() as u64;
        let done = self
            .store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|e| self.fail("uploading", &key, &e))?;
        self.verify(&key, size, done.e_tag).await
    }

    /// The stored object has `size` bytes and the ETag its upload returned.
    async fn verify(&self, key: &Key, size: u64, e_tag: Option<String>) -> Result<(), OpsError> {
        let meta = self
            .store
            .head(key)
            .await
            .map_err(|e| self.fail("checking", key, &e))?;
        if meta.size != size || (e_tag.is_some() && meta.e_tag != e_tag) {
            return Err(OpsError::Storage(format!(
                "s3://{}/{key} was not stored as sent: {} bytes (ETag {:?}) instead of {size} \
                 bytes (ETag {e_tag:?})",
                self.name, meta.size, meta.e_tag
            )));
        }
        Ok(())
    }

    /// The manifest of backup `id`, `None` when the bucket has none.
    pub async fn manifest(&self, id: &str) -> Result<Option<Manifest>, OpsError> {
        let what = format!("s3://{}/{}", self.name, self.key(id, MANIFEST));
        match self.manifest_bytes(id).await? {
            Some(bytes) => Manifest::from_bytes(&bytes, &what).map(Some),
            None => Ok(None),
        }
    }

    /// Whether backup `id` has a manifest saying it is complete.
    pub async fn is_good(&self, id: &str) -> Result<bool, OpsError> {
        Ok(self
            .manifest_bytes(id)
            .await?
            .is_some_and(|bytes| catalog::says_complete(&bytes)))
    }

    async fn manifest_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, OpsError> {
        let key = self.key(id, MANIFEST);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail("reading", &key, &e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.fail("reading", &key, &e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Downloads `id/file` to the local file `dest`.
    pub async fn download(&self, id: &str, file: &str, dest: &Path) -> Result<(), OpsError> {
        let key = self.key(id, file);
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.fail("downloading", &key, &e))?;
        let io = |e| OpsError::io(format!("writing {}", dest.display()), e);
        let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fail("downloading", &key, &e))?;
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)
    }

    /// Every backup under the prefix with the files of ours it holds; keys
    /// that are not `<prefix><id>/<known file>` are not ours and left out.
    pub async fn list(&self) -> Result<Vec<Listed>, OpsError> {
        let prefix = Key::from(self.prefix.trim_end_matches('/'));
        let scope = (!self.prefix.is_empty()).then_some(&prefix);
        let mut objects = self.store.list(scope);
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| self.fail("listing", &prefix, &e))?;
            if let Some((id, file)) = self.ours(meta.location.as_ref()) {
                found
                    .entry(id.to_owned())
                    .or_default()
                    .insert(file.to_owned());
            }
        }
        Ok(found
            .into_iter()
            .map(|(id, files)| Listed { id, files })
            .collect())
    }

    /// `(id, file)` when `key` is one of our backup files.
    fn ours<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let (id, file) = key.strip_prefix(&self.prefix)?.split_once('/')?;
        (catalog::started(id).is_some() && manifest::is_known(file)).then_some((id, file))
    }

    /// Deletes `id/file`.
    pub async fn delete(&self, id: &str, file: &str) -> Result<(), OpsError> {
        let key = self.key(id, file);
        self.store
            .delete(&key)
            .await
            .map_err(|e| self.fail("deleting", &key, &e))
    }
}

/// A few quick retries: a backup run should fail in seconds, not minutes,
/// when the storage is down.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}
