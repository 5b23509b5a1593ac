#!/bin/bash
# The manual pages made by the build and the bash completion work as a user
# meets them: dossierd.8 and dossier.1 exist, render without a warning,
# dossier.1 documents every command of `dossier --help`; the completion
# offers commands and subcommands.
# Usage: test_manuals.sh DOSSIER BUILD_DIR SOURCE_DIR
set -u
DOSSIER=$1
BUILD=$2
SRC=$3
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# --- Manual pages. -----------------------------------------------------------
for page in dossierd.8 dossier.1; do
    f=$BUILD/man/$page
    if [ ! -s "$f" ]; then fail "$f was not made"; continue; fi
    ok "$page made"
    # -ww: every warning; -z: no output, only the diagnostics.
    warn=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$f" 2>&1)
    if [ -z "$warn" ]; then ok "$page renders without groff warnings"
    else fail "$page: groff warns:"; printf '    %s\n' "$warn"; fi
    text=$(LC_ALL=C.UTF-8 groff -man -Tutf8 "$f" 2>/dev/null | sed 's/.\x08//g')
    for section in NAME SYNOPSIS DESCRIPTION SIGNALS ENVIRONMENT FILES EXAMPLES "SEE ALSO"; do
        grep -q "^$section\$" <<<"$text" || fail "$page has no $section section"
    done
    # help2man's placeholder, were the NAME line not given.
    if grep -q "manual page for" <<<"$text"; then fail "$page: NAME is help2man's placeholder"; fi
done

# Every command of `dossier --help`: the words at column 2 of its command
# lists, up to the first argument (in capitals or brackets) or the
# description (after two spaces).
help=$("$DOSSIER" --help)
page=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -rLL=1000n "$BUILD/man/dossier.1" 2>/dev/null \
    | sed 's/.\x08//g' | tr -s ' \n' ' ')
commands=$(awk '/^([A-Za-z].* )?[Cc]ommands:$/ {on = 1; next}
                /^[^ ]/ {on = 0}
                on && /^  [a-z]/ {
                    sub(/^  /, ""); sub(/  .*/, ""); cmd = ""
                    n = split($0, w, " ")
                    for (i = 1; i <= n; i++) {
                        if (w[i] !~ /^[a-z][a-z-]*$/) break
                        cmd = cmd (cmd == "" ? "" : " ") w[i]
                    }
                    print cmd
                }' <<<"$help" | sort -u)
n=$(wc -l <<<"$commands")
[ "$n" -ge 20 ] || fail "found only $n commands in dossier --help"
missing=""
while read -r cmd; do
    [ -n "$cmd" ] || continue
    grep -qF " $cmd " <<<" $page " || missing="$missing; $cmd"
done <<<"$commands"
if [ -z "$missing" ]; then ok "dossier.1 documents all $n commands of dossier --help"
else fail "dossier.1 lacks:${missing#;}"; fi

# Every flag of dossierd --help is in dossierd.8.
dpage=$(LC_ALL=C.UTF-8 groff -man -Tutf8 "$BUILD/man/dossierd.8" 2>/dev/null | sed 's/.\x08//g')
dossierd=$(dirname "$DOSSIER")/dossierd
if [ -x "$dossierd" ]; then
    flags=$("$dossierd" --help | grep -oE '^  --[a-z][a-z0-9-]*' | sed 's/^ *//')
    missing=""
    for fl in $flags; do grep -qe "$fl" <<<"$dpage" || missing="$missing $fl"; done
    if [ -z "$missing" ]; then ok "dossierd.8 documents every flag of dossierd --help"
    else fail "dossierd.8 lacks:$missing"; fi
fi

# --- Bash completion. ----------------------------------------------------------
# complete() is a bash builtin: sourcing registers the function.
# shellcheck source=/dev/null
source "$SRC/deploy/bash-completion/dossier" || fail "the completion does not source"
if complete -p dossier >/dev/null 2>&1; then ok "completion registered for dossier"
else fail "no completion registered for dossier"; fi
# Completes the last word of "$@" as bash does for a command line.
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _dossier dossier "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[@]}"
}
expect() { # expect WANTED... -- WORDS...
    local want=() got
    while [ "$1" != -- ]; do want+=("$1"); shift; done
    shift
    got=$(complete_words "$@")
    for w in "${want[@]}"; do
        if ! grep -qx -- "$w" <<<"$got"; then
            fail "completing '$*' does not offer $w (got: ${got//$'\n'/ })"
            return
        fi
    done
    ok "completing '$*' offers ${want[*]}"
}
expect get cluster audit schema backup -- dossier ""
expect transfer-leader status add promote remove -- dossier cluster ""
expect list get define -- dossier schema ""
expect create list restore -- dossier backup ""
expect new -- dossier token ""
expect --target --timeout --pretty -- dossier --
expect cluster -- dossier --target 127.0.0.1:7700 cl
expect transfer-leader -- dossier -t 127.0.0.1:7700 --pretty cluster tr
expect --reference -- dossier subject erase person-1 --
expect admin service compliance -- dossier token new ops ""
expect --direction --label --all -- dossier links contact c-1 --
expect out in both -- dossier links contact c-1 --direction ""
expect status rotate -- dossier keys ""
expect --version --no-wait -- dossier keys rotate --
expect --add-version -- dossier keygen --
expect undo confirm list -- dossier merge ""
expect --prefer --field --reference -- dossier merge contact c-1 c-2 --
expect survivor newest -- dossier merge contact c-1 c-2 --prefer ""
expect define list -- dossier dedup rules ""
# Every command of --help is offered after "dossier ".
got=$(complete_words dossier "")
missing=""
while read -r cmd; do
    grep -qx "$cmd" <<<"$got" || missing="$missing $cmd"
done < <(cut -d' ' -f1 <<<"$commands" | sort -u)
if [ -z "$missing" ]; then ok "completion offers every command of dossier --help"
else fail "completion lacks:$missing"; fi

# Every subcommand of --help ("cluster transfer-leader", "subject ledger")
# is offered after its command, and a third word ("dedup rules define")
# after the first two.
missing=""
while read -r cmd sub third; do
    [ -n "$sub" ] || continue
    complete_words dossier "$cmd" "" | grep -qx "$sub" || missing="$missing $cmd:$sub"
    [ -n "$third" ] || continue
    complete_words dossier "$cmd" "$sub" "" | grep -qx "$third" ||
        missing="$missing $cmd:$sub:$third"
done <<<"$commands"
if [ -z "$missing" ]; then ok "completion offers every subcommand of dossier --help"
else fail "completion lacks subcommands:$missing"; fi

[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failure(s)"
[ "$failures" -eq 0 ]
