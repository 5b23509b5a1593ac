#!/bin/sh
# Stands in for a Dossier program when help2man runs it: `--version` and
# everything else go to the program unchanged; `--help` text is re-laid out
# the way help2man parses it. Only spaces and line breaks move; no word is
# added, dropped or changed, so the manual still follows the program.
#
# Why: help2man takes an entry's description from the same line (after two
# spaces) or from the next line indented 20 columns or more. dossierd
# indents descriptions by 6, and dossier lists entries that have no
# description of their own (`delete KIND ID ...`), wraps long entries
# (`purpose define ... [--description TEXT]`) and starts paragraphs with a
# label (`Exit status: ...`). help2man glues such lines into the entry
# before or after. This filter gives it:
#   - each entry (a line indented 2, or up to 10 when it starts with "-")
#     on a line of its own, its wrapped parts joined, and its description
#     on the following lines at column 26 (the description column of the
#     text is found by itself: the most common indentation beyond 2);
#   - an entry without a description as a paragraph of its own;
#   - "Label: text" at the start of a paragraph or after a sentence (not
#     "Usage:") as help2man's "*Label*" section marker, then the text.
#
# Usage (help2man calls it with --help and --version):
#   DOSSIER_HELP_PROGRAM=path/to/dossierd help2man ... deploy/man/help-layout.sh
set -eu
prog=${DOSSIER_HELP_PROGRAM:?set DOSSIER_HELP_PROGRAM to the program to document}
[ "${1-}" = --help ] || exec "$prog" "$@"
# Its status is not what matters (a sanitizer build may exit non-zero at
# exit after printing everything); an empty text is.
text=$("$prog" --help || true)
[ -n "$text" ] || { echo "help-layout.sh: $prog --help printed nothing" >&2; exit 1; }
printf '%s\n' "$text" | awk '
function indent(s) { match(s, /^ */); return RLENGTH }
function flush(  i, pad) {
    if (tag == "")
        return
    if (nd == 0) {
        print ""
        print tag
        print ""
    } else {
        pad = sprintf("%26s", "")
        print "  " tag
        for (i = 1; i <= nd; i++)
            print pad d[i]
    }
    tag = ""
    nd = 0
}
{ line[NR] = $0 }
END {
    for (i = 1; i <= NR; i++) {
        n = indent(line[i])
        if (n > 2 && n < length(line[i]) && substr(line[i], n + 1, 1) != "-")
            count[n]++
    }
    col = 0
    best = 0
    for (k in count)
        if (count[k] > best || (count[k] == best && k + 0 < col)) {
            best = count[k]
            col = k + 0
        }
    tag = ""
    nd = 0
    prev = ""
    for (i = 1; i <= NR; i++) {
        s = line[i]
        if (s ~ /^ *$/) {
            flush()
            print ""
            prev = ""
            continue
        }
        n = indent(s)
        body = substr(s, n + 1)
        if (n == 0) {
            flush()
            if (s ~ /^[A-Z][a-z]+( [a-z]+)?: [^ ]/ && s !~ /^Usage:/ &&
                (prev == "" || prev ~ /\.$/)) {
                p = index(s, ": ")
                print ""
                print "*" substr(s, 1, p - 1) "*"
                print ""
                print substr(s, p + 2)
            } else {
                print s
            }
            prev = s
            continue
        }
        prev = s
        if (col > 0 && n >= col) {
            if (tag != "")
                d[++nd] = body
            else
                print s
            continue
        }
        if (tag != "" && nd == 0 && n > 2 && substr(body, 1, 1) != "-") {
            tag = tag " " body
            continue
        }
        if (n > 2 && !(n <= 10 && substr(body, 1, 1) == "-")) {
            flush()
            print s
            continue
        }
        flush()
        if (match(body, /  +/)) {
            tag = substr(body, 1, RSTART - 1)
            d[++nd] = substr(body, RSTART + RLENGTH)
        } else {
            tag = body
        }
    }
    flush()
}'
