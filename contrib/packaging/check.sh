#!/usr/bin/env bash
# Builds the .deb and the .rpm and checks them for real: the .deb's contents
# and control data, the unit (systemd-analyze verify), an install on THIS
# machine (accounts, modes, `check` as the service user, the agent started as
# the unit starts it), an upgrade over an edited config, removal and purge;
# the rpm's files and scriptlets.
#
# Run as root on a throwaway machine or container: it installs and purges
# kapacitor-pagertree, and may apt-get install rpm. Accounts it had to create
# it deletes at the end. Usage: contrib/packaging/check.sh [--no-build] [2>&1 | tee LOG]
# (--no-build: check the newest packages in target/debian and target/generate-rpm.)
set -euo pipefail
cd "$(dirname "$0")/../.."

section() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
skipped() { printf 'SKIPPED: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
# expect_stat PATH "MODE OWNER:GROUP"
expect_stat() {
    local got
    got=$(stat -c '%a %U:%G' "$1")
    [ "$got" = "$2" ] || fail "$1 is $got, want $2"
    ok "$1 $got"
}

[ "$(id -u)" = 0 ] || fail "run as root: this installs and purges the package"
if dpkg -s kapacitor-pagertree >/dev/null 2>&1; then
    fail "kapacitor-pagertree is installed already; this check installs and purges it"
fi
had_group=$(getent group kapacitor >/dev/null && echo yes || echo no)
had_kapacitor=$(id kapacitor >/dev/null 2>&1 && echo yes || echo no)
had_agent_user=$(id kapacitor-pagertree >/dev/null 2>&1 && echo yes || echo no)
# On any exit: the accounts this check made go again (they outlive a purge).
cleanup_accounts() {
    if [ "$had_agent_user" = no ] && id kapacitor-pagertree >/dev/null 2>&1; then userdel kapacitor-pagertree; fi
    if [ "$had_kapacitor" = no ] && id kapacitor >/dev/null 2>&1; then userdel kapacitor; fi
    if [ "$had_group" = no ] && getent group kapacitor >/dev/null; then groupdel kapacitor; fi
}
trap cleanup_accounts EXIT

section "tools"
for tool in deb generate-rpm; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "installing cargo-$tool (minutes)"
        cargo install "cargo-$tool" --locked
    fi
    cargo "$tool" --version
done

if [ "${1:-}" = --no-build ]; then
    section "build: skipped (--no-build), checking the packages already built"
else
    section "build (contrib/packaging/build.sh)"
    contrib/packaging/build.sh
fi
deb=$(ls -t target/debian/kapacitor-pagertree_*.deb | head -1)
rpm=$(ls -t target/generate-rpm/kapacitor-pagertree-*.rpm | head -1)
# One page per command and subcommand (kapacitor-pagertree-outbox-list.1…).
pages=$(cd target/assets/man && ls -- *.1)
[ "$(echo "$pages" | wc -l)" -ge 10 ] || fail "too few man pages in target/assets/man: $pages"

section "dpkg-deb -c $deb"
contents=$(dpkg-deb -c "$deb")
echo "$contents"
has() {
    # has MODE PATH-REGEX: one entry of the .deb with that mode string.
    echo "$contents" | grep -Eq "^$1 (root/root|0/0) .* \./$2\$" || fail "the .deb lacks $1 ./$2"
    ok "$1 ./$2"
}
has '-rwxr-xr-x' 'usr/bin/kapacitor-pagertree'
has '-rw-r-----' 'etc/kapacitor-pagertree\.toml'
has '-rw-r--r--' '(usr/)?lib/systemd/system/kapacitor-pagertree\.service'
has '-rw-r--r--' 'usr/share/doc/kapacitor-pagertree/README\.md'
has '-rw-r--r--' 'usr/share/doc/kapacitor-pagertree/kapacitor\.conf'
has '-rw-r--r--' 'usr/share/doc/kapacitor-pagertree/tickscripts/high_cpu\.tick'
has '-rw-r--r--' 'usr/share/doc/kapacitor-pagertree/tickscripts/high_cpu\.lp'
for page in $pages; do
    has '-rw-r--r--' "usr/share/man/man1/${page//./\\.}\\.gz"
done
has '-rw-r--r--' 'usr/share/bash-completion/completions/kapacitor-pagertree'
has '-rw-r--r--' 'usr/share/zsh/vendor-completions/_kapacitor-pagertree'
has '-rw-r--r--' 'usr/share/fish/vendor_completions.d/kapacitor-pagertree\.fish'
unit_path=/$(echo "$contents" | grep -Eo '(usr/)?lib/systemd/system/kapacitor-pagertree\.service$')

section "dpkg-deb -I $deb"
dpkg-deb -I "$deb"
control=$(dpkg-deb -I "$deb" control)
echo "$control" | grep -q '^Package: kapacitor-pagertree$' || fail "Package"
echo "$control" | grep -Eq '^Depends: .*passwd' || fail "Depends lacks passwd (useradd)"
echo "$control" | grep -Eq '^Depends: .*libc6' || fail "Depends lacks libc6 (\$auto)"
ok "control: Package, Depends ($(echo "$control" | sed -n 's/^Depends: //p'))"
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/kapacitor-pagertree.toml ] || fail "conffiles"
ok "conffiles: /etc/kapacitor-pagertree.toml"
postinst=$(dpkg-deb -I "$deb" postinst)
echo "$postinst" | grep -q 'deb-systemd-helper enable kapacitor-pagertree.service' || fail "postinst does not enable the unit"
echo "$postinst" | grep -q 'try-restart' || fail "postinst does not restart on upgrade"
! echo "$postinst" | grep -Eq '_dh_action=start|invoke start' || fail "postinst starts the unit"
ok "postinst: enables the unit, try-restart on upgrade, no start on install"
grep -q 'outbox list' <<<"$(dpkg-deb -I "$deb" prerm)" || fail "prerm does not list the outbox"
grep -q 'rm -rf /var/lib/kapacitor-pagertree' <<<"$(dpkg-deb -I "$deb" postrm)" || fail "postrm purge"
ok "prerm lists the outbox; postrm purges the data directory"

