use super::*;

const K1: &str = "0123456789abcdef0123456789abcdef-v1";

fn plain_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("active"), "v1\n").expect("write");
    fs::write(dir.path().join("v1"), K1).expect("write");
    dir
}

/// A folder as the kubelet projects a Secret.
fn projected(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let ts = dir.path().join("..2025_06_01_12_00_00.1");
    fs::create_dir(&ts).expect("mkdir");
    for (name, contents) in files {
        fs::write(ts.join(name), contents).expect("write");
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name)).expect("link");
    }
    std::os::unix::fs::symlink("..2025_06_01_12_00_00.1", dir.path().join("..data")).expect("link");
    dir
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").mode() & 0o777
}

#[test]
fn rotate_then_retire_in_a_plain_folder() {
    let dir = plain_keys();
    let d = dir.path();
    let r = rotate(d, None).expect("rotate");
    assert_eq!(r, Rotated { active: "v2".into(), previous: Some("v1".into()), created_folder: false });
    let m = KeyMaterial::read_dir(d).expect("valid after rotate");
    assert_eq!(m.active, "v2");
    let key = m.keys["v2"].expose();
    assert_eq!(key.len(), 64);
    assert!(key.iter().all(u8::is_ascii_hexdigit));
    assert_eq!(mode(&d.join("v2")), 0o600, "new key file is 0600");
    assert_eq!(rotate(d, None).expect("rotate").active, "v3");
    assert_ne!(KeyMaterial::read_dir(d).expect("valid").keys["v3"].expose(), key, "fresh random key");
    assert!(matches!(retire(d, "v3"), Err(AdminError::Refused(m)) if m.contains("active")));
    assert!(matches!(retire(d, "v9"), Err(AdminError::Refused(_))));
    retire(d, "v1").expect("retire");
    let m = KeyMaterial::read_dir(d).expect("valid after retire");
    assert_eq!(m.keys.keys().collect::<Vec<_>>(), ["v2", "v3"]);
    assert!(matches!(rotate(d, Some("v2")), Err(AdminError::Refused(_))), "existing version");
    assert!(matches!(rotate(d, Some("..data")), Err(AdminError::Refused(_))));
    let leftovers: Vec<_> = fs::read_dir(d).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 3, "no temporary files left: {leftovers:?}");
}

#[test]
fn rotate_creates_the_first_key_in_a_missing_or_empty_folder() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = root.path().join("secrets/keys");
    let r = rotate(&d, None).expect("a missing folder is created");
    assert_eq!(r, Rotated { active: "v1".into(), previous: None, created_folder: true });
    assert_eq!(mode(&d), 0o700, "a new key folder is 0700");
    assert_eq!((mode(&d.join("v1")), mode(&d.join("active"))), (0o600, 0o600));
    let m = KeyMaterial::read_dir(&d).expect("a valid folder");
    assert_eq!((m.active.as_str(), m.keys.len()), ("v1", 1));
    assert_eq!(rotate(&d, None).expect("then rotates").previous.as_deref(), Some("v1"));

    let empty = tempfile::tempdir().expect("tempdir");
    fs::write(empty.path().join(".gitkeep"), "").expect("write");
    let r = rotate(empty.path(), Some("k1")).expect("an empty folder gets its first key");
    assert_eq!(r, Rotated { active: "k1".into(), previous: None, created_folder: false });
    assert_eq!(KeyMaterial::read_dir(empty.path()).expect("valid").active, "k1");

    let file = root.path().join("file");
    fs::write(&file, "x").expect("write");
    assert!(matches!(rotate(&file, None), Err(AdminError::Refused(m)) if m.contains("not a folder")));
}

#[test]
fn errors_say_once_what_failed() {
    let root = tempfile::tempdir().expect("tempdir");
    let missing = root.path().join("missing");
    let e = anyhow::Error::from(retire(&missing, "v1").expect_err("no folder"));
    let text = format!("{e:#}");
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
    // Keys without `active`: what is wrong and what to do.
    fs::create_dir(root.path().join("k")).expect("mkdir");
    fs::write(root.path().join("k/v1"), K1).expect("write");
    let text = rotate(&root.path().join("k"), None).expect_err("no active").to_string();
    assert!(text.contains("\"active\"") && text.contains("wasmgate keys rotate"), "{text}");
}

