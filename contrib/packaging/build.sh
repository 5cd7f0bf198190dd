#!/usr/bin/env bash
# Builds the packages: target/debian/kapacitor-pagertree_<version>-1_<arch>.deb
# and target/generate-rpm/kapacitor-pagertree-<version>-1.<arch>.rpm.
#
# Needs cargo-deb and cargo-generate-rpm:
#   cargo install cargo-deb cargo-generate-rpm --locked
# What goes where: Cargo.toml, [package.metadata.deb] and
# [package.metadata.generate-rpm]; the scripts: contrib/packaging/debian/ and rpm/.
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in deb generate-rpm; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "build.sh: cargo $tool is missing: cargo install cargo-$tool --locked" >&2
        exit 2
    fi
done

cargo build --release --locked
# The man pages and shell completions, from the clap definitions (tools::generate).
rm -rf target/assets
target/release/kapacitor-pagertree generate --out target/assets
# cargo generate-rpm packages the binary as it is: give it a stripped copy.
# (cargo deb strips its own: --strip, since [profile.release] keeps debug info.)
strip -o target/assets/kapacitor-pagertree target/release/kapacitor-pagertree

cargo deb --no-build --strip
cargo generate-rpm
ls -l target/debian/*.deb target/generate-rpm/*.rpm