# A maintainer script that runs but breaks (a word run as a command, a
# missing tool) shows as "not found" in dpkg's output, not as a failure.
no_script_errors() {
    if grep -E 'not found|command not found|syntax error|Permission denied' "$1"; then
        fail "a maintainer script went wrong ($1)"
    fi
}

section "install: dpkg -i"
dpkg -i "$deb" 2>&1 | tee /tmp/kapacitor-pagertree-install.log
no_script_errors /tmp/kapacitor-pagertree-install.log
getent group kapacitor || fail "no group kapacitor"
id kapacitor || fail "no user kapacitor (made with the group when Kapacitor's package is absent)"
entry=$(getent passwd kapacitor-pagertree) || fail "no user kapacitor-pagertree"
echo "$entry"
IFS=: read -r _ _ _ gid _ home shell <<<"$entry"
[ "$gid" = "$(getent group kapacitor | cut -d: -f3)" ] || fail "kapacitor-pagertree's group is not kapacitor"
[ "$home" = /var/lib/kapacitor-pagertree ] || fail "home $home"
case "$shell" in */nologin) ;; *) fail "shell $shell" ;; esac
ok "user kapacitor-pagertree: group kapacitor, home $home, shell $shell"
expect_stat /var/lib/kapacitor-pagertree "750 kapacitor-pagertree:kapacitor"
expect_stat /etc/kapacitor-pagertree.toml "640 root:kapacitor"
expect_stat /usr/bin/kapacitor-pagertree "755 root:root"
if command -v deb-systemd-helper >/dev/null; then
    [ -L /etc/systemd/system/multi-user.target.wants/kapacitor-pagertree.service ] ||
        fail "the unit is not enabled"
    ok "enabled: /etc/systemd/system/multi-user.target.wants/kapacitor-pagertree.service"
else
    skipped "deb-systemd-helper is not installed: the enable step could not run"
fi

section "the unit: systemd-analyze verify $unit_path"
grep -qx 'ExecStart=/usr/bin/kapacitor-pagertree serve --config /etc/kapacitor-pagertree.toml' "$unit_path" ||
    fail "ExecStart is not the installed binary"
grep -qx 'Documentation=man:kapacitor-pagertree(1)' "$unit_path" || fail "Documentation="
if ! command -v systemd-analyze >/dev/null; then
    skipped "systemd-analyze is not installed: the unit is not verified"
else
    man_check=yes
    if ! command -v man >/dev/null; then
        man_check=no
        skipped "man is not installed: verify runs with --man=no (Documentation= not resolved)"
    fi
    out=$(systemd-analyze verify --man=$man_check "$unit_path" 2>&1) || {
        echo "$out"
        fail "systemd-analyze verify"
    }
    echo "$out"
    if echo "$out" | grep -Eq 'Unknown|ignoring|Invalid|Failed'; then fail "systemd-analyze complains"; fi
    ok "systemd-analyze verify --man=$man_check: clean"
