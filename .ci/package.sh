#!/usr/bin/env bash
# The Debian package (issue 11): build it with cargo-deb, check its file list, install it,
# verify the installed units, run the installed binary, and remove and purge it cleanly.
# Runs as root (CI does). The package is built from the dev profile, which `cargo test`
# shares, so this costs seconds rather than a release build's minutes; cargo-deb is pinned
# because it plans to refuse the dev profile (admins run plain `cargo deb`, release).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
if ! command -v systemd-analyze >/dev/null; then
  apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

rm -rf target/debian
cargo deb --fast --no-dbgsym --profile dev 2>&1 | grep -v "dev profile is not supported\|debug symbols set\|^ *To enable" || true
deb=$(ls target/debian/entra-sync_*.deb)
echo "package: $deb ($(stat -c %s "$deb") bytes)"

fail() { echo "package check FAILED: $*" >&2; exit 1; }

# The file list: what README and issue 11 promise, nothing in /usr/local.
listing=$(dpkg-deb -c "$deb")
for want in \
  '-rwxr-xr-x 0/0 .* ./usr/bin/entra-sync$' \
  '-rw-r--r-- 0/0 .* ./usr/lib/systemd/system/entra-sync.service$' \
  '-rw-r--r-- 0/0 .* ./usr/lib/systemd/system/entra-sync@.service$' \
  '-rw-r----- 0/0 .* ./etc/entra-sync/config.toml$' \
  '-rw-r--r-- 0/0 .* ./usr/share/doc/entra-sync/README.md$' \
  '-rw-r--r-- 0/0 .* ./usr/share/doc/entra-sync/SCHEMA.md$' \
  '-rw-r--r-- 0/0 .* ./usr/share/doc/entra-sync/copyright$' \
  '-rw-r--r-- 0/0 .* ./usr/share/doc/entra-sync/contrib/datasette/metadata.yml$'; do
  grep -Eq -- "$want" <<<"$listing" || fail "no file matching '$want' in:\n$listing"
done
if grep -q '/usr/local' <<<"$listing"; then fail "files under /usr/local"; fi
[ "$(dpkg-deb -f "$deb" Package)" = entra-sync ] || fail "package name"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/entra-sync/config.toml \
  || fail "config.toml is not a conffile"

# A leftover install from an earlier run would hide a broken install.
dpkg -r entra-sync >/dev/null 2>&1 || true
dpkg -i "$deb"
installed_version=$(/usr/bin/entra-sync --version)
[ "$installed_version" = "entra-sync $(dpkg-deb -f "$deb" Version | cut -d- -f1)" ] \
  || fail "/usr/bin/entra-sync --version says '$installed_version'"
echo "installed: $installed_version"
[ "$(stat -c '%a %U %G' /etc/entra-sync/config.toml)" = "640 root entra-sync-config" ] \
  || fail "config.toml is $(stat -c '%a %U %G' /etc/entra-sync/config.toml)"
# Installed, not enabled or started: the admin configures first.
for unit in entra-sync.service entra-sync@.service; do
  if ls /etc/systemd/system/*.wants/"$unit" >/dev/null 2>&1; then fail "$unit is enabled"; fi
done
# The units as installed, with the binary where they say it is. LoadCredential's secret file
# is the admin's to create; verify checks unit syntax, directives and the executable.
unit_dir=/usr/lib/systemd/system
grep -q '^ExecStart=/usr/bin/entra-sync ' "$unit_dir/entra-sync.service" || fail "ExecStart path"
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$unit_dir/entra-sync.service" "$unit_dir/entra-sync@demo.service" \
  || fail "systemd-analyze verify"

dpkg -r entra-sync
[ ! -e /usr/bin/entra-sync ] || fail "/usr/bin/entra-sync left after removal"
[ ! -e "$unit_dir/entra-sync.service" ] || fail "unit left after removal"
# dpkg -r keeps conffiles (an admin's edits); purge removes them and the group.
dpkg -P entra-sync
[ ! -e /etc/entra-sync/config.toml ] || fail "config.toml left after purge"
if getent group entra-sync-config >/dev/null; then fail "group left after purge"; fi
if dpkg -s entra-sync >/dev/null 2>&1; then fail "still known to dpkg after purge"; fi
echo "package check passed: built, listed, installed, verified, removed, purged"