#[test]
fn rotate_refuses_an_invalid_folder_and_foreign_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("v1"), K1).expect("write");
    assert!(matches!(rotate(dir.path(), None), Err(AdminError::Refused(m)) if m.contains("active")), "no active file");
    let dir = plain_keys();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    fs::write(elsewhere.path().join("active"), "v1").expect("write");
    fs::remove_file(dir.path().join("active")).expect("rm");
    std::os::unix::fs::symlink(elsewhere.path().join("active"), dir.path().join("active")).expect("link");
    assert!(matches!(rotate(dir.path(), None), Err(AdminError::Refused(m)) if m.contains("symlink")));
    assert!(dir.path().join("v2").symlink_metadata().is_err(), "a refusal changes nothing");
}

#[test]
fn rotate_and_retire_in_a_kubernetes_layout_swap_data_once() {
    let dir = projected(&[("active", "v1\n"), ("v1", K1)]);
    let d = dir.path();
    let before = fs::read_link(d.join("..data")).expect("link");
    rotate(d, None).expect("rotate");
    let after = fs::read_link(d.join("..data")).expect("link");
    assert_ne!(before, after, "..data swapped");
    assert!(!d.join(&before).exists(), "old timestamp folder removed");
    assert_eq!(fs::read_link(d.join("v2")).expect("link"), Path::new("..data/v2"));
    let m = KeyMaterial::read_dir(d).expect("valid");
    assert_eq!((m.active.as_str(), m.keys.len()), ("v2", 2));
    assert_eq!(mode(&d.join("v2")), 0o600);
    retire(d, "v1").expect("retire");
    assert!(d.join("v1").symlink_metadata().is_err(), "visible link removed");
    let m = KeyMaterial::read_dir(d).expect("valid");
    assert_eq!(m.keys.keys().collect::<Vec<_>>(), ["v2"]);
    let names: Vec<_> = fs::read_dir(d).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 4, "active, v2, ..data and one timestamp folder: {names:?}");
}

#[test]
fn revoke_creates_appends_and_keeps_the_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("revoked");
    assert!(revoke(&p, "j1", Some(2000), 1000, 30).expect("create"));
    assert_eq!(mode(&p), 0o644, "a new list is 0644 like a ConfigMap");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert!(revoke(&p, "j2", None, 1000, 30).expect("append"));
    assert!(!revoke(&p, "j2", None, 1000, 30).expect("again"), "already listed");
    assert_eq!(mode(&p), 0o640, "the existing mode is kept");
    let set = revoked::RevokedSet::read(&p).expect("read").0;
    assert!(set.contains("j1") && set.contains("j2"));
    // j1 expired (2000 + 30 < 5000): pruned on the next write.
    revoke(&p, "j3", None, 5000, 30).expect("append");
    let set = revoked::RevokedSet::read(&p).expect("read").0;
    assert!(!set.contains("j1") && set.contains("j2") && set.contains("j3"));
    assert!(fs::read_to_string(&p).expect("read").starts_with("# Revoked"), "comment kept");
    assert!(matches!(revoke(&p, "a b", None, 0, 0), Err(AdminError::Refused(_))));
    assert!(matches!(revoke(&p, "", None, 0, 0), Err(AdminError::Refused(_))));
}

#[test]
fn revoke_refuses_a_foreign_symlink_and_follows_a_configmap_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("real");
    fs::write(&target, "").expect("write");
    let link = dir.path().join("revoked");
    std::os::unix::fs::symlink(&target, &link).expect("link");
    assert!(matches!(revoke(&link, "j1", None, 0, 0), Err(AdminError::Refused(m)) if m.contains("symlink")));
    assert_eq!(fs::read_to_string(&target).expect("read"), "", "target untouched");

    let cm = projected(&[("revoked", "old\n"), ("other", "x")]);
    let p = cm.path().join("revoked");
    revoke(&p, "j1", Some(99), 0, 0).expect("revoke via ..data");
    assert_eq!(fs::read_link(&p).expect("still a link"), Path::new("..data/revoked"));
    assert_eq!(fs::read_to_string(&p).expect("read"), "old\nj1 99\n");
    assert_eq!(fs::read_to_string(cm.path().join("other")).expect("read"), "x", "other files carried over");
}