fi
if command -v man >/dev/null; then
    man -w kapacitor-pagertree
    ok "man kapacitor-pagertree resolves"
fi
bash -c 'source /usr/share/bash-completion/completions/kapacitor-pagertree && complete -p kapacitor-pagertree' ||
    fail "the bash completion does not load"
ok "bash completion loads"

section "check as the service user"
runuser -u kapacitor-pagertree -- kapacitor-pagertree check --config /etc/kapacitor-pagertree.toml ||
    fail "kapacitor-pagertree check --config /etc/kapacitor-pagertree.toml"
ok "check passes on the installed config, as kapacitor-pagertree"

section "the agent as the unit runs it"
rt_mode=$(sed -n 's/^RuntimeDirectoryMode=//p' "$unit_path")
rt_name=$(sed -n 's/^RuntimeDirectory=//p' "$unit_path")
umask_unit=$(sed -n 's/^UMask=//p' "$unit_path")
[ "$rt_name" = kapacitor-pagertree ] && [ "$rt_mode" = 0750 ] ||
    fail "the unit's RuntimeDirectory=$rt_name RuntimeDirectoryMode=$rt_mode"
if [ "$(cat /proc/1/comm)" = systemd ]; then
    systemctl daemon-reload
    systemctl start kapacitor-pagertree
    agent_pid=
else
    skipped "systemd is not PID 1 ($(cat /proc/1/comm)): the unit cannot start here; doing what it" \
        "does: RuntimeDirectory=$rt_name (mode $rt_mode, owner User:Group), UMask=$umask_unit," \
        "then ExecStart as User=kapacitor-pagertree Group=kapacitor"
    install -d -m "$rt_mode" -o kapacitor-pagertree -g kapacitor "/run/$rt_name"
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit_path")
    # setpriv execs (no PAM session, no fork), as systemd's User=/Group= do.
    # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does.
    (umask "$umask_unit" && exec setpriv --reuid=kapacitor-pagertree --regid=kapacitor --init-groups -- \
        $exec_start --http-addr 127.0.0.1:0 >/tmp/kapacitor-pagertree-check.log 2>&1) &
    agent_pid=$!
fi
for _ in $(seq 1 300); do
    [ -S /run/kapacitor-pagertree/stream.sock ] && [ -S /run/kapacitor-pagertree/batch.sock ] && break
    sleep 0.1
done
[ -S /run/kapacitor-pagertree/batch.sock ] || {
    cat /tmp/kapacitor-pagertree-check.log 2>/dev/null || true
    fail "the agent did not listen within 30s"
}
expect_stat /run/kapacitor-pagertree "750 kapacitor-pagertree:kapacitor"
expect_stat /run/kapacitor-pagertree/stream.sock "660 kapacitor-pagertree:kapacitor"
expect_stat /run/kapacitor-pagertree/batch.sock "660 kapacitor-pagertree:kapacitor"
db_stat=$(stat -c '%a %U:%G' /var/lib/kapacitor-pagertree/outbox.db)
case "$db_stat" in
    *[0-7][0-7]0\ kapacitor-pagertree:kapacitor) ok "/var/lib/kapacitor-pagertree/outbox.db $db_stat" ;;
    *) fail "/var/lib/kapacitor-pagertree/outbox.db is $db_stat: want the service user's, nothing for others" ;;
esac
if [ -n "$agent_pid" ]; then
    kill -TERM "$agent_pid"
    wait "$agent_pid" || fail "the agent did not exit 0 on SIGTERM"
    cat /tmp/kapacitor-pagertree-check.log
else
    systemctl stop kapacitor-pagertree
fi
ok "the agent served as kapacitor-pagertree and stopped cleanly"

section "upgrade over an edited config: dpkg -i again"
echo '# edited by check.sh' >>/etc/kapacitor-pagertree.toml
dpkg -i "$deb" 2>&1 | tee /tmp/kapacitor-pagertree-upgrade.log
no_script_errors /tmp/kapacitor-pagertree-upgrade.log
tail -1 /etc/kapacitor-pagertree.toml | grep -q 'edited by check.sh' || fail "the upgrade overwrote the edited config"
expect_stat /etc/kapacitor-pagertree.toml "640 root:kapacitor"
ok "the edited config survived the upgrade"

