#!/bin/bash
# The dossier CLI against a real dossierd: JSON in and out, and the exit
# codes a script relies on. Usage: test_cli.sh DOSSIERD DOSSIER
set -u
DOSSIERD=$1
DOSSIER=$2
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/dossier-cli-XXXXXX)
NODE_PID=
failures=0

cleanup() {
    if [ -n "$NODE_PID" ]; then kill -9 "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND, checks its exit code,
# leaves stdout in $WORK/out and stderr in $WORK/err.
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$what"; else
        fail "$what: exit $got, wanted $want"; sed 's/^/    /' "$WORK/err"; fi
}

contains() { # FILE TEXT DESCRIPTION
    if grep -qF -- "$2" "$1"; then ok "$3"; else fail "$3: '$2' not in output"; sed 's/^/    /' "$1"; fi
}

jsonl_check() { # DESCRIPTION PYTHON-EXPRESSION over d = the JSON lines in $WORK/out
    if $PY -c "import json,sys; d=[json.loads(l) for l in open('$WORK/out')]; sys.exit(0 if ($2) else 1)"; then
        ok "$1"; else fail "$1"; sed 's/^/    /' "$WORK/out"; fi
}

json_check() { # DESCRIPTION PYTHON-EXPRESSION over d = the JSON in $WORK/out
    if $PY -c "import json,sys; d=json.load(open('$WORK/out')); sys.exit(0 if ($2) else 1)"; then
        ok "$1"; else fail "$1"; sed 's/^/    /' "$WORK/out"; fi
}

lines_check() { # DESCRIPTION PYTHON-EXPRESSION over d = the JSON lines of $WORK/out, a list
    if $PY -c "import json,sys; d=[json.loads(l) for l in open('$WORK/out')]; sys.exit(0 if ($2) else 1)"; then
        ok "$1"; else fail "$1"; sed 's/^/    /' "$WORK/out"; fi
}

# --- keys and help, no node needed --------------------------------------
expect 0 "keygen writes a key" -- "$DOSSIER" keygen "$WORK/master.key"
[ "$(stat -c %a "$WORK/master.key")" = 600 ] && ok "key file is mode 600" || fail "key file mode"
expect 4 "keygen refuses to overwrite" -- "$DOSSIER" keygen "$WORK/master.key"
expect 0 "dossier --help" -- "$DOSSIER" --help
for cmd in keygen put get delete find list scan links "schema list"; do
    contains "$WORK/out" "$cmd" "help lists '$cmd'"
done
expect 0 "dossierd --help" -- "$DOSSIERD" --help
for flag in --config --listen --data-dir --key-file --ready-file --log-level \
            --max-message-bytes --key-cache-entries --block-cache-mb --group-commit-max; do
    contains "$WORK/out" "$flag" "dossierd --help documents $flag"
done
expect 2 "dossierd refuses an unknown flag" -- "$DOSSIERD" --no-such-flag
expect 2 "dossier without a command is a usage error" -- "$DOSSIER"
expect 2 "unknown command is a usage error" -- "$DOSSIER" frobnicate
expect 2 "get with missing arguments is a usage error" -- "$DOSSIER" get contact

# --- a node ---------------------------------------------------------------
"$DOSSIERD" --data-dir "$WORK/data" --key-file "$WORK/master.key" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready" --backup-dir "$WORK/backups" \
    2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready" ] && break; sleep 0.05; done
[ -s "$WORK/ready" ] || { echo "node did not start"; cat "$WORK/node.log"; exit 1; }
export DOSSIER_TARGET=$(cat "$WORK/ready")
ok "node serving on $DOSSIER_TARGET"

cat >"$WORK/records.jsonl" <<'JSON'
{"kind":"company","id":"acme","fields":{"name":"Acme Ltd","domain":"acme.example","employees":120}}
{"kind":"contact","id":"c1","subject_id":"s1","fields":{"first_name":"Ann","email":"Ann@Example.com","phone":"+44 20 7946 0018","lead_score":40},"links":[{"label":"works_at","kind":"company","id":"acme"}]}
{"kind":"contact","id":"c2","subject_id":"s2","fields":{"first_name":"Bob","email":"bob@example.com"}}
JSON
expect 0 "put reads JSON lines" -- "$DOSSIER" put "$WORK/records.jsonl"
[ "$(wc -l <"$WORK/out")" -eq 3 ] && ok "put prints a line per record" || fail "put output lines"
head -1 "$WORK/out" >"$WORK/first"; cp "$WORK/first" "$WORK/out"
json_check "put reports the version and creation" "d['kind']=='company' and d['version']>0 and d['created'] is True"

expect 0 "get prints the record" -- "$DOSSIER" get contact c1
json_check "get returns fields, subject and links" \
    "d['subject_id']=='s1' and d['fields']['phone']=='+442079460018' and d['fields']['lead_score']==40 and d['links'][0]['id']=='acme'"
version=$($PY -c "import json; print(json.load(open('$WORK/out'))['version'])")

echo '[{"kind":"contact","id":"c3","subject_id":"s3","fields":{"first_name":"Cy"}},{"kind":"contact","id":"c4","subject_id":"s3","fields":{"first_name":"Di"}}]' >"$WORK/array.json"
expect 0 "put reads a JSON array from stdin" -- sh -c "'$DOSSIER' put <'$WORK/array.json'"

expect 3 "get of a missing record exits 3" -- "$DOSSIER" get contact nobody
contains "$WORK/err" NOT_FOUND "missing record says NOT_FOUND"
expect 5 "unknown kind exits 5" -- "$DOSSIER" get spaceship x
echo '{"kind":"contact","id":"c9","subject_id":"s9","fields":{"shoe_size":44}}' >"$WORK/bad.json"
expect 5 "a field outside the schema exits 5" -- "$DOSSIER" put "$WORK/bad.json"
contains "$WORK/err" shoe_size "the message names the field"
echo '{"kind":"contact","id":"c9","subjectid":"s9"}' >"$WORK/typo.json"
expect 5 "an unknown JSON key exits 5" -- "$DOSSIER" put "$WORK/typo.json"
contains "$WORK/err" subjectid "the message names the key"
echo '{"kind":"contact",' >"$WORK/broken.json"
expect 5 "input that is not JSON exits 5" -- "$DOSSIER" put "$WORK/broken.json"
expect 3 "nothing of the refused records was written" -- "$DOSSIER" get contact c9

echo '{"kind":"contact","id":"c1","subject_id":"s1","fields":{"first_name":"Ann B"}}' >"$WORK/update.json"
expect 4 "--create on an existing record exits 4" -- "$DOSSIER" put --create "$WORK/update.json"
expect 4 "a stale --expect-version exits 4" -- "$DOSSIER" put --expect-version $((version + 100)) "$WORK/update.json"
contains "$WORK/err" VERSION_CONFLICT "the conflict is named"
expect 0 "the right --expect-version updates" -- "$DOSSIER" put --expect-version "$version" "$WORK/update.json"

expect 0 "find by email ignores case" -- "$DOSSIER" find contact email BOB@example.com
json_check "find returns the contact" "d['id']=='c2'"
expect 5 "find on an unindexed field exits 5" -- "$DOSSIER" find contact first_name Bob

