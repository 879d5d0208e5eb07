use std::os::unix::fs::PermissionsExt;

use super::*;

fn entry(refresh: &str) -> Entry {
    Entry {
        grant: Grant::DeviceCode,
        issuer: Some("https://id.example".into()),
        token_endpoint: "https://id.example/token".into(),
        client_id: "cli".into(),
        client_secret_file: None,
        scopes: vec!["openid".into()],
        audience: None,
        access_token: Secret::new(format!("at-{refresh}")),
        token_type: "Bearer".into(),
        expires_at: Some(unix_now() + 600),
        refresh_token: Some(Secret::new(refresh)),
        updated_at: unix_now(),
    }
}

fn creds(refresh: &str) -> Credentials {
    let mut c = Credentials::default();
    c.gateways.insert("https://gw.example".into(), entry(refresh));
    c
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

fn refresh_in(store: &CredentialsStore) -> String {
    let c = store.read().expect("read").credentials;
    c.gateways["https://gw.example"].refresh_token.as_ref().expect("refresh token").expose().to_owned()
}

#[tokio::test]
async fn checklist_38_write_is_atomic_0600_and_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CredentialsStore::new(dir.path().join("sub/credentials.json"));
    assert!(store.read().expect("missing file reads as empty").credentials.gateways.is_empty());
    let lock = store.lock().await.expect("lock");
    let original = creds("r1");
    lock.write(&original).expect("write");
    drop(lock);
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir.path().join("sub")), 0o700, "the folder is created private");
    assert_eq!(store.read().expect("read").credentials, original);
    assert!(leftovers(&dir.path().join("sub")).is_empty());
    let text = std::fs::read_to_string(store.path()).expect("read");
    assert!(text.contains("\"refresh_token\": \"r1\""), "{text}");
}

#[tokio::test]
async fn checklist_38_full_disk_during_write_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CredentialsStore::new(dir.path().join("credentials.json"));
    let lock = store.lock().await.expect("lock");
    lock.write(&creds("r1")).expect("write");
    let err = lock
        .write_with(&creds("r2"), |f, b| {
            f.write_all(&b[..b.len() / 2])?;
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        })
        .expect_err("the write fails");
    assert!(err.to_string().contains("write"), "{err}");
    assert_eq!(refresh_in(&store), "r1", "the old refresh token is still there");
    assert_eq!(mode(store.path()), 0o600);
    assert!(leftovers(dir.path()).is_empty(), "the partial temp file is removed");
}

#[tokio::test]
async fn checklist_38_a_crash_mid_write_leaves_the_old_file_and_the_debris_is_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CredentialsStore::new(dir.path().join("credentials.json"));
    let lock = store.lock().await.expect("lock");
    lock.write(&creds("r1")).expect("write");
    // What a process killed between create and rename leaves behind.
    let debris = dir.path().join(".credentials.json.tmp-4242-deadbeef");
    std::fs::write(&debris, b"{\"version\": 1, \"gatew").expect("debris");
    assert_eq!(refresh_in(&store), "r1", "readers never see the temp file");
    lock.write(&creds("r2")).expect("write");
    assert_eq!(refresh_in(&store), "r2");
    assert!(leftovers(dir.path()).is_empty(), "stale temp files are removed under the lock");
}

#[tokio::test]
async fn checklist_38_a_symlink_at_the_path_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("elsewhere.json");
    let original = serde_json::to_vec(&creds("r1")).expect("json");
    std::fs::write(&target, &original).expect("target");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let path = dir.path().join("credentials.json");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let store = CredentialsStore::new(&path);

    assert!(matches!(store.read(), Err(StoreError::Symlink(_))));
    let lock = store.lock().await.expect("the lock file is separate");
    assert!(matches!(lock.read(), Err(StoreError::Symlink(_))));
    let err = lock.write(&creds("r2")).expect_err("refused");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&path).expect("lstat").file_type().is_symlink(), "the link is kept");
    assert_eq!(std::fs::read(&target).expect("target"), original, "the target is untouched");
    assert_eq!(mode(&target), 0o644);
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn checklist_38_a_symlinked_lock_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials.json");
    std::os::unix::fs::symlink(dir.path().join("other"), dir.path().join("credentials.json.lock")).expect("symlink");
    let store = CredentialsStore::new(&path);
    assert!(matches!(store.lock().await, Err(StoreError::Symlink(_))));
    assert!(!dir.path().join("other").exists(), "nothing created through the link");
}

#[tokio::test]
async fn checklist_38_a_0644_file_is_rewritten_0600_without_losing_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials.json");
    let original = creds("r1");
    std::fs::write(&path, serde_json::to_vec(&original).expect("json")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = CredentialsStore::new(&path);
    assert_eq!(store.read().expect("read").loose_mode, Some(0o644));
    let lock = store.lock().await.expect("lock");
    assert_eq!(lock.read().expect("read"), original);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(store.read().expect("read").loose_mode, None);
    assert_eq!(refresh_in(&store), "r1");
}

#[tokio::test]
async fn checklist_38_a_folder_or_a_newer_format_at_the_path_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CredentialsStore::new(dir.path());
    assert!(matches!(store.read(), Err(StoreError::NotAFile(_))));

    let path = dir.path().join("credentials.json");
    std::fs::write(&path, br#"{"version": 2, "gateways": {}}"#).expect("write");
    let store = CredentialsStore::new(&path);
    assert!(matches!(store.read(), Err(StoreError::Version { version: 2, .. })));
    std::fs::write(&path, b"not json").expect("write");
    let err = store.read().expect_err("malformed");
    assert!(!err.to_string().contains("not json"), "content is never echoed: {err}");
}

#[tokio::test]
async fn checklist_38_the_lock_serialises_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CredentialsStore::new(dir.path().join("credentials.json"));
    let first = store.lock().await.expect("lock");
    let other = store.clone();
    let waiter = tokio::spawn(async move {
        let _second = other.lock().await.expect("lock");
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "a second holder waits");
    let released = Instant::now();
    drop(first);
    let acquired = waiter.await.expect("join");
    assert!(acquired >= released);
}

#[test]
fn secrets_never_show_in_debug() {
    let text = format!("{:?}", creds("very-secret-refresh"));
    assert!(!text.contains("very-secret"), "{text}");
    assert!(text.contains("[redacted]"));
}
