//! Who may change the files entra-sync trusts (issue 7 item 2): the config file says where the
//! credential is sent, so a file (or a directory holding it) that another local user can write
//! would let that user redirect the secret. Such files are refused, not warned about.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Set on `/tmp`-like directories: others may create files there but not replace ours.
const STICKY: u32 = 0o1000;

/// Refuses `path` (a file) when group or others may write it, or when it is owned by someone
/// other than root or the user entra-sync runs as; then the same for the directory holding
/// it (a directory others may write is accepted when it has the sticky bit, as `/tmp` has).
/// Directories further up are not checked. `what` names the file in the message, e.g.
/// "client_certificate_file". A file that does not exist passes: reading it reports that.
pub(super) fn check_trusted(path: &Path, what: &str) -> Result<(), String> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Unreadable metadata: the read that follows reports it in its own words.
        Err(_) => return Ok(()),
    };
    let shown = path.display();
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} {shown} is writable by {} (mode {mode:04o}, owner {}), so another local user \
             could change it; run: chmod go-w {shown}",
            writers(mode),
            owner_name(meta.uid()),
        ));
    }
    check_owner(
        meta.uid(),
        &format!("{what} {shown}"),
        mode,
        &shown.to_string(),
    )?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let Ok(dir_meta) = fs::metadata(&dir) else {
        return Ok(());
    };
    let dir_shown = dir.display().to_string();
    let dir_mode = dir_meta.permissions().mode() & 0o7777;
    if dir_mode & 0o022 != 0 && dir_mode & STICKY == 0 {
        return Err(format!(
            "the directory {dir_shown} holding {what} {shown} is writable by {} (mode {dir_mode:04o}, \
             owner {}), so another local user could replace the file; run: chmod go-w {dir_shown} \
             (or move the file to a directory only root or this user can write)",
            writers(dir_mode),
            owner_name(dir_meta.uid()),
        ));
    }
    check_owner(
        dir_meta.uid(),
        &format!("the directory {dir_shown} holding {what} {shown}"),
        dir_mode,
        &dir_shown,
    )
}

fn check_owner(uid: u32, described: &str, mode: u32, shown: &str) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if uid == 0 || uid == me {
        return Ok(());
    }
    let runs_as = if me == 0 {
        String::new()
    } else {
        format!(" or by {}, which entra-sync runs as", owner_name(me))
    };
    Err(format!(
        "{described} is owned by {} (mode {mode:04o}), not by root{runs_as}, so that user could \
         change it; run: chown {} {shown}",
        owner_name(uid),
        user_name(me).unwrap_or_else(|| me.to_string()),
    ))
}

/// "group", "others" or "group and others".
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// `alice (uid 1000)`, or `uid 1000` when the user has no name.
fn owner_name(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("user {name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The warning for a credential file that group or others may read (mode `& 0o077`).
/// `what` names the file, e.g. "client_secret_file /etc/entra-sync/client-secret".
pub(super) fn readable_warning(path: &Path, what: &str) -> Option<String> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} is readable by other users (mode {mode:04o}); run: chmod 600 {}",
            path.display()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn writable_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644, 0o640, 0o400] {
            let path = file(dir.path(), "ok", mode);
            assert_eq!(check_trusted(&path, "config file"), Ok(()), "{mode:o}");
        }
        for (mode, who) in [
            (0o664, "its group"),
            (0o646, "others"),
            (0o666, "group and others"),
        ] {
            let path = file(dir.path(), "bad", mode);
            let message = check_trusted(&path, "config file").unwrap_err();
            let shown = path.display();
            assert!(
                message.starts_with(&format!(
                    "config file {shown} is writable by {who} (mode {mode:04o}, owner "
                )),
                "{message}"
            );
            assert!(
                message.ends_with(&format!("run: chmod go-w {shown}")),
                "{message}"
            );
        }
        assert_eq!(
            check_trusted(&dir.path().join("absent"), "config file"),
            Ok(())
        );
    }

    #[test]
    fn a_writable_directory_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("conf");
        fs::create_dir(&sub).unwrap();
        let path = file(&sub, "config.toml", 0o600);
        for mode in [0o777, 0o775, 0o757] {
            fs::set_permissions(&sub, fs::Permissions::from_mode(mode)).unwrap();
            let message = check_trusted(&path, "config file").unwrap_err();
            let shown = sub.display();
            assert!(
                message.starts_with(&format!(
                    "the directory {shown} holding config file {} is writable by",
                    path.display()
                )),
                "{message}"
            );
            assert!(message.contains(&format!("(mode {mode:04o}")), "{message}");
            assert!(
                message.contains(&format!("run: chmod go-w {shown}")),
                "{message}"
            );
        }
        // Like /tmp: others may write, but the sticky bit keeps them from replacing our file.
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_trusted(&path, "config file"), Ok(()));
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_trusted(&path, "config file"), Ok(()));
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        // Only root can make a file another user owns; elsewhere the rule is exercised through
        // check_owner directly.
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(check_owner(0, "f", 0o600, "f"), Ok(()));
        assert_eq!(check_owner(me, "f", 0o600, "f"), Ok(()));
        let other = if me == 4242 { 4243 } else { 4242 };
        let message = check_owner(other, "config file /x", 0o600, "/x").unwrap_err();
        assert!(
            message.starts_with(&format!(
                "config file /x is owned by uid {other} (mode 0600), not by root"
            )),
            "{message}"
        );
        assert!(message.contains("run: chown "), "{message}");
        assert!(message.ends_with(" /x"), "{message}");
        if me == 0 {
            let dir = tempfile::tempdir().unwrap();
            let path = file(dir.path(), "config.toml", 0o600);
            std::os::unix::fs::chown(&path, Some(other), None).unwrap();
            let message = check_trusted(&path, "config file").unwrap_err();
            assert!(
                message.contains(&format!("is owned by uid {other}")),
                "{message}"
            );
            // The directory, too.
            let path = file(dir.path(), "mine.toml", 0o600);
            std::os::unix::fs::chown(dir.path(), Some(other), None).unwrap();
            let message = check_trusted(&path, "config file").unwrap_err();
            assert!(message.starts_with("the directory "), "{message}");
            assert!(
                message.contains(&format!("owned by uid {other}")),
                "{message}"
            );
        }
    }

    #[test]
    fn group_readable_credentials_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "key.pem", 0o640);
        assert_eq!(
            readable_warning(&path, "client_certificate_file x"),
            Some(format!(
                "client_certificate_file x is readable by other users (mode 0640); run: chmod 600 {}",
                path.display()
            ))
        );
        let path = file(dir.path(), "key2.pem", 0o600);
        assert_eq!(readable_warning(&path, "x"), None);
    }
}
