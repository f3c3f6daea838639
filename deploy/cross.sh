#!/usr/bin/env bash
# Cross-build the lcbft daemon for a Raspberry Pi from a Debian x86-64 machine.
#
#   deploy/cross.sh aarch64            # Pi 3/4/5 with a 64-bit OS
#   deploy/cross.sh armv7              # 32-bit Raspberry Pi OS
#   deploy/cross.sh aarch64 --profile release   # any other cargo profile
#   deploy/cross.sh armv7 --install-only        # only the toolchain (CI installs up front)
#
# Installs Debian's cross C compiler (ring and blst build C and assembly) and, for aarch64,
# qemu-user (so the testnet can run the binary under emulation), adds the Rust target, then
# builds `lcbft` with the `device` profile. Prints the binary's path and size.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 aarch64|armv7 [--profile NAME] [--no-install | --install-only]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
arch=$1
shift
profile=device
install=1
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    --no-install) install=0; shift ;;
    --install-only) build=0; shift ;;
    *) usage ;;
  esac
done

case $arch in
  aarch64 | aarch64-unknown-linux-gnu)
    target=aarch64-unknown-linux-gnu
    debs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
    cc=aarch64-linux-gnu-gcc
    ;;
  armv7 | armv7-unknown-linux-gnueabihf)
    target=armv7-unknown-linux-gnueabihf
    debs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
    cc=arm-linux-gnueabihf-gcc
    ;;
  *)
    echo "unknown architecture '$arch': expected aarch64 or armv7" >&2
    exit 2
    ;;
esac

if [ "$install" = 1 ]; then
  missing=()
  for d in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'ok installed' || missing+=("$d")
  done
  if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
      echo "missing ${missing[*]} and no apt-get to install them" >&2
      exit 1
    fi
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
  fi
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
fi
command -v "$cc" >/dev/null || {
  echo "$cc not found: install it or run without --no-install" >&2
  exit 1
}

[ "$build" = 1 ] || exit 0

# .cargo/config.toml sets the linker and the C compiler the cc crate uses for this target.
cargo build --locked --target "$target" --profile "$profile" -p lcbft-node --bin lcbft

dir=$profile
[ "$profile" = dev ] && dir=debug
bin=${CARGO_TARGET_DIR:-target}/$target/$dir/lcbft
echo "$bin $(stat -c %s "$bin") bytes"