section "remove: dpkg -r (the outbox is kept and listed)"
dpkg -r kapacitor-pagertree 2>&1 | tee /tmp/kapacitor-pagertree-remove.log
no_script_errors /tmp/kapacitor-pagertree-remove.log
grep -q 'undelivered pages live in /var/lib/kapacitor-pagertree' /tmp/kapacitor-pagertree-remove.log ||
    fail "remove did not show the outbox"
[ ! -e /usr/bin/kapacitor-pagertree ] || fail "the binary is still there"
[ -d /var/lib/kapacitor-pagertree ] || fail "remove deleted the data directory"
[ -f /etc/kapacitor-pagertree.toml ] || fail "remove deleted the conffile"
ok "binary gone; data directory and config kept"

section "purge: dpkg -P"
dpkg -P kapacitor-pagertree 2>&1 | tee /tmp/kapacitor-pagertree-purge.log
no_script_errors /tmp/kapacitor-pagertree-purge.log
grep -q 'WARNING: deleting /var/lib/kapacitor-pagertree' /tmp/kapacitor-pagertree-purge.log ||
    fail "purge did not warn"
left=
while read -r path; do
    [ -e "/$path" ] && [ ! -d "/$path" ] && left="$left /$path"
done < <(echo "$contents" | awk '{print $6}' | sed 's#^\./##')
for path in /var/lib/kapacitor-pagertree /run/kapacitor-pagertree /etc/kapacitor-pagertree.toml \
    /etc/systemd/system/multi-user.target.wants/kapacitor-pagertree.service; do
    [ -e "$path" ] && left="$left $path"
done
[ -z "$left" ] || fail "left after purge:$left"
! dpkg -s kapacitor-pagertree >/dev/null 2>&1 || fail "still known to dpkg"
ok "purged: no file of the package, no data, no config, no unit link left"
id kapacitor-pagertree >/dev/null && ok "the accounts stay after purge (Debian policy)"

section "rpm: $rpm"
if ! command -v rpm >/dev/null; then
    apt-get install -y rpm >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y rpm >/dev/null 2>&1; } || true
fi
if command -v rpm >/dev/null; then
    rpm -qip "$rpm"
    echo "-- rpm -qlvp"
    rpm -qlvp "$rpm"
    echo "-- rpm -qp --scripts"
    rpm -qp --scripts "$rpm"
    echo "-- rpm -qp --requires"
    rpm -qp --requires "$rpm"
    rpm -qp --queryformat '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" |
        grep -qx -- '-rw-r----- root:kapacitor /etc/kapacitor-pagertree.toml' ||
        fail "the rpm's config is not 0640 root:kapacitor"
    # Lists read whole first: `rpm … | grep -q` under pipefail fails when grep
    # stops reading early and rpm dies of SIGPIPE (a match reported as missing).
    rpm_config=$(rpm -qcp "$rpm")
    rpm_files=$(rpm -qlp "$rpm")
    grep -qx /etc/kapacitor-pagertree.toml <<<"$rpm_config" || fail "the rpm's config is not %config"
    for f in /usr/bin/kapacitor-pagertree /usr/lib/systemd/system/kapacitor-pagertree.service \
        /usr/share/man/man1/kapacitor-pagertree.1 /usr/share/bash-completion/completions/kapacitor-pagertree \
        /usr/share/zsh/site-functions/_kapacitor-pagertree /usr/share/fish/vendor_completions.d/kapacitor-pagertree.fish \
        /usr/share/doc/kapacitor-pagertree/README.md; do
        grep -qx -- "$f" <<<"$rpm_files" || fail "the rpm lacks $f"
    done
    for page in $pages; do
        grep -qx -- "/usr/share/man/man1/$page" <<<"$rpm_files" || fail "the rpm lacks the page $page"
    done
    scripts=$(rpm -qp --scripts "$rpm")
    for want in 'preinstall' 'useradd --system --gid kapacitor' 'postinstall' 'systemctl enable' \
        'preuninstall' 'outbox list' 'postuninstall' 'try-restart'; do
        echo "$scripts" | grep -q -- "$want" || fail "the rpm's scriptlets lack '$want'"
    done
    ok "rpm: files, modes, %config and scriptlets"
else
    skipped "rpm could not be installed: the .rpm was built but not listed"
fi

section "clean up the accounts this check created"
cleanup_accounts
trap - EXIT
ok "accounts as before"

printf '\nALL PACKAGING CHECKS PASSED\n'
