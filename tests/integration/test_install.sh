#!/bin/bash
# `cmake --install` lays Dossier out in a prefix that a program outside the
# tree can build against with pkg-config alone, and the installed binaries
# run. Usage: test_install.sh BUILD_DIR
set -euo pipefail
BUILD=$1
WORK=$(mktemp -d /tmp/dossier-install-XXXXXX)
NODE_PID=
cleanup() {
    [ -n "$NODE_PID" ] && { kill -9 "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
P=$WORK/prefix
for f in sbin/dossierd bin/dossier bin/dossier-bench include/dossier/dossier.h \
    share/doc/dossier/OPERATIONS.md share/doc/dossier/examples/dossierd.service; do
    [ -e "$P/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
libdir=$(dirname "$(find "$P" -name libdossier.pc)")/..
[ -e "$libdir/libdossier.so" ] && [ -e "$libdir/libdossier.a" ] || { echo "FAIL: libraries"; exit 1; }

# Only the public API is exported from the shared library.
bad=$(nm -D --defined-only "$libdir/libdossier.so" | awk '$2 ~ /[TDB]/ {print $3}' | grep -v '^dossier_' || true)
[ -z "$bad" ] || { echo "FAIL: non-public symbols exported:"; echo "$bad"; exit 1; }

cat >"$WORK/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <dossier/dossier.h>
int main(int argc, char **argv)
{
    struct dossier_client_options o;
    struct dossier_client *c;
    struct dossier_status st;
    struct dossier_record *r, *got;
    dossier_client_options_init(&o);
    o.target = argv[1];
    o.purpose = "operations";
    if (argc != 2 || dossier_client_open(&o, &c, &st)) return 1;
    r = dossier_record_new("contact", "app-1", "subject-app");
    dossier_record_set_string(r, "first_name", "Installed");
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) ||
        dossier_get(c, NULL, "contact", "app-1", &got, &st)) {
        fprintf(stderr, "%s\n", st.message);
        dossier_record_free(r);
        dossier_client_close(c);
        return 1;
    }
    printf("%s\n", dossier_record_field(got, "first_name")->u.s);
    dossier_record_free(got);
    dossier_record_free(r);
    dossier_client_close(c);
    return 0;
}
C
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
cc -Wall -Werror -o "$WORK/app" "$WORK/app.c" $(pkg-config --cflags --libs libdossier) \
    -Wl,-rpath,"$libdir"

"$P/bin/dossier" keygen "$WORK/k" 2>/dev/null
"$P/sbin/dossierd" --data-dir "$WORK/d" --key-file "$WORK/k" --listen 127.0.0.1:0 \
    --ready-file "$WORK/ready" 2>"$WORK/log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready" ] && break; sleep 0.05; done
out=$("$WORK/app" "$(cat "$WORK/ready")")
[ "$out" = Installed ] || { echo "FAIL: app printed '$out'"; cat "$WORK/log"; exit 1; }
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=
echo "ok: installed prefix builds and runs a client program"
