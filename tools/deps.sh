#!/bin/sh
# Installs the Debian 12 packages Dossier needs to build, run and test, if
# any is missing. Uses sudo when not run as root.
set -eu

PACKAGES="build-essential cmake pkg-config
libgrpc-dev protobuf-c-compiler libprotobuf-c-dev librocksdb-dev libsodium-dev
libjansson-dev libinih-dev libcmocka-dev libmicrohttpd-dev libpq-dev
python3 python3-grpcio python3-grpc-tools rocksdb-tools systemd
help2man groff-base python3-yaml openssl gnuplot-nox"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
