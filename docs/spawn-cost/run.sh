#!/bin/sh
# Spawn cost through ccs::runner::process::execute: the clone/vfork runner (fb6ad1f) against
# std's Command (this tree), dynamic and static (crt-static, as `make release`) builds.
# usage: docs/spawn-cost/run.sh [REAL_CLI]   (results in docs/benchmarks.md)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/spawnbench}
cli=${1:-$repo/target/real-cli/2.1.197/node_modules/.bin/claude}
mkdir -p "$work/ccs-old" "$work/old/src" "$work/new/src"
git -C "$repo" archive fb6ad1f | tar -x -C "$work/ccs-old"
for v in old new; do
    src=$([ $v = new ] && echo "$repo" || echo "$work/ccs-old")
    cat > "$work/$v/Cargo.toml" <<TOML
[package]
name = "spawnbench-$v"
version = "0.1.0"
edition = "2021"
[dependencies]
ccs = { path = "$src" }
[features]
new = []
[patch.crates-io]
tiny_http = { path = "$src/vendor/tiny_http" }
[profile.release]
opt-level = 3
TOML
    cp "$here/main.rs" "$work/$v/src/main.rs"
    feature=$([ $v = new ] && echo "--features new" || true)
    (cd "$work/$v" && cargo build --release $feature &&
        RUSTFLAGS='-C target-feature=+crt-static' cargo build --release $feature --target x86_64-unknown-linux-gnu)
done
rustc -O -C target-feature=+crt-static "$here/stamp.rs" -o "$work/stamp"
for heap in 0 50 256; do
    for v in old new; do
        echo "== dynamic $v, heap $heap MB"; "$work/$v/target/release/spawnbench-$v" "$work/stamp" 200 $heap
        echo "== static $v, heap $heap MB"; "$work/$v/target/x86_64-unknown-linux-gnu/release/spawnbench-$v" "$work/stamp" 200 $heap
    done
done
for v in old new; do
    echo "== real CLI --version, dynamic $v"; "$work/$v/target/release/spawnbench-$v" "$cli" 30 0 --version
    echo "== real CLI --version, static $v, heap 50 MB"; "$work/$v/target/x86_64-unknown-linux-gnu/release/spawnbench-$v" "$cli" 30 50 --version
done