expect 0 "list by subject" -- "$DOSSIER" list s3
[ "$(wc -l <"$WORK/out")" -eq 2 ] && ok "list returns the subject's two records" || fail "list count"

expect 0 "scan one page" -- "$DOSSIER" scan contact --limit 2
[ "$(wc -l <"$WORK/out")" -eq 2 ] && ok "scan --limit 2 prints 2 records" || fail "scan page size"
contains "$WORK/err" "next_page_token:" "scan says where the next page starts"
contains "$WORK/err" "revision: " "scan says which revision its first page shows"
token=$(sed -n 's/^next_page_token: //p' "$WORK/err")
expect 0 "scan from a page token" -- "$DOSSIER" scan contact --limit 2 --page-token "$token"
expect 0 "scan --all" -- "$DOSSIER" scan contact --all --limit 1
[ "$(wc -l <"$WORK/out")" -eq 4 ] && ok "scan --all returns every contact" || fail "scan --all count"

expect 0 "delete" -- "$DOSSIER" delete contact c2
json_check "delete reports the deleted version" "d['deleted_version']>0"
expect 3 "deleted record is gone" -- "$DOSSIER" get contact c2

# --- links between records ------------------------------------------------
cat >"$WORK/links.jsonl" <<'JSON'
{"kind":"company","id":"globex","fields":{"name":"Globex"}}
{"kind":"contact","id":"l1","subject_id":"ls1","fields":{"first_name":"Lin"},"links":[{"label":"works_at","kind":"company","id":"globex"}]}
{"kind":"deal","id":"ld1","fields":{"name":"Renewal","stage":"qualified"},"links":[{"label":"involves","kind":"contact","id":"l1"},{"label":"for","kind":"company","id":"globex"}]}
JSON
expect 0 "put linked records" -- "$DOSSIER" put "$WORK/links.jsonl"
expect 0 "links lists both directions" -- "$DOSSIER" links contact l1
lines_check "links prints {label, direction, record} per link, out before in" \
    "[(x['direction'], x['label'], x['record']['kind'], x['record']['id']) for x in d] == [('out', 'works_at', 'company', 'globex'), ('in', 'involves', 'deal', 'ld1')]"
lines_check "linked records come whole" "d[1]['record']['fields']['stage'] == 'qualified' and len(d[1]['record']['links']) == 2"
expect 0 "links --direction in --label" -- "$DOSSIER" links company globex --direction in --label for
lines_check "the label narrows the listing" "[x['record']['id'] for x in d] == ['ld1']"
expect 0 "links one page" -- "$DOSSIER" links company globex --direction in --limit 1
[ "$(wc -l <"$WORK/out")" -eq 1 ] && ok "links --limit 1 prints 1 link" || fail "links page size"
contains "$WORK/err" "next_page_token:" "links says where the next page starts"
token=$(sed -n 's/^next_page_token: //p' "$WORK/err")
cp "$WORK/out" "$WORK/page1"
expect 0 "links from a page token" -- "$DOSSIER" links company globex --direction in --limit 1 --page-token "$token"
cmp -s "$WORK/out" "$WORK/page1" && fail "the second page repeats the first" || ok "the second page is another link"
expect 0 "links --all" -- "$DOSSIER" links company globex --all --limit 1
[ "$(wc -l <"$WORK/out")" -eq 2 ] && ok "links --all returns every link" || fail "links --all count"
expect 2 "links --direction sideways is a usage error" -- "$DOSSIER" links company globex --direction sideways
expect 2 "links without an ID is a usage error" -- "$DOSSIER" links company
expect 5 "a label that is not a name exits 5" -- "$DOSSIER" links company globex --label "Works At"
contains "$WORK/err" label "the message names the label"
expect 3 "links of a missing record exits 3" -- "$DOSSIER" links company initech
expect 0 "delete a linked deal" -- "$DOSSIER" delete deal ld1
expect 0 "links after the delete" -- "$DOSSIER" links company globex
lines_check "the deleted deal's link is gone" "[x['record']['id'] for x in d] == ['l1']"

cat >"$WORK/kind.json" <<'JSON'
{"kind":"loyalty_member","personal":true,"description":"loyalty programme",
 "record_retention_days":730,"record_retention_base":"created",
 "fields":[{"name":"tier","type":"enum","category":"operational","indexed":true,"allowed_values":["gold","silver"]},
           {"name":"points","type":"int","category":"behavioral","retention_days":365}]}
JSON
expect 0 "schema define" -- "$DOSSIER" schema define "$WORK/kind.json"
json_check "schema define prints the stored kind" "d['kind']=='loyalty_member' and d['version']>0 and len(d['fields'])==2"
expect 0 "schema get" -- "$DOSSIER" schema get loyalty_member
json_check "schema get shows the enum" "d['fields'][0]['allowed_values']==['gold','silver']"
json_check "schema get shows the record retention" "d['record_retention_days']==730 and d['record_retention_base']=='created'"
echo '{"kind":"loyalty_member","personal":true,"record_retention_base":"birthday","fields":[{"name":"tier","type":"enum","category":"operational","indexed":true,"allowed_values":["gold","silver"]}]}' >"$WORK/badbase.json"
expect 5 "an unknown record_retention_base exits 5" -- "$DOSSIER" schema define "$WORK/badbase.json"
contains "$WORK/err" record_retention_base "the message names the setting"
expect 0 "schema list" -- "$DOSSIER" schema list
contains "$WORK/out" '"kind":"loyalty_member"' "schema list includes the new kind"
contains "$WORK/out" '"kind":"ticket"' "schema list includes built-in kinds"
echo '{"kind":"loyalty_member","fields":[{"name":"tier","type":"colour","category":"operational"}]}' >"$WORK/badkind.json"
expect 5 "an unknown field type exits 5" -- "$DOSSIER" schema define "$WORK/badkind.json"

expect 6 "an unreachable node exits 6" -- "$DOSSIER" --target 127.0.0.1:1 --timeout 2000 get contact c1

