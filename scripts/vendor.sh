#!/usr/bin/env bash
# Re-makes the vendored forks under vendor/ from their crates.io releases: each is the release's
# .crate, minus the files listed below, plus the patches in vendor/patches/<crate>/ applied in
# order (every patch's header says what it is for).
#
#   scripts/vendor.sh [CRATE...]          re-create vendor/CRATE (default: every patched crate)
#   scripts/vendor.sh --check [CRATE...]  re-create in a temporary directory and fail unless it
#                                         is identical to the committed vendor/CRATE
#
# To change a fork: re-create it, edit vendor/CRATE, and turn the edit into a new patch (or fold
# it into the patch whose purpose it serves) with `diff -ruN` against a copy re-made without it;
# `--check` proves the patches and the tree agree (scripts/test.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The release each fork starts from, and the parts of it the vendored copy leaves out.
declare -A release=([glommio]=0.9.0 [h2]=0.4.20)
declare -A left_out=([glommio]="benches tests Cargo.toml.orig .cargo_vcs_info.json" [h2]="benches examples .github .gitignore Cargo.toml.orig .cargo_vcs_info.json")

check=false
if [ "${1:-}" = --check ]; then
  check=true
  shift
fi
crates=("$@")
((${#crates[@]})) || crates=("${!release[@]}")

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Prints the path of CRATE-VERSION.crate in cargo's registry cache, downloading it with cargo
# into the cache first if it is not there.
crate_file() {
  local name=$1 version=$2 cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache" found
  found=$(compgen -G "$cache/*/$name-$version.crate" | head -n1 || true)
  if [ -z "$found" ]; then
    local project="$scratch/fetch-$name"
    mkdir -p "$project/src"
    : >"$project/src/lib.rs"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
      "$name" "$version" >"$project/Cargo.toml"
    cargo fetch --quiet --manifest-path "$project/Cargo.toml" \
      --target "$(rustc -vV | sed -n 's/^host: //p')" >&2
    found=$(compgen -G "$cache/*/$name-$version.crate" | head -n1)
  fi
  echo "$found"
}

# Re-creates CRATE (release plus patches) in the directory DEST, which must not exist.
remake() {
  local name=$1 dest=$2 version=${release[$1]:?"no release recorded for $1"} path patch
  mkdir -p "$dest"
  tar -xzf "$(crate_file "$name" "$version")" -C "$dest" --strip-components=1
  for path in ${left_out[$name]:-}; do
    rm -rf "${dest:?}/$path"
  done
  for patch in vendor/patches/"$name"/*.patch; do
    patch --quiet --force --fuzz=0 --no-backup-if-mismatch -p1 -d "$dest" -i "$PWD/$patch"
  done
}

status=0
for name in "${crates[@]}"; do
  fresh="$scratch/$name"
  remake "$name" "$fresh"
  if $check; then
    if ! diff -ru "$fresh" "vendor/$name"; then
      echo "vendor/$name differs from $name ${release[$name]} plus vendor/patches/$name/ (see scripts/vendor.sh)" >&2
      status=1
    fi
  else
    rm -rf "vendor/${name:?}"
    mv "$fresh" "vendor/$name"
    echo "re-made vendor/$name from $name ${release[$name]} and vendor/patches/$name/"
  fi
done
exit $status