# --- the compliance officer's commands -------------------------------------
echo '{"kind":"contact","id":"gdpr-1","subject_id":"gdpr-subj","fields":{"first_name":"Greta","email":"greta@example.org","credit_limit":900.0}}' >"$WORK/g.json"
expect 0 "put a contact for the GDPR commands" -- "$DOSSIER" put "$WORK/g.json"
expect 0 "purpose list" -- "$DOSSIER" purpose list
contains "$WORK/out" '"name":"legal_claims"' "purpose list shows the built-in purposes"
expect 7 "marketing without consent is refused (exit 7)" -- "$DOSSIER" --purpose marketing get contact gdpr-1
expect 0 "consent grant" -- "$DOSSIER" consent grant gdpr-subj marketing --source signup-form --notice 2026-03
json_check "the grant is recorded" "d['state'] == 'granted' and d['purpose'] == 'marketing'"
expect 0 "marketing reads after consent" -- "$DOSSIER" --purpose marketing get contact gdpr-1
json_check "marketing sees contact fields, not financial ones" "'email' in d['fields'] and 'credit_limit' not in d['fields']"
expect 0 "consent withdraw" -- "$DOSSIER" consent withdraw gdpr-subj marketing
expect 7 "withdrawal applies to the next read" -- "$DOSSIER" --purpose marketing get contact gdpr-1
expect 0 "consent history" -- "$DOSSIER" consent history gdpr-subj
[ "$(wc -l <"$WORK/out")" -eq 2 ] && ok "history holds both events" || fail "history: $(cat "$WORK/out")"
expect 5 "an unknown purpose is refused (exit 5)" -- "$DOSSIER" purpose define "Bad Name" --categories contact --basis consent
expect 0 "define a purpose" -- "$DOSSIER" purpose define billing --categories financial --basis contract --description invoices
expect 0 "billing reads financial fields only" -- "$DOSSIER" --purpose billing get contact gdpr-1
json_check "billing sees credit_limit only" "list(d['fields']) == ['credit_limit']"
expect 0 "subject restrict" -- "$DOSSIER" subject restrict gdpr-subj --reference REQ-1
expect 7 "a restricted subject is refused to operations" -- "$DOSSIER" get contact gdpr-1
expect 0 "legal_claims still reads it" -- "$DOSSIER" --purpose legal_claims get contact gdpr-1
expect 0 "subject unrestrict" -- "$DOSSIER" subject unrestrict gdpr-subj --reference REQ-1
expect 0 "subject rectify" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --set first_name=Greta-Mae --set credit_limit=1200.5 --unset email --reference DSR-0
json_check "rectify names the fields changed and the new version" "d['fields'] == ['first_name', 'credit_limit', 'email'] and d['version'] > 0 and d['reference'] == 'DSR-0'"
expect 0 "get after the rectification" -- "$DOSSIER" --purpose legal_claims get contact gdpr-1
json_check "the fields are corrected, typed as the schema says" "d['fields'] == {'first_name': 'Greta-Mae', 'credit_limit': 1200.5}"
expect 5 "a value the schema refuses exits 5" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --set email=nope --reference DSR-0
contains "$WORK/err" email "the message names the field"
expect 2 "rectify without --reference is a usage error" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --set first_name=X
expect 2 "rectify --set without = is a usage error" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --set first_name --reference DSR-0
expect 3 "rectify a record of another subject exits 3" -- "$DOSSIER" subject rectify s1 contact gdpr-1 --set first_name=X --reference DSR-0
expect 0 "subject export after the rectification" -- "$DOSSIER" subject export gdpr-subj
json_check "the export lists the rectification" "[(r['id'], r['fields'], r['reference']) for r in d['rectifications']] == [('gdpr-1', ['first_name', 'credit_limit', 'email'], 'DSR-0')] and d['counts']['rectifications'] == 1"
expect 0 "audit tail after the rectification" -- "$DOSSIER" audit tail --limit 200
contains "$WORK/out" '"action":"subjects.rectify"' "the rectification is audited"
contains "$WORK/out" '"reference":"DSR-0"' "with its reference"
# Personal values from a file or stdin, not the command line.
expect 0 "rectify reads the new values from stdin" -- sh -c "echo '{\"email\": \"greta@new.example\", \"lead_score\": 41}' | '$DOSSIER' subject rectify gdpr-subj contact gdpr-1 --fields-file - --reference DSR-1"
json_check "it names the fields read" "d['fields'] == ['email', 'lead_score'] and d['reference'] == 'DSR-1'"
echo '{"first_name": "Greta"}' >"$WORK/rectify.json"
expect 0 "rectify takes a fields file beside --set" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --fields-file "$WORK/rectify.json" --set lead_score=42 --reference DSR-2
json_check "both are sent" "d['fields'] == ['first_name', 'lead_score']"
expect 0 "get after the file rectifications" -- "$DOSSIER" --purpose legal_claims get contact gdpr-1
json_check "the values from the file are stored, typed" "d['fields']['email'] == 'greta@new.example' and d['fields']['first_name'] == 'Greta' and d['fields']['lead_score'] == 42"
expect 2 "a field named in the file and by --set is a usage error" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --fields-file "$WORK/rectify.json" --set first_name=X --reference DSR-3
echo '["first_name"]' >"$WORK/rectify-bad.json"
expect 5 "a fields file that is not an object exits 5" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --fields-file "$WORK/rectify-bad.json" --reference DSR-3
echo '{"first_name": Secret-Greta}' >"$WORK/rectify-bad.json"
expect 5 "a fields file that is not JSON exits 5" -- "$DOSSIER" subject rectify gdpr-subj contact gdpr-1 --fields-file "$WORK/rectify-bad.json" --reference DSR-3
if grep -q Secret-Greta "$WORK/err"; then fail "the error quotes the file's contents"; else ok "the error does not quote the file's contents"; fi
expect 0 "audit public-key" -- "$DOSSIER" audit public-key
PK=$(cat "$WORK/out")
[ ${#PK} -eq 64 ] && ok "the public key is 64 hex digits" || fail "public key '$PK'"
expect 0 "watch before the erasure, as operations" -- "$DOSSIER" watch --from 1 --no-follow
jsonl_check "operations hears of no consent to marketing" "not any(x['type'] == 'consent' for x in d)"
expect 0 "watch before the erasure, as marketing" -- "$DOSSIER" --purpose marketing watch --from 1 --no-follow
jsonl_check "marketing hears of the consent changes" "[x['state'] for x in d if x['type'] == 'consent'] == ['granted', 'withdrawn']"
ERASED_REF=$($PY -c "import json; print([x for x in map(json.loads, open('$WORK/out')) if x['type'] == 'consent'][0]['subject_ref'])")
expect 0 "subject erase" -- "$DOSSIER" subject erase gdpr-subj --reference DSR-1 --wait 8000
json_check "the certificate counts the record and carries the key" "d['records_deleted'] == 1 and d['public_key'] == '$PK'"
json_check "the certificate names the node that finished the erasure" "d['version'] == 2 and d['nodes'] == [1] and d['pending_nodes'] == []"
cp "$WORK/out" "$WORK/cert.json"
expect 0 "subject certificate" -- "$DOSSIER" subject certificate gdpr-subj
json_check "subject certificate issues it again" "d['raft_index'] == $($PY -c "import json; print(json.load(open('$WORK/cert.json'))['raft_index'])") and d['nodes'] == [1]"
expect 3 "subject certificate of a subject never erased exits 3" -- "$DOSSIER" subject certificate nobody-erased
expect 2 "subject erase --wait takes milliseconds up to 60000" -- "$DOSSIER" subject erase gdpr-subj --wait 70000
expect 3 "the erased record is gone" -- "$DOSSIER" get contact gdpr-1

# --- tracked requests: an extension ------------------------------------------
expect 0 "request file" -- "$DOSSIER" request file export gdpr-subj --reference T-9
REQ=$($PY -c "import json; print(json.load(open('$WORK/out'))['id'])")
expect 2 "request extend without --reason is a usage error" -- "$DOSSIER" request extend "$REQ"
expect 0 "request extend" -- "$DOSSIER" request extend "$REQ" --reason complexity
json_check "the deadline moved by two months, with the reason" "d['request']['deadline_ms'] - d['request']['received_ms'] == 90 * 86400000 and d['request']['extension_reason'] == 'complexity'"
expect 5 "a second extension is refused (exit 5)" -- "$DOSSIER" request extend "$REQ" --reason again

# --- duplicates --------------------------------------------------------------
printf '%s\n' '{"kind":"contact","id":"dup-1","subject_id":"dup-s1","fields":{"first_name":"Dee","email":"Dee@Example.com"}}' \
    '{"kind":"contact","id":"dup-2","subject_id":"dup-s2","fields":{"first_name":"Dee","email":"dee@example.COM"}}' >"$WORK/dups.jsonl"
expect 0 "put two contacts with one e-mail address" -- "$DOSSIER" put "$WORK/dups.jsonl"
expect 0 "dedup report" -- "$DOSSIER" dedup report contact --fields email
jsonl_check "dedup report groups them by e-mail" "any(g['field'] == 'email' and sorted(r['id'] for r in g['records']) == ['dup-1', 'dup-2'] for g in d)"
expect 5 "dedup report on an unindexed field exits 5" -- "$DOSSIER" dedup report contact --fields first_name
expect 0 "dedup report as billing" -- "$DOSSIER" --purpose billing dedup report contact --all
jsonl_check "billing, which may not see e-mail addresses, is not told who shares one" "not any(g['field'] == 'email' or 'dup-1' in [r['id'] for r in g['records']] for g in d)"
expect 7 "dedup report by a field the purpose may not see exits 7" -- "$DOSSIER" --purpose billing dedup report contact --fields email
contains "$WORK/err" "email" "the refusal names the field"
expect 2 "dedup without report is a usage error" -- "$DOSSIER" dedup contact
expect 0 "dedup rules list of a kind" -- "$DOSSIER" dedup rules list contact
json_check "without a defined set, each indexed field is a rule" "not d['defined'] and [r['fields'] for r in d['rules']] == [['email'], ['phone']]"
expect 0 "dedup rules define" -- "$DOSSIER" dedup rules define contact same_email=email email_and_phone=email,phone
json_check "the defined rules come back" "d['defined'] and d['version'] > 0 and [(r['name'], r['fields']) for r in d['rules']] == [('same_email', ['email']), ('email_and_phone', ['email', 'phone'])]"
expect 0 "dedup report by the rules" -- "$DOSSIER" dedup report contact
jsonl_check "the report names the rules of each group" "any(g['rules'] == ['same_email'] and sorted(r['id'] for r in g['records']) == ['dup-1', 'dup-2'] for g in d)"
cp "$WORK/out" "$WORK/dedup-all"
expect 0 "dedup report a group a page" -- "$DOSSIER" dedup report contact --limit 1 --all
lines_check "page by page, the same groups, each once" "sorted(map(json.dumps, d)) == sorted(json.dumps(json.loads(l)) for l in open('$WORK/dedup-all'))"
expect 0 "dedup rules list" -- "$DOSSIER" dedup rules list
jsonl_check "every defined set is listed" "[x['kind'] for x in d] == ['contact']"
expect 5 "a rule on a field that is not indexed exits 5" -- "$DOSSIER" dedup rules define contact by_name=first_name
contains "$WORK/err" "first_name" "the refusal names the field"
expect 2 "a rule without fields is a usage error" -- "$DOSSIER" dedup rules define contact nofields
expect 5 "rules of an unknown kind exit 5" -- "$DOSSIER" dedup rules list spaceship

# --- reports -----------------------------------------------------------------
printf '%s\n' '{"kind":"deal","id":"deal-1","fields":{"name":"One","stage":"closed_won","amount":1200.5}}' \
    '{"kind":"deal","id":"deal-2","fields":{"name":"Two","stage":"closed_won","amount":300}}' \
    '{"kind":"deal","id":"deal-3","fields":{"name":"Three","stage":"qualified","amount":50}}' >"$WORK/deals.jsonl"
expect 0 "put three deals" -- "$DOSSIER" put "$WORK/deals.jsonl"
expect 0 "report pipeline" -- "$DOSSIER" report pipeline
contains "$WORK/out" "1500.50" "the pipeline totals closed_won"
expect 0 "report pipeline --format json" -- "$DOSSIER" report pipeline --format json
jsonl_check "the pipeline as JSON lines" "{x['key']: (x['count'], x['sum']) for x in d} == {'closed_won': (2, 1500.5), 'qualified': (1, 50.0)}"
expect 0 "report pipeline --format png" -- "$DOSSIER" report pipeline --format png --out "$WORK/pipeline.png"
[ "$(head -c 4 "$WORK/pipeline.png" | od -An -tx1 | tr -d ' ')" = "89504e47" ] && ok "the chart is a PNG" || fail "the chart is not a PNG"
expect 5 "report --sum on a text field exits 5" -- "$DOSSIER" report deal --by stage --sum name
expect 2 "report --per without --time is a usage error" -- "$DOSSIER" report deal --per week
expect 5 "report --by email is refused (exit 5)" -- "$DOSSIER" report contact --by email --format json
contains "$WORK/err" "email" "the refusal names the field"
[ ! -s "$WORK/out" ] && ok "no address leaves the node" || fail "report --by email printed: $(cat "$WORK/out")"
expect 0 "report contact --by owner" -- "$DOSSIER" report contact --by owner

# --- segments ----------------------------------------------------------------
echo '{"name":"won_deals","kind":"deal","where":{"stage":["closed_won"]},"description":"won"}' >"$WORK/seg.json"
expect 0 "segment define" -- "$DOSSIER" segment define "$WORK/seg.json"
json_check "segment define prints its version" "d['name'] == 'won_deals' and d['version'] > 0"
expect 0 "segment run" -- "$DOSSIER" segment run won_deals --all
jsonl_check "segment run lists the won deals" "sorted(x['id'] for x in d) == ['deal-1', 'deal-2'] and all(x['kind'] == 'deal' for x in d)"
echo '{"name":"bad","kind":"deal","where":{"colour":"red"}}' >"$WORK/badseg.json"
expect 5 "a segment on a missing field exits 5" -- "$DOSSIER" segment define "$WORK/badseg.json"
echo '{"name":"bad","kind":"deal","wehre":{}}' >"$WORK/typoseg.json"
expect 5 "a segment with an unknown key exits 5" -- "$DOSSIER" segment define "$WORK/typoseg.json"
expect 3 "an unknown segment exits 3" -- "$DOSSIER" segment run nothing_here
# Ranges (dates made milliseconds) and tags.
printf '%s\n' '{"kind":"deal","id":"deal-4","fields":{"name":"Four","stage":"qualified","amount":20000,"close_date":1793577600000,"tags":"VIP, eu"}}' \
    '{"kind":"deal","id":"deal-5","fields":{"name":"Five","stage":"qualified","amount":90000,"close_date":1793577600000,"tags":"vip,churned"}}' \
    '{"kind":"deal","id":"deal-6","fields":{"name":"Six","stage":"qualified","amount":30000,"close_date":1796169600000,"tags":"eu"}}' >"$WORK/tagged.jsonl"
expect 0 "put tagged deals" -- "$DOSSIER" put "$WORK/tagged.jsonl"
expect 0 "get a tagged deal" -- "$DOSSIER" get deal deal-4
json_check "tags are stored normalised" "d['fields']['tags'] == 'eu,vip'"
echo '{"name":"big_nov","kind":"deal","where":{"amount":{"at_least":10000,"below":50000},"close_date":{"at_least":"2026-11-01","below":"2026-12-01T00:00"}}}' >"$WORK/rangeseg.json"
expect 0 "segment define with ranges" -- "$DOSSIER" segment define "$WORK/rangeseg.json"
expect 0 "segment run with ranges" -- "$DOSSIER" segment run big_nov --all
jsonl_check "the range segment holds the November deal of 10k to 50k" "[x['id'] for x in d] == ['deal-4']"
echo '{"name":"vip_kept","kind":"deal","where":{"tags":{"any_of":["vip"],"none_of":["churned"]}}}' >"$WORK/tagseg.json"
expect 0 "segment define with tags" -- "$DOSSIER" segment define "$WORK/tagseg.json"
expect 0 "segment run with tags" -- "$DOSSIER" segment run vip_kept --all
jsonl_check "the tag segment holds the VIP deal that did not churn" "[x['id'] for x in d] == ['deal-4']"
expect 0 "segment get" -- "$DOSSIER" segment get big_nov
json_check "segment get prints the definition as define reads it" "d['kind'] == 'deal' and d['where'] == {'amount': {'at_least': 10000, 'below': 50000}, 'close_date': {'at_least': 1793491200000, 'below': 1796083200000}} and d['version'] > 0"
cp "$WORK/out" "$WORK/big_nov.json"
expect 0 "what segment get prints can be defined again" -- "$DOSSIER" segment define "$WORK/big_nov.json"
expect 0 "segment list" -- "$DOSSIER" segment list
jsonl_check "segment list prints every definition" "sorted(x['name'] for x in d) == ['big_nov', 'vip_kept', 'won_deals'] and [x['where']['tags'] for x in d if x['name'] == 'vip_kept'] == [{'any_of': ['vip'], 'none_of': ['churned']}]"
expect 7 "segment get for a purpose that may not see the fields exits 7" -- "$DOSSIER" --purpose marketing segment get big_nov
contains "$WORK/err" "amount" "the refusal names the field"
expect 0 "segment list for that purpose" -- "$DOSSIER" --purpose marketing segment list
[ ! -s "$WORK/out" ] && ok "marketing is shown no definition on deal fields" || fail "marketing sees: $(cat "$WORK/out")"
expect 3 "segment get of an unknown segment exits 3" -- "$DOSSIER" segment get nothing_here
echo '{"name":"bad","kind":"deal","where":{"stage":{"at_least":1}}}' >"$WORK/badrange.json"
expect 5 "a range on an enum exits 5" -- "$DOSSIER" segment define "$WORK/badrange.json"
contains "$WORK/err" "range" "the refusal names the range"
echo '{"name":"bad","kind":"deal","where":{"amount":{"at_least":"next tuesday"}}}' >"$WORK/baddate.json"
expect 5 "a bound that is no date exits 5" -- "$DOSSIER" segment define "$WORK/baddate.json"
echo '{"name":"victim","kind":"contact","where":{"email":["victim.person@secret-example.org"]}}' >"$WORK/personalseg.json"
expect 5 "a segment on an e-mail address exits 5 (definitions are kept in the clear)" -- "$DOSSIER" segment define "$WORK/personalseg.json"
contains "$WORK/err" "email" "the refusal names the field"
! grep -q "victim.person" "$WORK/err" && ok "the refusal does not echo the address" || fail "the refusal echoes the address"
! grep -rlq "victim.person" "$WORK/data" && ok "the address reached no file of the node" || fail "the address is on disk: $(grep -rl victim.person "$WORK/data")"
echo '{"name":"bad","kind":"contact","where":{"lead_score":["forty"]}}' >"$WORK/badtype.json"
expect 5 "a value of another type than its field's exits 5" -- "$DOSSIER" segment define "$WORK/badtype.json"
contains "$WORK/err" "lead_score" "the refusal names the field"
echo '{"name":"bad","kind":"deal","where":{"stage":["won"]}}' >"$WORK/badenum.json"
expect 5 "a value an enumeration does not allow exits 5" -- "$DOSSIER" segment define "$WORK/badenum.json"
contains "$WORK/err" "allowed values" "the refusal says why"
echo '{"name":"bad","kind":"deal","where":{"tags":{"some_of":["x"]}}}' >"$WORK/badform.json"
expect 5 "an unknown form exits 5" -- "$DOSSIER" segment define "$WORK/badform.json"
echo '{"kind":"deal","id":"deal-7","fields":{"name":"Seven","stage":"qualified","tags":"a b"}}' >"$WORK/badtags.json"
expect 5 "a malformed tag set is refused" -- "$DOSSIER" put "$WORK/badtags.json"

# --- the change feed -------------------------------------------------------
expect 0 "watch --no-follow prints the history and ends" -- "$DOSSIER" watch --from 1 --no-follow
jsonl_check "changes come in commit order" "all(a['revision'] < b['revision'] for a, b in zip(d, d[1:]))"
jsonl_check "puts carry their record at its version" "all(x['record']['version'] == x['revision'] for x in d if x['type'] == 'put') and any(x['type'] == 'put' and x['record']['fields'].get('first_name') == 'Ann' for x in d)"
jsonl_check "the erased subject's changes left the feed with it" "not any(x['type'] == 'consent' or x.get('record', {}).get('id') == 'gdpr-1' for x in d)"
jsonl_check "the erasure stays, naming no other change's subject" "[x['subject_ref'] for x in d if x['type'] == 'erase'] == ['$ERASED_REF'] and all(x.get('subject_ref') != '$ERASED_REF' for x in d if x['type'] != 'erase')"
jsonl_check "the deletion of c2 is there, without its fields" "any(x['type'] == 'delete' and x['record']['id'] == 'c2' and not x['record']['fields'] for x in d)"
jsonl_check "c2's puts left the feed with it" "not any(x['type'] != 'delete' and x.get('record', {}).get('id') == 'c2' for x in d)"
! grep -q "bob@example.com" "$WORK/out" && ok "the deleted contact's address is not in the feed" || fail "the feed still holds c2's address"
cp "$WORK/out" "$WORK/history"
after=$($PY -c "import json; d=[json.loads(l) for l in open('$WORK/history')]; print('%d.%d' % (d[1]['revision'], d[1]['seq']))")
expect 0 "watch --after resumes after a change" -- "$DOSSIER" watch --after "$after" --count 1
[ "$(cat "$WORK/out")" = "$(sed -n 3p "$WORK/history")" ] && ok "--after gives the next change" || fail "--after: $(cat "$WORK/out") vs $(sed -n 3p "$WORK/history")"
expect 0 "scan for the revision to watch from" -- "$DOSSIER" scan company --limit 1
SCAN_REV=$(sed -n 's/^revision: //p' "$WORK/err")
echo '{"kind":"company","id":"late","fields":{"name":"Late Ltd"}}' >"$WORK/late.json"
expect 0 "put a company after the scan" -- "$DOSSIER" put "$WORK/late.json"
expect 0 "watch from the revision after the scan's" -- "$DOSSIER" watch --from "$((SCAN_REV + 1))" --no-follow
jsonl_check "the watch brings what changed since the scan, nothing before" "[x['record']['id'] for x in d] == ['late'] and all(x['revision'] > $SCAN_REV for x in d)"
expect 0 "watch --kind company --no-follow" -- "$DOSSIER" watch --kind company --from 1 --no-follow
jsonl_check "a kind filter keeps no contact changes" "not any(x.get('record', {}).get('kind') == 'contact' for x in d)"
expect 5 "watch of an unknown kind exits 5" -- "$DOSSIER" watch --kind spaceship
expect 2 "watch --after without a seq is a usage error" -- "$DOSSIER" watch --after 12

# --- master key rotation ------------------------------------------------------
echo '{"kind":"contact","id":"c-rot","subject_id":"s-rot","fields":{"first_name":"Rita"}}' >"$WORK/rot.json"
expect 0 "put a record before the rotation" -- "$DOSSIER" put "$WORK/rot.json"
expect 0 "keys status" -- "$DOSSIER" keys status
json_check "one master key version, in use, never rotated" "d['active_version'] == 1 and [v['version'] for v in d['loaded']] == [1] and d['rotation'] is None"
cp -p "$WORK/master.key" "$WORK/old.key"
expect 0 "a backup before the rotation" -- "$DOSSIER" backup create
BACKUP=$($PY -c "import json; print(json.load(open('$WORK/out'))['path'])")
expect 0 "keygen --add-version adds version 2" -- "$DOSSIER" keygen --add-version "$WORK/master.key"
[ "$(cat "$WORK/out")" = 2 ] && ok "it prints the new version" || fail "keygen --add-version printed $(cat "$WORK/out")"
[ "$(stat -c %a "$WORK/master.key")" = 600 ] && ok "the key file stays mode 600" || fail "key file mode after --add-version"
cmp -s "$WORK/old.key" <(head -c "$(stat -c %s "$WORK/old.key")" "$WORK/master.key") && ok "the old lines are kept as they were" || fail "--add-version changed the old lines"
expect 2 "keygen --add-version needs a FILE" -- "$DOSSIER" keygen --add-version
expect 5 "rotate before the node loaded the version is refused" -- "$DOSSIER" keys rotate
contains "$WORK/err" "keygen --add-version" "the refusal says what to do"
kill -HUP "$NODE_PID"
for _ in $(seq 100); do "$DOSSIER" keys status 2>/dev/null | grep -q '"version":2' && break; sleep 0.05; done
expect 0 "keys rotate" -- "$DOSSIER" keys rotate
json_check "every key rewrapped under version 2" "d['active_version'] == 2 and not d['rotation']['running'] and d['rotation']['from_version'] == 1 and d['rotation']['rewrapped'] == d['rotation']['subjects'] >= 1"
contains "$WORK/err" "done: every wrapped key is under master key version 2" "rotate says when it is done"
expect 0 "records read back after the rotation" -- "$DOSSIER" get contact c-rot
json_check "with their fields" "d['fields']['first_name'] == 'Rita'"
expect 5 "rotating again with no newer version is refused" -- "$DOSSIER" keys rotate
expect 2 "keys rotate --version 0 is a usage error" -- "$DOSSIER" keys rotate --version 0
expect 0 "audit tail" -- "$DOSSIER" audit tail --limit 200
contains "$WORK/out" '"action":"keys.rotate"' "the rotation is in the audit log"
contains "$WORK/out" '"action":"keys.rotate_finish"' "and its end"
contains "$WORK/out" '"action":"subjects.erase"' "the erasure is in the audit log"
sleep 0.5 # one audit window, so the refused reads are in the log too
expect 0 "audit verify with the public key" -- "$DOSSIER" audit verify --public-key "$PK"
contains "$WORK/out" "audit log verified" "verify says the log is intact"
expect 1 "audit verify with another key fails" -- "$DOSSIER" audit verify --public-key "$(echo "$PK" | tr 0-9a-f 1-9a-f0)"
echo "$PK" >"$WORK/audit.pub"
expect 0 "audit checkpoint" -- "$DOSSIER" audit checkpoint --public-key-file "$WORK/audit.pub"
json_check "the checkpoint is index, hash, time and signature" "d['index'] > 0 and len(d['hash']) == 64 and len(d['signature']) == 128 and d['public_key'] == '$PK'"
cp "$WORK/out" "$WORK/cp.json"
expect 0 "audit verify against the kept checkpoint" -- "$DOSSIER" audit verify --public-key-file "$WORK/audit.pub" --checkpoint "$WORK/cp.json"
contains "$WORK/out" "as the kept checkpoint signed it" "verify says the kept entry is there"
$PY -c "import json; d=json.load(open('$WORK/cp.json')); d['hash'] = ('0' if d['hash'][0] != '0' else '1') + d['hash'][1:]; json.dump(d, open('$WORK/cp-bad.json', 'w'))"
expect 1 "a kept checkpoint the key did not sign fails" -- "$DOSSIER" audit verify --public-key-file "$WORK/audit.pub" --checkpoint "$WORK/cp-bad.json"
contains "$WORK/err" "not signed by this public key" "the message says why"
echo '{"index": 1}' >"$WORK/cp-short.json"
expect 5 "a checkpoint file that is not one is refused" -- "$DOSSIER" audit verify --public-key-file "$WORK/audit.pub" --checkpoint "$WORK/cp-short.json"

# --- merges -------------------------------------------------------------------
printf '%s\n' '{"kind":"contact","id":"m-surv","subject_id":"mp-a","fields":{"first_name":"Mia","email":"mia@m.example","tags":"vip"}}' \
    '{"kind":"contact","id":"m-dup","subject_id":"mp-b","fields":{"first_name":"Maya","email":"MIA@m.example","phone":"+44 20 7946 0019","tags":"eu"}}' \
    '{"kind":"activity","id":"m-act","subject_id":"mp-b","fields":{"type":"call"},"links":[{"label":"logged_on","kind":"contact","id":"m-dup"}]}' >"$WORK/merge.jsonl"
expect 0 "put a contact, its duplicate and the duplicate's activity" -- "$DOSSIER" put "$WORK/merge.jsonl"
expect 0 "consent of the survivor's subject" -- "$DOSSIER" consent grant mp-a marketing
expect 0 "consent withdrawn by the duplicate's subject" -- "$DOSSIER" consent withdraw mp-b marketing
expect 0 "merge" -- "$DOSSIER" merge contact m-surv m-dup --prefer newest --field first_name=m-surv --reference TICKET-1
json_check "merge prints the pending merge" "d['state'] == 'pending' and d['id'].startswith('MRG-') and d['survivor_id'] == 'm-surv' and d['duplicate_ids'] == ['m-dup'] and d['records_moved'] == 1 and d['reference'] == 'TICKET-1'"
MERGE_ID=$($PY -c "import json; print(json.load(open('$WORK/out'))['id'])")
MERGE_REV=$($PY -c "import json; print(json.load(open('$WORK/out'))['version'])")
expect 0 "get the survivor" -- "$DOSSIER" get contact m-surv
json_check "the survivor has the merged fields" "d['fields']['first_name'] == 'Mia' and d['fields']['phone'] == '+442079460019' and d['fields']['tags'] == 'eu,vip'"
expect 3 "the duplicate is gone" -- "$DOSSIER" get contact m-dup
expect 0 "get the activity" -- "$DOSSIER" get activity m-act
json_check "the activity is the survivor subject's, on the survivor" "d['subject_id'] == 'mp-a' and d['links'] == [{'label': 'logged_on', 'kind': 'contact', 'id': 'm-surv'}]"
expect 0 "consent of the merged subject" -- "$DOSSIER" consent show mp-a marketing
jsonl_check "withdrawn wins" "[x['state'] for x in d] == ['withdrawn']"
expect 0 "merge list" -- "$DOSSIER" merge list
jsonl_check "the merge is pending" "[x['id'] for x in d] == ['$MERGE_ID']"
expect 0 "the change feed from the merge" -- "$DOSSIER" watch --from "$MERGE_REV" --no-follow
jsonl_check "the feed has the duplicate deleted and the survivor put" "any(x['type'] == 'delete' and x['record']['id'] == 'm-dup' for x in d) and any(x['type'] == 'put' and x['record']['id'] == 'm-surv' for x in d)"
expect 0 "merge undo" -- "$DOSSIER" merge undo "$MERGE_ID" --reference TICKET-2
json_check "undo prints the undone merge" "d['state'] == 'undone' and d['id'] == '$MERGE_ID'"
expect 0 "the duplicate is back" -- "$DOSSIER" get contact m-dup
json_check "as it was" "d['subject_id'] == 'mp-b' and d['fields']['first_name'] == 'Maya'"
expect 0 "consent of the duplicate's subject is back" -- "$DOSSIER" consent show mp-b marketing
jsonl_check "withdrawn, as it was" "[x['state'] for x in d] == ['withdrawn']"
expect 3 "a merge undone cannot be undone again" -- "$DOSSIER" merge undo "$MERGE_ID"
expect 0 "merge again" -- "$DOSSIER" merge contact m-surv m-dup
MERGE_ID=$($PY -c "import json; print(json.load(open('$WORK/out'))['id'])")
printf '%s\n' '{"kind":"deal","id":"md-1","fields":{"name":"D1","stage":"qualified"}}' \
    '{"kind":"deal","id":"md-2","fields":{"name":"D2","stage":"qualified"}}' >"$WORK/deals.jsonl"
expect 0 "put two deals" -- "$DOSSIER" put "$WORK/deals.jsonl"
expect 0 "merge the deals" -- "$DOSSIER" merge deal md-1 md-2
DEAL_MERGE=$($PY -c "import json; print(json.load(open('$WORK/out'))['id'])")
expect 0 "merge list, one per page" -- "$DOSSIER" merge list --limit 1
jsonl_check "the oldest first" "[x['id'] for x in d] == ['$MERGE_ID']"
contains "$WORK/err" "next_page_token:" "merge list says where the next page starts"
token=$(sed -n 's/^next_page_token: //p' "$WORK/err")
expect 0 "merge list, the next page" -- "$DOSSIER" merge list --limit 1 --page-token "$token"
jsonl_check "the deals' merge" "[x['id'] for x in d] == ['$DEAL_MERGE']"
expect 0 "merge list --all" -- "$DOSSIER" merge list --limit 1 --all
jsonl_check "both" "[x['id'] for x in d] == ['$MERGE_ID', '$DEAL_MERGE']"
expect 5 "a page token of another listing is refused" -- "$DOSSIER" merge list --page-token nonsense
expect 2 "--all is for merge list only" -- "$DOSSIER" merge confirm "$DEAL_MERGE" --all
expect 5 "a merge id in lower case is refused" -- "$DOSSIER" merge undo "$(tr A-F a-f <<<"$DEAL_MERGE")"
expect 0 "merge confirm the deals" -- "$DOSSIER" merge confirm "$DEAL_MERGE"
expect 0 "merge confirm" -- "$DOSSIER" merge confirm "$MERGE_ID"
json_check "confirm prints the confirmed merge" "d['state'] == 'confirmed'"
expect 3 "a confirmed merge cannot be undone" -- "$DOSSIER" merge undo "$MERGE_ID"
expect 0 "merge list after the confirmation" -- "$DOSSIER" merge list
[ ! -s "$WORK/out" ] && ok "no merge is pending" || fail "a merge is still listed"
expect 2 "merge without a duplicate is a usage error" -- "$DOSSIER" merge contact m-surv
expect 2 "an unknown rule is a usage error" -- "$DOSSIER" merge contact m-surv m-x --prefer oldest
expect 3 "merging a record that does not exist exits 3" -- "$DOSSIER" merge contact m-surv m-x
expect 5 "a choice of an unknown field exits 5" -- "$DOSSIER" merge contact m-surv c1 --field colour=c1
contains "$WORK/err" "colour" "the refusal names the field"
expect 0 "audit tail after merges" -- "$DOSSIER" audit tail --limit 100
contains "$WORK/out" "records.merge_undo" "the undo is audited"
contains "$WORK/out" "records.merge_confirm" "the confirmation is audited"

kill -TERM "$NODE_PID"
wait "$NODE_PID"
status=$?
NODE_PID=
[ "$status" -eq 0 ] && ok "SIGTERM stops the node with exit 0" || fail "node exit status $status"
contains "$WORK/node.log" "stopped cleanly" "the node logs its clean stop"

# --- after the rotation: the old key alone opens nothing ------------------
expect 1 "a node given only the old master key refuses to start" -- \
    "$DOSSIERD" --data-dir "$WORK/data" --key-file "$WORK/old.key" --listen 127.0.0.1:0
contains "$WORK/err" "WRONG_KEY" "it says WRONG_KEY"
contains "$WORK/err" "needs master key version 2" "and names the version needed"
(umask 077; grep -v '^dossier-master-key 1 ' "$WORK/master.key" >"$WORK/new.key")
"$DOSSIERD" --data-dir "$WORK/data" --key-file "$WORK/new.key" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready3" 2>"$WORK/node3.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready3" ] && break; sleep 0.05; done
[ -s "$WORK/ready3" ] && ok "with only the new version it serves" || { fail "new key only"; cat "$WORK/node3.log"; }
expect 0 "and reads back the records" -- "$DOSSIER" -t "$(cat "$WORK/ready3")" get contact c-rot
json_check "with their fields" "d['fields']['first_name'] == 'Rita'"
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=

# A backup from before the rotation needs the key version it was sealed under.
expect 0 "restore the backup from before the rotation" -- \
    "$DOSSIER" backup restore --without-ledger "$BACKUP" "$WORK/restored"
contains "$WORK/err" "sealed under master key version 1" "restore names the key version the backup needs"
json_check "and so does its summary" "[k['version'] for k in d['master_keys']] == [1]"
expect 1 "the restored backup refuses the new key alone" -- \
    "$DOSSIERD" --data-dir "$WORK/restored" --key-file "$WORK/new.key" --listen 127.0.0.1:0
contains "$WORK/err" "WRONG_KEY" "it says WRONG_KEY"
contains "$WORK/err" "restored backup" "and that a restored backup needs the version it was sealed under"
"$DOSSIERD" --data-dir "$WORK/restored" --key-file "$WORK/old.key" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready4" 2>"$WORK/node4.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready4" ] && break; sleep 0.05; done
[ -s "$WORK/ready4" ] && ok "with the old key it serves" || { fail "restore with the old key"; cat "$WORK/node4.log"; }
expect 0 "and reads back what the backup held" -- "$DOSSIER" -t "$(cat "$WORK/ready4")" get contact c-rot
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=

# --- expired fields leave the change feed ----------------------------------
# The retention sweeper runs 45 days ahead (a test-only clock offset), so a
# 30-day field of a record without a subject expires at once.
"$DOSSIERD" --data-dir "$WORK/data3" --key-file "$WORK/master.key" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready5" --enable-fault-injection \
    --retention-sweep-ms 200 --retention-clock-offset-days 45 2>"$WORK/node5.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready5" ] && break; sleep 0.05; done
[ -s "$WORK/ready5" ] || { fail "the retention node did not start"; cat "$WORK/node5.log"; }
cat >"$WORK/supplier.json" <<'JSON'
{"kind":"supplier","personal":false,"description":"no subject",
 "fields":[{"name":"name","type":"string","category":"operational"},
           {"name":"contact_person","type":"string","category":"identity","retention_days":30}]}
JSON
export DOSSIER_TARGET=$(cat "$WORK/ready5")
expect 0 "define a kind with a 30-day identity field" -- "$DOSSIER" schema define "$WORK/supplier.json"
echo '{"kind":"supplier","id":"sup-1","fields":{"name":"Acme Supplies","contact_person":"Jane Expired"}}' >"$WORK/sup.json"
expect 0 "put a supplier" -- "$DOSSIER" put "$WORK/sup.json"
for _ in $(seq 100); do
    "$DOSSIER" get supplier sup-1 >"$WORK/out" 2>/dev/null
    grep -q "Jane Expired" "$WORK/out" || break
    sleep 0.1
done
expect 0 "get after the sweep" -- "$DOSSIER" get supplier sup-1
json_check "the expired field is gone from the record" "'contact_person' not in d['fields'] and d['fields']['name'] == 'Acme Supplies'"
expect 0 "watch --from 1 after the sweep" -- "$DOSSIER" watch --from 1 --no-follow
[ -s "$WORK/out" ] && ! grep -q "Jane Expired" "$WORK/out" && ok "the expired value left the feed" || fail "the feed still holds the expired value: $(cat "$WORK/out")"
jsonl_check "the expiry stands for the record" "[x['type'] for x in d if x.get('record', {}).get('id') == 'sup-1'] == ['expire']"
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=

# --- the example config file is accepted; a bad one is refused ----------
CONF=$(dirname "$0")/../../deploy/dossierd.conf.example
expect 0 "token bootstrap writes a token file" -- "$DOSSIER" token bootstrap "$WORK/boot.token"
[ "$(stat -c %a "$WORK/boot.token")" = 600 ] && ok "the bootstrap token file is mode 600" || fail "bootstrap token file mode"
"$DOSSIERD" --config "$CONF" --data-dir "$WORK/data2" --key-file "$WORK/master.key" \
    --bootstrap-token-file "$WORK/boot.token" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready2" 2>"$WORK/node2.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready2" ] && break; sleep 0.05; done
[ -s "$WORK/ready2" ] && ok "a node starts from the example config" || { fail "example config"; cat "$WORK/node2.log"; }
T2=$(cat "$WORK/ready2")
expect 7 "the example config requires authentication" -- "$DOSSIER" --target "$T2" get contact c1
contains "$WORK/err" UNAUTHENTICATED "the refusal says UNAUTHENTICATED"
expect 7 "the bootstrap token reads no data" -- env DOSSIER_TOKEN="$(cat "$WORK/boot.token")" "$DOSSIER" --target "$T2" get contact c1
expect 0 "the bootstrap token adds the first admin" -- env DOSSIER_TOKEN="$(cat "$WORK/boot.token")" "$DOSSIER" --target "$T2" principal add ops admin
ADMIN2=$($PY -c "import json; print(json.load(open('$WORK/out'))['token'])")
expect 7 "the bootstrap token is spent" -- env DOSSIER_TOKEN="$(cat "$WORK/boot.token")" "$DOSSIER" --target "$T2" principal add ops2 admin
expect 0 "the admin's token works" -- env DOSSIER_TOKEN="$ADMIN2" "$DOSSIER" --target "$T2" principal list
expect 5 "under require_auth the last admin cannot remove itself" -- env DOSSIER_TOKEN="$ADMIN2" "$DOSSIER" --target "$T2" principal remove ops
contains "$WORK/err" "last admin" "the refusal says why"
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=
# Without require_auth the admin removes itself; the bootstrap token stays
# spent when the node is back under the example config.
"$DOSSIERD" --data-dir "$WORK/data2" --key-file "$WORK/master.key" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready2b" 2>"$WORK/node2b.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready2b" ] && break; sleep 0.05; done
expect 0 "the admin removes itself where authentication is optional" -- env DOSSIER_TOKEN="$ADMIN2" "$DOSSIER" --target "$(cat "$WORK/ready2b")" principal remove ops
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=
"$DOSSIERD" --config "$CONF" --data-dir "$WORK/data2" --key-file "$WORK/master.key" \
    --bootstrap-token-file "$WORK/boot.token" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready2c" 2>"$WORK/node2c.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready2c" ] && break; sleep 0.05; done
expect 7 "the bootstrap token stays spent with no principal left" -- env DOSSIER_TOKEN="$(cat "$WORK/boot.token")" "$DOSSIER" --target "$(cat "$WORK/ready2c")" principal add mallory admin
contains "$WORK/err" "had principals" "the refusal says the token is spent"
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=
# The spent token's file deleted, as the example config says: the node
# starts all the same.
rm -f "$WORK/boot.token"
"$DOSSIERD" --config "$CONF" --data-dir "$WORK/data2" --key-file "$WORK/master.key" \
    --bootstrap-token-file "$WORK/boot.token" \
    --listen 127.0.0.1:0 --ready-file "$WORK/ready2d" 2>"$WORK/node2d.log" &
NODE_PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready2d" ] && break; sleep 0.05; done
[ -s "$WORK/ready2d" ] && ok "a node restarts after the token file was deleted" || { fail "restart without the token file"; cat "$WORK/node2d.log"; }
contains "$WORK/node2d.log" "is gone: no bootstrap token" "the node logs that it has no token"
kill -TERM "$NODE_PID"; wait "$NODE_PID"; NODE_PID=
printf '[node]\nlisten = 127.0.0.1:0\nshoe_size = 44\n' >"$WORK/bad.conf"
expect 2 "an unknown config setting is refused" -- "$DOSSIERD" --config "$WORK/bad.conf"
contains "$WORK/err" shoe_size "the message names the setting"
printf '[node]\nmax_message_bytes = lots\n' >"$WORK/bad2.conf"
expect 2 "a malformed config value is refused" -- "$DOSSIERD" --config "$WORK/bad2.conf"
contains "$WORK/err" max-message-bytes "the message names the setting"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
