/* dossier: the admin and compliance command line of Dossier. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <dossier/dossier.h>

#include "json.h"
#include "keyfile.h"
#include "keys.h"
#include "fileutil.h"
#include "restore.h"

#ifndef DOSSIER_VERSION
#define DOSSIER_VERSION "0.0.0"
#endif

/* Exit codes a script can rely on. */
enum exit_code {
    EXIT_OK = 0,
    EXIT_ERROR = 1,       /* anything not below */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NOT_FOUND = 3,   /* the record, kind or purpose does not exist */
    EXIT_CONFLICT = 4,    /* version conflict, already exists, retry */
    EXIT_INVALID = 5,     /* the node refused the input */
    EXIT_UNAVAILABLE = 6, /* node unreachable, deadline, shutting down */
    EXIT_DENIED = 7,      /* unauthenticated or permission denied */
};

static const char usage_text[] =
    "Usage: dossier [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Talks to a Dossier node. Records go in and out as JSON.\n"
    "\n"
    "Options (before the command):\n"
    "  -t, --target HOST:PORT[,HOST:PORT...]\n"
    "                          node(s) to call (default $DOSSIER_TARGET, else\n"
    "                          127.0.0.1:7700); with several, calls fail over\n"
    "      --serializable      let any node answer reads from its own state,\n"
    "                          which may lag (default: linearizable reads)\n"
    "  -p, --purpose NAME      purpose of data calls (default "
    "$DOSSIER_PURPOSE, else\n"
    "                          operations); see: dossier purpose list\n"
    "      --token-file FILE   file holding the bearer token of the calls\n"
    "                          (default: the token in $DOSSIER_TOKEN)\n"
    "      --tls-ca FILE       call over TLS, verifying the nodes against this\n"
    "                          PEM CA bundle (default $DOSSIER_TLS_CA; unset:\n"
    "                          plaintext)\n"
    "      --tls-cert FILE     PEM client certificate to present, with --tls-key\n"
    "                          (default $DOSSIER_TLS_CERT); its CN can name a\n"
    "                          principal, then no token is needed\n"
    "      --tls-key FILE      PEM key of --tls-cert (default $DOSSIER_TLS_KEY)\n"
    "      --timeout MS        deadline of each call (default 10000)\n"
    "      --pretty            indent JSON output\n"
    "  -h, --help              this text\n"
    "      --version           print the version\n"
    "\n"
    "Commands:\n"
    "  keygen FILE             write a new master key file (mode 0600)\n"
    "  keygen --add-version FILE\n"
    "                          add a new master key version to a key file\n"
    "                          (replaced whole, mode 0600, synced); prints\n"
    "                          the version. Copy the line to every node's\n"
    "                          key file, then SIGHUP the nodes\n"
    "  keys status             master key versions: the one in use, those\n"
    "                          the node holds (with key ids), the rotation\n"
    "                          under way or the last one\n"
    "  keys rotate [--version N] [--no-wait]\n"
    "                          rewrap every data key and the keyset under\n"
    "                          version N (default: the highest the leader\n"
    "                          holds; admin role), once every node holds it;\n"
    "                          waits until done, then prints the status\n"
    "  principal add NAME ROLE [--purposes LIST]\n"
    "                          a principal kept by the cluster itself (admin\n"
    "                          role); prints its new token once. The first\n"
    "                          one turns authentication on everywhere\n"
    "  principal list          those principals (never their tokens)\n"
    "  principal remove NAME   its token stops working on every node\n"
    "  token new NAME ROLE     a new bearer token for principal NAME (role\n"
    "                          service, compliance or admin), and the line\n"
    "                          that grants it in a node's --auth-file\n"
    "  token bootstrap FILE    write a new one-time token (mode 0600) for\n"
    "                          nodes started with --require-auth\n"
    "                          --bootstrap-token-file FILE: it may only add\n"
    "                          the cluster's first admin\n"
    "  put [FILE|-] [--expect-version N | --create]\n"
    "                          create or replace records read as JSON\n"
    "                          (an object, an array, or one per line);\n"
    "                          prints {kind,id,version,created} per record\n"
    "  get KIND ID             print a record\n"
    "  delete KIND ID [--expect-version N]\n"
    "  find KIND FIELD VALUE [--limit N] [--page-token T] [--all]\n"
    "                          records whose indexed FIELD equals VALUE\n"
    "  list SUBJECT [--kind K] [--limit N] [--page-token T] [--all]\n"
    "                          records of a data subject\n"
    "  scan KIND [--limit N] [--page-token T] [--all]\n"
    "                          records of a kind, a page at a time; the\n"
    "                          first page's revision R on stderr\n"
    "                          (\"revision: R\"): watch --from R+1 then\n"
    "                          misses no change made since\n"
    "  dedup report KIND [--fields F[,F...]] [--limit N] [--page-token T]\n"
    "               [--all]\n"
    "                          candidate duplicates: groups of records of\n"
    "                          KIND connected by matches under its rules\n"
    "                          (or, with --fields, each field given alone),\n"
    "                          found through the blind indexes; one group\n"
    "                          per line, with the rules it matched under.\n"
    "                          Only fields the purpose may see are compared.\n"
    "                          A page reads a bounded part of the index and\n"
    "                          may hold fewer groups than --limit, or none:\n"
    "                          --all follows the pages to the end\n"
    "  dedup rules define KIND NAME=FIELD[,FIELD...]...\n"
    "                          replace KIND's duplicate rules: records match\n"
    "                          under a rule when all its indexed fields hold\n"
    "                          the same normalised value (by default each\n"
    "                          indexed field is a rule)\n"
    "  dedup rules list [KIND] KIND's rules (defined or the default), or\n"
    "                          every defined set, one per line\n"
    "  merge KIND SURVIVOR DUPLICATE... [--prefer survivor|newest]\n"
    "        [--field FIELD=ID]... [--reference LABEL]\n"
    "                          fold duplicates into the survivor: fields by\n"
    "                          the rule (survivor's first, or the newest;\n"
    "                          --field takes one record's value; tags are\n"
    "                          joined), links moved to it; for contacts of\n"
    "                          other subjects, their records and consent\n"
    "                          (most restrictive) become the survivor\n"
    "                          subject's. Prints the pending merge\n"
    "  merge undo ID [--reference LABEL]\n"
    "                          restore what the merge changed, exactly\n"
    "  merge confirm ID [--reference LABEL]\n"
    "                          keep it for good: the undo data is deleted\n"
    "  merge list [--limit N] [--page-token T] [--all]\n"
    "                          merges pending confirmation, oldest first\n"
    "  segment define [FILE|-]  save a filter from JSON: {\"name\", \"kind\",\n"
    "                          \"where\": {FIELD: VALUE or [VALUES] or\n"
    "                          {\"any_of\"|\"all_of\"|\"none_of\": [VALUES],\n"
    "                          \"at_least\": N, \"below\": N}},\n"
    "                          \"created_after_ms\" (and _before_, updated_),\n"
    "                          \"consent_purpose\"}; all_of and none_of of a\n"
    "                          tags field name tags; range bounds may be\n"
    "                          dates (YYYY-MM-DD, UTC). Definitions are kept\n"
    "                          in the clear: no e-mail or phone field, no\n"
    "                          text of behavioral or financial fields,\n"
    "                          only enumerations and flags of identity,\n"
    "                          contact and special ones\n"
    "  segment run NAME [--limit N] [--page-token T] [--all]\n"
    "                          the records that match, for the purpose: one\n"
    "                          {\"kind\", \"id\"} per line\n"
    "  segment get NAME        a segment's definition, as define reads it\n"
    "                          (service or admin role; refused when it\n"
    "                          filters on a field the purpose may not see)\n"
    "  segment list            every definition the purpose may see, one\n"
    "                          per line\n"
    "  report pipeline | KIND [--by FIELD] [--sum FIELD]\n"
    "         [--per day|week|month --time FIELD] [--format table|json|png]\n"
    "         [--out FILE]\n"
    "                          counts (and totals of --sum) per value of\n"
    "                          --by, per period of --time (a timestamp\n"
    "                          field, created_at or updated_at), computed by\n"
    "                          the node; pipeline: deals by stage with their\n"
    "                          amounts. png draws a chart into --out. --by\n"
    "                          may not be a field that identifies people\n"
    "                          (e-mail, phone, names and other text of the\n"
    "                          identity, contact or special category)\n"
    "  watch [--kind K[,K...]] [--from REVISION | --after REVISION.SEQ]\n"
    "        [--count N] [--no-follow] [--progress]\n"
    "                          the change feed: every put, delete, erase,\n"
    "                          consent change (of the --purpose only) and\n"
    "                          expiry (\"record_expired\": the whole record\n"
    "                          went), one JSON object per line, in commit\n"
    "                          order, filtered by the purpose as reads\n"
    "                          are; from now on, from a revision, or\n"
    "                          after a change printed before; ends after N\n"
    "                          changes, once caught up (--no-follow), or\n"
    "                          never. --progress also prints\n"
    "                          {\"type\":\"progress\",\"revision\":R} marks:\n"
    "                          everything up to R was printed\n"
    "  links KIND ID [--direction out|in|both] [--label L] [--limit N]\n"
    "                [--page-token T] [--all]\n"
    "                          records linked from the record (out), to it\n"
    "                          (in) or both (the default), one\n"
    "                          {label,direction,record} per line\n"
    "  schema list             every kind, one JSON object per line\n"
    "  schema get KIND\n"
    "  schema define [FILE|-]  create or extend a kind from JSON\n"
    "  cluster status          each target's view: role, leader, term, log\n"
    "                          indexes, lag; members with their match index\n"
    "  cluster add ID HOST:PORT  add a node as a learner (start it first with\n"
    "                          --node-id ID --join)\n"
    "  cluster promote ID      make a caught-up learner a voter\n"
    "  cluster remove ID       remove a node from the cluster\n"
    "  cluster transfer-leader ID  hand leadership to a voter\n"
    "  backup create           a consistent online backup of the (first)\n"
    "                          target node, in its --backup-dir\n"
    "  backup list             that node's backups, oldest first\n"
    "  backup restore (--ledger FILE | --without-ledger) BACKUP_DIR DATA_DIR\n"
    "                          copy a backup into a new data directory,\n"
    "                          checking every file; the node started on it\n"
    "                          becomes a one-node cluster and erases again\n"
    "                          every subject of FILE (dossier subject\n"
    "                          ledger) before it serves\n"
    "  health [SERVICE]        each target's gRPC health (grpc.health.v1):\n"
    "                          SERVING or NOT_SERVING; exit 6 unless all\n"
    "                          serve\n"
    "\n"
    "GDPR commands:\n"
    "  purpose list            every purpose, built-in ones included, one\n"
    "                          JSON object per line\n"
    "  purpose get NAME\n"
    "  purpose define NAME --categories CAT[,CAT...] --basis BASIS\n"
    "                [--description TEXT]\n"
    "                          define or change a purpose (admin role) and\n"
    "                          print it as stored. CAT: identity, contact,\n"
    "                          financial, special, behavioral, operational.\n"
    "                          BASIS: consent, contract, legal_obligation,\n"
    "                          vital_interests, public_task,\n"
    "                          legitimate_interest\n"
    "  consent grant SUBJECT PURPOSE [--source LABEL] [--notice VERSION]\n"
    "  consent withdraw SUBJECT PURPOSE [--source LABEL] [--notice VERSION]\n"
    "                          record a subject's decision; prints the event\n"
    "  consent show SUBJECT [PURPOSE]\n"
    "                          the current state per purpose, one per line\n"
    "  consent history SUBJECT [PURPOSE]\n"
    "                          every event, oldest first, one per line\n"
    "  subject status SUBJECT [--reference LABEL]\n"
    "  subject restrict SUBJECT [--reference LABEL]\n"
    "  subject unrestrict SUBJECT [--reference LABEL]\n"
    "                          the subject's pseudonym, restriction (Art. 18;\n"
    "                          restrict and unrestrict set it) and records\n"
    "  subject rectify SUBJECT KIND ID [--fields-file FILE|-]\n"
    "                  [--set FIELD=VALUE]... [--unset FIELD]... --reference LABEL\n"
    "                          correct (or remove) fields of one of the\n"
    "                          subject's records (Art. 16), checked by the\n"
    "                          kind's schema; --fields-file reads the new\n"
    "                          values as a JSON object (FIELD: value, as in\n"
    "                          a record's \"fields\"), from FILE or stdin:\n"
    "                          use it for personal values, which --set\n"
    "                          would show in ps and shell history. --set\n"
    "                          VALUE takes the field's type. Audited with\n"
    "                          the reference, listed in the subject's export\n"
    "  subject erase SUBJECT [--reference LABEL] [--wait MS]\n"
    "                          erase a subject on every node (Art. 17), for\n"
    "                          good; waits up to MS (default 5000) for every\n"
    "                          voter to report it finished, then prints the\n"
    "                          signed erasure certificate (nodes that did,\n"
    "                          pending_nodes that had not) and checks it\n"
    "  subject certificate SUBJECT\n"
    "                          the certificate of the subject's last\n"
    "                          erasure, signed now over the nodes that have\n"
    "                          reported finishing it; checks its signature\n"
    "  subject export SUBJECT  everything stored about the subject (Art. 15,\n"
    "                          20) as one JSON document: records with every\n"
    "                          field, consent events, audit entries\n"
    "  request file erasure|export SUBJECT [--reference LABEL]\n"
    "               [--received YYYY-MM-DD]\n"
    "                          track a data subject's request; its deadline\n"
    "                          is one month after it was received\n"
    "  request list [--open]   tracked requests, soonest deadline first,\n"
    "                          with days left or overdue\n"
    "  request show ID         one request, and its proof once executed\n"
    "  request extend ID --reason LABEL\n"
    "                          GDPR Art. 12(3): two further months for an\n"
    "                          open request, once, within its first month\n"
    "                          (tell the subject why)\n"
    "  request execute ID SUBJECT [--out FILE]\n"
    "                          meet the request: erase the subject, or write\n"
    "                          the export to FILE (needed for exports);\n"
    "                          prints the signed proof and checks it\n"
    "  subject ledger          the erasure ledger: one signed certificate per\n"
    "                          line; keep it with your backups (a restore\n"
    "                          replays it)\n"
    "  audit tail [--from N] [--limit N]\n"
    "                          audit entries, one per line: the last N\n"
    "                          (default 20), or N from entry --from on\n"
    "  audit public-key        the audit log's public key (hex) on stdout; how\n"
    "                          far the log and its signatures reach on stderr\n"
    "  audit checkpoint [--public-key HEX | --public-key-file FILE]\n"
    "                          the log's latest signed checkpoint as JSON,\n"
    "                          checked with the key: keep it apart from the\n"
    "                          cluster (audit checkpoint > cp.json)\n"
    "  audit verify --public-key HEX | --public-key-file FILE\n"
    "               [--checkpoint FILE]\n"
    "                          check the whole audit log (encoding, hash\n"
    "                          chain, stored hashes, signed checkpoints)\n"
    "                          against a public key kept apart from the\n"
    "                          node, and that it still holds the entry of a\n"
    "                          kept checkpoint with the same hash (a log\n"
    "                          cut off or rewritten and re-signed fails)\n"
    "\n"
    "LABEL and VERSION are short tags such as signup-form, 2026-03 or\n"
    "TICKET-123, never personal data: [A-Za-z0-9._:/-], at most 64 bytes.\n"
    "Consent, subject and audit commands need the compliance role (consent\n"
    "also the service role).\n"
    "\n"
    "Listings print one record per line; when more remain and --all is\n"
    "not given, the last line on stderr is \"next_page_token: T\".\n"
    "\n"
    "Exit status: 0 ok, 1 other error (also an audit log or an erasure\n"
    "certificate that does not verify), 2 usage, 3 not found, 4 conflict\n"
    "(version conflict, already exists), 5 input refused (invalid, unknown\n"
    "kind, schema violation, too large, failed precondition), 6 node\n"
    "unavailable or too slow, 7 unauthenticated or permission denied.\n";

struct cli {
    struct dossier_client *client;
    const char *target;
    const char *purpose;
    const char *token;
    char token_buf[160];
    const char *tls_ca, *tls_cert, *tls_key; /* NULL: not given */
    int64_t timeout_ms;
    size_t json_flags;
    struct dossier_call_options read_opts; /* for reads */
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "dossier: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see dossier --help)\n");
    return EXIT_USAGE;
}

static int exit_for(int code)
{
    switch (code) {
    case DOSSIER_OK: return EXIT_OK;
    case DOSSIER_NOT_FOUND: return EXIT_NOT_FOUND;
    case DOSSIER_VERSION_CONFLICT:
    case DOSSIER_ALREADY_EXISTS:
    case DOSSIER_RETRY: return EXIT_CONFLICT;
    case DOSSIER_INVALID_ARGUMENT:
    case DOSSIER_UNKNOWN_KIND:
    case DOSSIER_SCHEMA_VIOLATION:
    case DOSSIER_TOO_LARGE:
    case DOSSIER_FAILED_PRECONDITION:
    case DOSSIER_OUT_OF_RANGE: return EXIT_INVALID;
    case DOSSIER_UNAVAILABLE:
    case DOSSIER_DEADLINE_EXCEEDED:
    case DOSSIER_CANCELLED: return EXIT_UNAVAILABLE;
    case DOSSIER_UNAUTHENTICATED:
    case DOSSIER_PERMISSION_DENIED: return EXIT_DENIED;
    default: return EXIT_ERROR;
    }
}

static int report(const struct dossier_status *st)
{
    fprintf(stderr, "dossier: %s: %s\n", dossier_code_name(st->code),
            st->message);
    return exit_for(st->code);
}

/* The client settings of every call the CLI makes, for @target. */
static void client_options(const struct cli *cli, const char *target,
                           struct dossier_client_options *o)
{
    dossier_client_options_init(o);
    o->target = target;
    o->purpose = cli->purpose;
    o->token = cli->token;
    o->timeout_ms = cli->timeout_ms;
    o->tls_ca = cli->tls_ca;
    o->tls_cert = cli->tls_cert;
    o->tls_key = cli->tls_key;
}

static int connect_node(struct cli *cli)
{
    struct dossier_client_options o;
    struct dossier_status st;

    client_options(cli, cli->target, &o);
    if (dossier_client_open(&o, &cli->client, &st))
        return report(&st);
    return 0;
}

static int print_json(struct cli *cli, json_t *j)
{
    if (!j || json_dumpf(j, stdout, cli->json_flags) != 0) {
        json_decref(j);
        fprintf(stderr, "dossier: cannot print JSON\n");
        return EXIT_ERROR;
    }
    fputc('\n', stdout);
    json_decref(j);
    return EXIT_OK;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-')
        return -1;
    *out = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* Options shared by the commands below. */
struct cmd_opts {
    uint64_t expect;
    int has_expect;
    uint32_t limit;
    const char *page_token;
    const char *kind;
    int all;
    /* GDPR commands; strings are borrowed from argv. */
    const char *categories;
    const char *basis;
    const char *description;
    const char *source;
    const char *notice;
    const char *reference;
    uint64_t from; /* 0: not given */
    const char *public_key;
    const char *public_key_file;
    /* request */
    const char *received; /* YYYY-MM-DD */
    const char *out;
    int open_only;
    /* watch */
    struct dossier_watch_position after;
    int has_after;
    uint64_t count; /* 0: no end */
    int progress;
    int no_follow;
    const char *fields; /* dedup: "a,b" */
    /* report */
    const char *by, *sum, *per, *time_field, *format;
    const char *reason; /* request extend */
    /* merge */
    const char *prefer;
    const char *choices[64]; /* FIELD=ID */
    size_t n_choices;
    /* links */
    int direction; /* enum dossier_link_direction */
    const char *label;
    uint32_t wait_ms; /* subject erase */
    const char *checkpoint; /* audit verify: a kept checkpoint's file */
};

/* Parses the options of a command from @argv (getopt state is reset) and
 * leaves the positional arguments at argv[optind..]. */
static int cmd_options(int argc, char **argv, const char *allowed,
                       struct cmd_opts *o)
{
    static const struct option lopts[] = {
        {"expect-version", required_argument, NULL, 'e'},
        {"create", no_argument, NULL, 'C'},
        {"limit", required_argument, NULL, 'l'},
        {"page-token", required_argument, NULL, 'T'},
        {"kind", required_argument, NULL, 'k'},
        {"all", no_argument, NULL, 'a'},
        {"categories", required_argument, NULL, 'c'},
        {"basis", required_argument, NULL, 'b'},
        {"description", required_argument, NULL, 'd'},
        {"source", required_argument, NULL, 's'},
        {"notice", required_argument, NULL, 'n'},
        {"reference", required_argument, NULL, 'r'},
        {"from", required_argument, NULL, 'f'},
        {"public-key", required_argument, NULL, 'K'},
        {"public-key-file", required_argument, NULL, 'F'},
        {"received", required_argument, NULL, 'R'},
        {"out", required_argument, NULL, 'o'},
        {"open", no_argument, NULL, 'O'},
        {"after", required_argument, NULL, 'A'},
        {"count", required_argument, NULL, 'N'},
        {"progress", no_argument, NULL, 'P'},
        {"no-follow", no_argument, NULL, 'W'},
        {"fields", required_argument, NULL, 'X'},
        {"by", required_argument, NULL, 'y'},
        {"sum", required_argument, NULL, 'u'},
        {"per", required_argument, NULL, 'q'},
        {"time", required_argument, NULL, 'm'},
        {"format", required_argument, NULL, 'g'},
        {"reason", required_argument, NULL, 'Z'},
        {"direction", required_argument, NULL, 'D'},
        {"label", required_argument, NULL, 'L'},
        {"wait", required_argument, NULL, 'w'},
        {"checkpoint", required_argument, NULL, 'j'},
        {"prefer", required_argument, NULL, 'E'},
        {"field", required_argument, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int ch, idx = -1;

    memset(o, 0, sizeof(*o));
    optind = 0; /* 0, not 1: makes glibc start a fresh scan */
    opterr = 0;
    /* Options may come before or after the arguments; "--" ends them.
     * The leading ':' tells a missing value (':') from an unknown option. */
    while ((ch = getopt_long(argc, argv, ":", lopts, &idx)) != -1) {
        if (ch == ':')
            return usage_error("%s needs a value", argv[optind - 1]);
        if (ch == '?')
            return usage_error("%s: option not accepted here", argv[optind - 1]);
        /* A known option with its value: name the option, not the value. */
        if (!strchr(allowed, ch))
            return usage_error("--%s: option not accepted here",
                               lopts[idx].name);
        switch (ch) {
        case 'e':
            if (parse_u64(optarg, &o->expect))
                return usage_error("--expect-version %s: not a version",
                                   optarg);
            o->has_expect = 1;
            break;
        case 'C':
            o->expect = 0;
            o->has_expect = 1;
            break;
        case 'l':
            if (parse_u64(optarg, &v) || v == 0 || v > 1000)
                return usage_error("--limit %s: give 1 to 1000", optarg);
            o->limit = (uint32_t)v;
            break;
        case 'T': o->page_token = optarg; break;
        case 'k': o->kind = optarg; break;
        case 'a': o->all = 1; break;
        case 'c': o->categories = optarg; break;
        case 'b': o->basis = optarg; break;
        case 'd': o->description = optarg; break;
        case 's': o->source = optarg; break;
        case 'n': o->notice = optarg; break;
        case 'r': o->reference = optarg; break;
        case 'f':
            if (parse_u64(optarg, &o->from) || o->from == 0)
                return usage_error("--from %s: give an entry index or a "
                                   "revision, 1 or more",
                                   optarg);
            break;
        case 'K': o->public_key = optarg; break;
        case 'F': o->public_key_file = optarg; break;
        case 'R': o->received = optarg; break;
        case 'o': o->out = optarg; break;
        case 'O': o->open_only = 1; break;
        case 'A': {
            /* REV.SEQ, as printed with each change */
            char *dot = strchr(optarg, '.');
            uint64_t seq = 0;
            if (!dot)
                return usage_error("--after %s: give REVISION.SEQ, as "
                                   "printed with a change",
                                   optarg);
            *dot = '\0';
            if (parse_u64(optarg, &o->after.revision) ||
                o->after.revision == 0 || parse_u64(dot + 1, &seq) ||
                seq >= UINT32_MAX) {
                *dot = '.';
                return usage_error("--after %s: give REVISION.SEQ, as "
                                   "printed with a change",
                                   optarg);
            }
            *dot = '.';
            o->after.seq = (uint32_t)seq + 1; /* the change after it */
            o->has_after = 1;
            break;
        }
        case 'N':
            if (parse_u64(optarg, &o->count) || o->count == 0)
                return usage_error("--count %s: give 1 or more", optarg);
            break;
        case 'P': o->progress = 1; break;
        case 'W': o->no_follow = 1; break;
        case 'X': o->fields = optarg; break;
        case 'y': o->by = optarg; break;
        case 'u': o->sum = optarg; break;
        case 'q': o->per = optarg; break;
        case 'm': o->time_field = optarg; break;
        case 'g': o->format = optarg; break;
        case 'Z': o->reason = optarg; break;
        case 'D':
            if (strcmp(optarg, "out") == 0)
                o->direction = DOSSIER_LINKS_OUTGOING;
            else if (strcmp(optarg, "in") == 0)
                o->direction = DOSSIER_LINKS_INCOMING;
            else if (strcmp(optarg, "both") == 0)
                o->direction = DOSSIER_LINKS_BOTH;
            else
                return usage_error("--direction %s: give out, in or both",
                                   optarg);
            break;
        case 'L': o->label = optarg; break;
        case 'j': o->checkpoint = optarg; break;
        case 'w':
            if (parse_u64(optarg, &v) || v > 60000)
                return usage_error("--wait %s: give 0 to 60000 ms", optarg);
            o->wait_ms = (uint32_t)v;
            break;
        case 'E':
            if (strcmp(optarg, "survivor") != 0 && strcmp(optarg, "newest") != 0)
                return usage_error("--prefer %s: give survivor or newest",
                                   optarg);
            o->prefer = optarg;
            break;
        case 'I':
            if (!strchr(optarg, '=') || optarg[0] == '=' ||
                !strchr(optarg, '=')[1])
                return usage_error("--field %s: give FIELD=ID", optarg);
            if (o->n_choices == sizeof(o->choices) / sizeof(o->choices[0]))
                return usage_error("--field %s: at most 64", optarg);
            o->choices[o->n_choices++] = optarg;
            break;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */

static int cmd_keygen(struct cli *cli, int argc, char **argv)
{
    struct dossier_status st;
    (void)cli;
    if (argc == 3 && strcmp(argv[1], "--add-version") == 0)
        return keys_add_version(argv[2]);
    if (argc != 2 || argv[1][0] == '-')
        return usage_error("usage: keygen FILE | keygen --add-version "
                           "FILE%s", "");
    if (keyfile_create(argv[1], &st)) {
        fprintf(stderr, "dossier: %s\n", st.message);
        return st.code == DOSSIER_ALREADY_EXISTS ? EXIT_CONFLICT : EXIT_ERROR;
    }
    fprintf(stderr, "wrote a new master key to %s (mode 0600); keep it "
            "secret and backed up apart from the data\n", argv[1]);
    return EXIT_OK;
}

/* A new random bootstrap token (32 bytes, hex) in a new file of mode 0600,
 * for a node's --bootstrap-token-file. */
static int token_bootstrap(const char *path)
{
    uint8_t raw[32];
    char token[66];
    int fd, ok;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "dossier: cannot create %s: %s\n", path,
                strerror(errno));
        return errno == EEXIST ? EXIT_CONFLICT : EXIT_ERROR;
    }
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(token, sizeof(token), raw, sizeof(raw));
    token[64] = '\n';
    ok = write(fd, token, 65) == 65 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(token, sizeof(token));
    if (!ok) {
        fprintf(stderr, "dossier: cannot write %s: %s\n", path,
                strerror(errno));
        unlink(path);
        return EXIT_ERROR;
    }
    fprintf(stderr, "wrote a bootstrap token to %s (mode 0600): start the "
            "nodes with --require-auth --bootstrap-token-file %s, then add "
            "the first admin with it once: DOSSIER_TOKEN=$(cat %s) dossier "
            "principal add NAME admin\n",
            path, path, path);
    return EXIT_OK;
}

/* A new random token (32 bytes, hex) and the auth-file line that names its
 * SHA-256: the node stores only the hash. */
static int cmd_token(struct cli *cli, int argc, char **argv)
{
    uint8_t raw[32], hash[crypto_hash_sha256_BYTES];
    char token[65], hex[65], line[256];
    json_t *j;
    int rc;
    if (argc == 3 && strcmp(argv[1], "bootstrap") == 0)
        return token_bootstrap(argv[2]);
    if (argc != 4 || strcmp(argv[1], "new") != 0)
        return usage_error("usage: token new NAME ROLE, or token bootstrap "
                           "FILE%s", "");
    if (strcmp(argv[3], "service") != 0 && strcmp(argv[3], "compliance") != 0 &&
        strcmp(argv[3], "admin") != 0)
        return usage_error("role '%s': give service, compliance or admin",
                           argv[3]);
    if (!argv[2][0] || strlen(argv[2]) > 64 || strpbrk(argv[2], " \t#"))
        return usage_error("name '%s': 1 to 64 characters, no blanks or #",
                           argv[2]);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(token, sizeof(token), raw, sizeof(raw));
    crypto_hash_sha256(hash, (const unsigned char *)token, 64);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    snprintf(line, sizeof(line), "%s %s %s", argv[2], argv[3], hex);
    j = json_pack("{s:s, s:s, s:s, s:s}", "name", argv[2], "role", argv[3],
                  "token", token, "auth_line", line);
    rc = print_json(cli, j);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(token, sizeof(token));
    return rc;
}

static int put_one(struct cli *cli, const json_t *j, size_t n,
                   const struct cmd_opts *o)
{
    struct dossier_record *r;
    struct dossier_put_result res;
    struct dossier_status st;
    char err[256];
    int rc;

    if (json_to_record(j, &r, err, sizeof(err))) {
        fprintf(stderr, "dossier: record %zu: %s\n", n, err);
        return EXIT_INVALID;
    }
    rc = dossier_put(cli->client, NULL, r,
                     o->has_expect ? o->expect : DOSSIER_ANY_VERSION, &res,
                     &st);
    if (rc) {
        fprintf(stderr, "dossier: record %zu (%s %s): %s: %s\n", n, r->kind,
                r->id, dossier_code_name(st.code), st.message);
        dossier_record_free(r);
        return exit_for(rc);
    }
    rc = print_json(cli, json_pack("{s:s, s:s, s:I, s:b}", "kind", r->kind,
                                   "id", r->id, "version",
                                   (json_int_t)res.version, "created",
                                   res.created));
    dossier_record_free(r);
    return rc;
}

static int cmd_put(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    const char *path;
    FILE *in = stdin;
    json_error_t jerr;
    size_t n = 0;
    int rc;

    if ((rc = cmd_options(argc, argv, "eC", &o)))
        return rc;
    if (argc - optind > 1)
        return usage_error("put takes at most one FILE%s", "");
    path = optind < argc ? argv[optind] : "-";
    if (strcmp(path, "-") != 0) {
        in = fopen(path, "r");
        if (!in) {
            fprintf(stderr, "dossier: cannot open %s: %s\n", path,
                    strerror(errno));
            return EXIT_ERROR;
        }
    }
    if ((rc = connect_node(cli)))
        goto out;
    for (;;) {
        json_t *j = json_loadf(in, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES,
                               &jerr);
        if (!j) {
            int c;
            while ((c = fgetc(in)) == ' ' || c == '\n' || c == '\r' ||
                   c == '\t')
                ;
            if (c == EOF && n > 0)
                break;
            if (c == EOF && n == 0 && jerr.position == 0) {
                fprintf(stderr, "dossier: no records on input\n");
                rc = EXIT_INVALID;
                goto out;
            }
            fprintf(stderr, "dossier: input is not JSON: %s (line %d)\n",
                    jerr.text, jerr.line);
            rc = EXIT_INVALID;
            goto out;
        }
        if (json_is_array(j)) {
            for (size_t i = 0; i < json_array_size(j) && rc == 0; i++)
                rc = put_one(cli, json_array_get(j, i), ++n, &o);
        } else {
            rc = put_one(cli, j, ++n, &o);
        }
        json_decref(j);
        if (rc)
            goto out;
    }
    rc = EXIT_OK;
out:
    if (in != stdin)
        fclose(in);
    return rc;
}

static int cmd_get(struct cli *cli, int argc, char **argv)
{
    struct dossier_record *r;
    struct dossier_status st;
    int rc;

    if (argc != 3)
        return usage_error("get needs KIND and ID%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    if (dossier_get(cli->client, &cli->read_opts, argv[1], argv[2], &r, &st))
        return report(&st);
    rc = print_json(cli, json_from_record(r));
    dossier_record_free(r);
    return rc;
}

static int cmd_delete(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    struct dossier_status st;
    uint64_t version;
    int rc;

    if ((rc = cmd_options(argc, argv, "e", &o)))
        return rc;
    if (argc - optind != 2)
        return usage_error("delete needs KIND and ID%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    if (dossier_delete(cli->client, NULL, argv[optind], argv[optind + 1],
                       o.has_expect ? o.expect : DOSSIER_ANY_VERSION,
                       &version, &st))
        return report(&st);
    return print_json(cli, json_pack("{s:s, s:s, s:I}", "kind", argv[optind],
                                     "id", argv[optind + 1], "deleted_version",
                                     (json_int_t)version));
}

/* Fetches and prints one page of a listing asked for with @pr; puts the
 * next page's token (malloc'd) or NULL into *@next. Returns 0 or an exit
 * code (the error already reported). */
typedef int (*page_fn)(struct cli *cli, void *arg,
                       const struct dossier_page_request *pr, char **next);

/* Runs a listing page by page from --page-token: every page with --all,
 * else the first, and then "next_page_token: T" on stderr when more
 * remain. */
static int run_pages(struct cli *cli, const struct cmd_opts *o, page_fn fn,
                     void *arg)
{
    struct dossier_page_request pr = {o->limit, o->page_token};
    char *token = NULL;
    int rc;

    for (;;) {
        char *next = NULL;
        rc = fn(cli, arg, &pr, &next);
        free(token);
        token = next;
        if (rc || !token)
            break;
        if (!o->all) {
            fflush(stdout);
            fprintf(stderr, "next_page_token: %s\n", token);
            break;
        }
        pr.page_token = token;
    }
    free(token);
    return rc;
}

enum listing { L_FIND, L_LIST, L_SCAN };

struct listing_args {
    enum listing which;
    const char *a, *b, *kind;
    const struct dossier_value *v;
};

static int listing_page(struct cli *cli, void *arg,
                        const struct dossier_page_request *pr, char **next)
{
    const struct listing_args *l = arg;
    struct dossier_page page;
    struct dossier_status st;
    int e, rc = 0;

    if (l->which == L_FIND)
        e = dossier_find(cli->client, &cli->read_opts, l->a, l->b, l->v, pr,
                         &page, &st);
    else if (l->which == L_LIST)
        e = dossier_list_by_subject(cli->client, &cli->read_opts, l->a,
                                    l->kind, pr, &page, &st);
    else
        e = dossier_scan(cli->client, &cli->read_opts, l->a, pr, &page, &st);
    if (e)
        return report(&st);
    if (l->which == L_SCAN && !pr->page_token)
        fprintf(stderr, "revision: %llu\n",
                (unsigned long long)page.revision);
    for (size_t i = 0; i < page.n_records && rc == 0; i++)
        rc = print_json(cli, json_from_record(page.records[i]));
    *next = page.next_page_token;
    page.next_page_token = NULL;
    dossier_page_release(&page);
    return rc;
}

/* Runs a listing page by page, printing each record as a line. */
static int run_listing(struct cli *cli, enum listing which, const char *a,
                       const char *b, const struct dossier_value *v,
                       const struct cmd_opts *o)
{
    struct listing_args l = {which, a, b, o->kind, v};
    return run_pages(cli, o, listing_page, &l);
}

static int cmd_find(struct cli *cli, int argc, char **argv)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_STRING};
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "lTa", &o)))
        return rc;
    if (argc - optind != 3)
        return usage_error("find needs KIND, FIELD and VALUE%s", "");
    v.u.s = argv[optind + 2];
    if ((rc = connect_node(cli)))
        return rc;
    return run_listing(cli, L_FIND, argv[optind], argv[optind + 1], &v, &o);
}

static int cmd_list(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "klTa", &o)))
        return rc;
    if (argc - optind != 1)
        return usage_error("list needs a SUBJECT id%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    return run_listing(cli, L_LIST, argv[optind], NULL, NULL, &o);
}

static int cmd_scan(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "lTa", &o)))
        return rc;
    if (argc - optind != 1)
        return usage_error("scan needs a KIND%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    return run_listing(cli, L_SCAN, argv[optind], NULL, NULL, &o);
}

/* Each linked record as {"label", "direction": "out"|"in", "record"},
 * page by page as run_listing does. */
struct links_args {
    const char *kind, *id;
    const struct cmd_opts *o;
};

static int links_page(struct cli *cli, void *arg,
                      const struct dossier_page_request *pr, char **next)
{
    const struct links_args *l = arg;
    struct dossier_link_page page;
    struct dossier_status st;
    int rc = 0;

    if (dossier_list_links(cli->client, &cli->read_opts, l->kind, l->id,
                           l->o->direction, l->o->label, pr, &page, &st))
        return report(&st);
    for (size_t i = 0; i < page.n_links && rc == 0; i++) {
        const struct dossier_linked_record *k = &page.links[i];
        rc = print_json(
            cli, json_pack("{s:s, s:s, s:o}", "label", k->label, "direction",
                           k->direction == DOSSIER_LINKS_INCOMING ? "in"
                                                                  : "out",
                           "record", json_from_record(k->record)));
    }
    *next = page.next_page_token;
    page.next_page_token = NULL;
    dossier_link_page_release(&page);
    return rc;
}

static int cmd_links(struct cli *cli, int argc, char **argv)
{
    struct links_args l;
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "DLlTa", &o)))
        return rc;
    if (argc - optind != 2)
        return usage_error("links needs KIND and ID%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    l = (struct links_args){argv[optind], argv[optind + 1], &o};
    return run_pages(cli, &o, links_page, &l);
}

static int cmd_schema(struct cli *cli, int argc, char **argv)
{
    struct dossier_kind_schema *k, **kinds;
    struct dossier_status st;
    size_t n;
    int rc;

    if (argc < 2)
        return usage_error("schema needs list, get or define%s", "");
    if (strcmp(argv[1], "list") == 0) {
        if (argc != 2)
            return usage_error("schema list takes no arguments%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_schema_list(cli->client, &cli->read_opts, &kinds, &n, &st))
            return report(&st);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = print_json(cli, json_from_kind(kinds[i]));
            dossier_kind_schema_free(kinds[i]);
        }
        free(kinds);
        return rc;
    }
    if (strcmp(argv[1], "get") == 0) {
        if (argc != 3)
            return usage_error("schema get needs a KIND%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_schema_get(cli->client, &cli->read_opts, argv[2], &k, &st))
            return report(&st);
        rc = print_json(cli, json_from_kind(k));
        dossier_kind_schema_free(k);
        return rc;
    }
    if (strcmp(argv[1], "define") == 0) {
        const char *path = argc > 2 ? argv[2] : "-";
        struct dossier_kind_schema *def, *stored;
        json_error_t jerr;
        char err[256];
        json_t *j;

        if (argc > 3)
            return usage_error("schema define takes at most one FILE%s", "");
        j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &jerr)
                                   : json_load_file(path, 0, &jerr);
        if (!j) {
            fprintf(stderr, "dossier: %s: not JSON: %s (line %d)\n", path,
                    jerr.text, jerr.line);
            return EXIT_INVALID;
        }
        rc = json_to_kind(j, &def, err, sizeof(err));
        json_decref(j);
        if (rc) {
            fprintf(stderr, "dossier: %s: %s\n", path, err);
            return EXIT_INVALID;
        }
        if ((rc = connect_node(cli))) {
            dossier_kind_schema_free(def);
            return rc;
        }
        rc = dossier_schema_define(cli->client, NULL, def, &stored, &st);
        dossier_kind_schema_free(def);
        if (rc)
            return report(&st);
        rc = print_json(cli, json_from_kind(stored));
        dossier_kind_schema_free(stored);
        return rc;
    }
    return usage_error("unknown schema command '%s'", argv[1]);
}

static json_t *json_from_status(const char *target,
                                const struct dossier_cluster_status *s)
{
    json_t *members = json_array();
    for (size_t i = 0; i < s->n_members; i++) {
        const struct dossier_cluster_member *m = &s->members[i];
        json_t *jm = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)m->id,
                               "address", m->address, "role",
                               m->voter ? "voter" : "learner");
        if (jm && strcmp(s->role, "leader") == 0) {
            json_object_set_new(jm, "match_index",
                                json_integer((json_int_t)m->match_index));
            json_object_set_new(jm, "lag", json_integer(
                (json_int_t)(s->last_index - (m->match_index < s->last_index
                                                  ? m->match_index
                                                  : s->last_index))));
            json_object_set_new(jm, "active", json_boolean(m->active));
        }
        json_array_append_new(members, jm);
    }
    return json_pack("{s:s, s:I, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:b, "
                     "s:o}",
                     "target", target, "node_id", (json_int_t)s->node_id,
                     "role", s->role, "leader_id", (json_int_t)s->leader_id,
                     "leader_address", s->leader_address, "term",
                     (json_int_t)s->term, "commit_index",
                     (json_int_t)s->commit_index, "applied_index",
                     (json_int_t)s->applied_index, "first_index",
                     (json_int_t)s->first_index, "last_index",
                     (json_int_t)s->last_index, "keys_ready", s->keys_ready,
                     "members", members);
}

/* Each target's own view, one line per target: asking one client for all
 * would show only the first node that answers. */
/* Asks each target on its own (one client for all would show only the
 * first node that answers): @ask prints that target's line, or fails
 * with @st. A failure is printed as {"target", "error"}. Returns the
 * worst exit status, or the one @ask sets in *@worst. */
typedef int (*target_ask)(struct cli *cli, struct dossier_client *c,
                          const char *target, void *arg, int *worst,
                          struct dossier_status *st);

static int each_target(struct cli *cli, target_ask ask, void *arg)
{
    char *list = strdup(cli->target), *save = NULL, *tok;
    int rc = EXIT_OK, worst = EXIT_OK;

    if (!list)
        return EXIT_ERROR;
    for (tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        struct dossier_client_options o;
        struct dossier_client *c;
        struct dossier_status st;
        client_options(cli, tok, &o);
        if (!cli->timeout_ms)
            o.timeout_ms = 3000;
        if (dossier_client_open(&o, &c, &st)) {
            worst = report(&st);
            continue;
        }
        rc = ask(cli, c, tok, arg, &worst, &st);
        if (rc < 0) {
            fprintf(stderr, "dossier: %s: %s: %s\n", tok,
                    dossier_code_name(st.code), st.message);
            rc = print_json(cli, json_pack("{s:s, s:s}", "target", tok,
                                           "error", st.message));
            worst = exit_for(st.code);
        }
        dossier_client_close(c);
        if (rc)
            worst = rc;
    }
    free(list);
    return worst;
}

static int ask_status(struct cli *cli, struct dossier_client *c,
                      const char *target, void *arg, int *worst,
                      struct dossier_status *st)
{
    struct dossier_cluster_status s;
    (void)arg;
    (void)worst;
    if (dossier_cluster_status(c, NULL, &s, st))
        return -1;
    return print_json(cli, json_from_status(target, &s));
}

static int cluster_status_all(struct cli *cli)
{
    return each_target(cli, ask_status, NULL);
}

static json_t *json_from_backup(const struct dossier_backup *b)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "name",
                     b->name, "path", b->path, "created_ms",
                     (json_int_t)b->created_ms, "node_id",
                     (json_int_t)b->node_id, "applied_index",
                     (json_int_t)b->applied_index, "bytes",
                     (json_int_t)b->bytes, "files", (json_int_t)b->files,
                     "cluster_name", b->cluster_name);
}

/* `dossier backup create|list|restore`. */
static int cmd_backup(struct cli *cli, int argc, char **argv)
{
    struct dossier_status st;
    int rc;

    if (argc < 2)
        return usage_error("backup needs create, list or restore%s", "");
    if (strcmp(argv[1], "restore") == 0) {
        const char *ledger = NULL;
        int without = 0, k = 2;
        char err[1024];
        json_t *summary;
        enum restore_result r;
        for (; k < argc && strncmp(argv[k], "--", 2) == 0; k++) {
            if (strcmp(argv[k], "--ledger") == 0 && k + 1 < argc)
                ledger = argv[++k];
            else if (strcmp(argv[k], "--without-ledger") == 0)
                without = 1;
            else
                return usage_error("backup restore: unknown option '%s'",
                                   argv[k]);
        }
        if (argc - k != 2)
            return usage_error("backup restore needs BACKUP_DIR and "
                               "DATA_DIR%s", "");
        if (!ledger == !without)
            return usage_error("backup restore needs --ledger FILE (from "
                               "dossier subject ledger) or, to let subjects "
                               "erased since the backup come back, "
                               "--without-ledger%s", "");
        r = restore_backup(argv[k], argv[k + 1], ledger, &summary, err,
                           sizeof(err));
        if (r != RESTORE_OK) {
            fprintf(stderr, "dossier: backup restore: %s\n", err);
            return r == RESTORE_IO ? EXIT_ERROR : EXIT_INVALID;
        }
        fprintf(stderr,
                "dossier: restored. Start dossierd on %s (same master key, "
                "its own --node-id and --listen): it becomes a cluster of "
                "one voter, %s, then serves; add other nodes with dossier "
                "cluster add.\n",
                argv[k + 1],
                ledger ? "erases again every subject of the ledger"
                       : "WITHOUT replaying erasures");
        {
            json_t *keys = json_object_get(summary, "master_keys"), *e;
            size_t i;
            json_array_foreach(keys, i, e)
                fprintf(stderr,
                        "dossier: the backup is sealed under master key "
                        "version %lld (key id %s): the node's key file must "
                        "hold that version, even if the cluster has rotated "
                        "away from it since.\n",
                        (long long)json_integer_value(
                            json_object_get(e, "version")),
                        json_string_value(json_object_get(e, "key_id")));
        }
        return print_json(cli, summary);
    }
    if (argc != 2)
        return usage_error("backup %s takes no arguments", argv[1]);
    if (strcmp(argv[1], "create") == 0) {
        struct dossier_call_options co = {0};
        struct dossier_backup b;
        /* Hashing a large database takes a while. */
        co.timeout_ms = cli->timeout_ms ? cli->timeout_ms : 3600 * 1000;
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_backup_create(cli->client, &co, &b, &st))
            return report(&st);
        return print_json(cli, json_from_backup(&b));
    }
    if (strcmp(argv[1], "list") == 0) {
        struct dossier_backup *b;
        size_t n;
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_backup_list(cli->client, NULL, &b, &n, &st))
            return report(&st);
        rc = EXIT_OK;
        for (size_t i = 0; i < n && rc == EXIT_OK; i++)
            rc = print_json(cli, json_from_backup(&b[i]));
        free(b);
        return rc;
    }
    return usage_error("unknown backup command '%s'", argv[1]);
}

/* `dossier principal add|list|remove`: principals of the cluster's
 * replicated state. */
static int cmd_principal(struct cli *cli, int argc, char **argv)
{
    struct dossier_status st;
    const char *sub = argc > 1 ? argv[1] : "";
    int rc;

    if (strcmp(sub, "add") == 0) {
        const char *purposes = NULL;
        struct dossier_principal p;
        char token[65];
        if (argc == 6 && strcmp(argv[4], "--purposes") == 0)
            purposes = argv[5];
        else if (argc != 4)
            return usage_error("principal add needs NAME ROLE "
                               "[--purposes LIST]%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_principal_add(cli->client, NULL, argv[2], argv[3],
                                  purposes, token, &p, &st))
            return report(&st);
        rc = print_json(cli, json_pack("{s:s, s:s, s:s, s:s}", "name", p.name,
                                       "role", p.role, "purposes", p.purposes,
                                       "token", token));
        sodium_memzero(token, sizeof(token));
        fprintf(stderr, "dossier: the token is shown once: give it to its "
                        "owner (the cluster keeps only its SHA-256)\n");
        return rc;
    }
    if (strcmp(sub, "remove") == 0) {
        if (argc != 3)
            return usage_error("principal remove needs NAME%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_principal_remove(cli->client, NULL, argv[2], &st))
            return report(&st);
        return print_json(cli, json_pack("{s:s, s:b}", "name", argv[2],
                                         "removed", 1));
    }
    if (strcmp(sub, "list") == 0) {
        struct dossier_principal *p;
        size_t n;
        if (argc != 2)
            return usage_error("principal list takes no arguments%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_principal_list(cli->client, NULL, &p, &n, &st))
            return report(&st);
        rc = EXIT_OK;
        for (size_t i = 0; i < n && rc == EXIT_OK; i++)
            rc = print_json(cli, json_pack("{s:s, s:s, s:s, s:I, s:s}", "name",
                                           p[i].name, "role", p[i].role,
                                           "purposes", p[i].purposes,
                                           "created_ms",
                                           (json_int_t)p[i].created_ms,
                                           "created_by", p[i].created_by));
        free(p);
        return rc;
    }
    return usage_error("principal needs add, list or remove%s", "");
}

/* `dossier health [SERVICE]`: each target's gRPC health, one line per
 * target; exit 0 only when every target is SERVING. */
static int ask_health(struct cli *cli, struct dossier_client *c,
                      const char *target, void *arg, int *worst,
                      struct dossier_status *st)
{
    const char *service = arg;
    enum dossier_health h;
    if (dossier_health_check(c, NULL, service, &h, st))
        return -1;
    if (h != DOSSIER_HEALTH_SERVING && *worst == EXIT_OK)
        *worst = EXIT_UNAVAILABLE;
    return print_json(
        cli, json_pack("{s:s, s:s, s:s}", "target", target, "service",
                       service, "status",
                       h == DOSSIER_HEALTH_SERVING       ? "SERVING"
                       : h == DOSSIER_HEALTH_NOT_SERVING ? "NOT_SERVING"
                                                         : "UNKNOWN"));
}

static int cmd_health(struct cli *cli, int argc, char **argv)
{
    if (argc > 2)
        return usage_error("health takes at most a SERVICE%s", "");
    return each_target(cli, ask_health, argc > 1 ? argv[1] : (char *)"");
}

static int parse_id(const char *s, uint64_t *id)
{
    return parse_u64(s, id) || *id == 0 ? -1 : 0;
}

static int cmd_cluster(struct cli *cli, int argc, char **argv)
{
    struct dossier_cluster_status s;
    struct dossier_status st;
    uint64_t id;
    int rc;

    if (argc < 2)
        return usage_error("cluster needs status, add, promote, remove or "
                           "transfer-leader%s", "");
    if (strcmp(argv[1], "status") == 0) {
        if (argc != 2)
            return usage_error("cluster status takes no arguments%s", "");
        return cluster_status_all(cli);
    }
    if (argc < 3 || parse_id(argv[2], &id))
        return usage_error("cluster %s needs a node ID (1 or more)", argv[1]);
    if ((rc = connect_node(cli)))
        return rc;
    if (strcmp(argv[1], "add") == 0) {
        if (argc != 4)
            return usage_error("cluster add needs ID and HOST:PORT%s", "");
        rc = dossier_cluster_add_node(cli->client, NULL, id, argv[3], &s, &st);
    } else if (argc != 3) {
        return usage_error("cluster %s takes one node ID", argv[1]);
    } else if (strcmp(argv[1], "promote") == 0) {
        rc = dossier_cluster_promote_node(cli->client, NULL, id, &s, &st);
    } else if (strcmp(argv[1], "remove") == 0) {
        rc = dossier_cluster_remove_node(cli->client, NULL, id, &s, &st);
    } else if (strcmp(argv[1], "transfer-leader") == 0) {
        rc = dossier_cluster_transfer_leader(cli->client, NULL, id, &s, &st);
    } else {
        return usage_error("unknown cluster command '%s'", argv[1]);
    }
    if (rc)
        return report(&st);
    return print_json(cli, json_from_status(cli->target, &s));
}

/* ------------------------------------------------------------------ */
/* GDPR: purposes, consent, subject rights and the audit log */

#define XSTR(x) STR(x)
#define STR(x) #x
#define PURPOSE_DESCRIPTION_MAX 255 /* sizeof(dossier_purpose.description) - 1 */
#define AUDIT_TAIL_DEFAULT 20

_Static_assert(sizeof(((struct dossier_purpose *)0)->description) ==
                   PURPOSE_DESCRIPTION_MAX + 1,
               "purpose description size");

/* Fills @p from NAME and the options of `purpose define`; the fixed
 * arrays are checked first, so nothing is cut short. */
static int purpose_from_args(const char *name, const struct cmd_opts *o,
                             struct dossier_purpose *p)
{
    char *list, *save = NULL, *tok;

    memset(p, 0, sizeof(*p));
    if (!o->categories || !o->basis)
        return usage_error("purpose define needs --categories and --basis%s",
                           "");
    if (strlen(name) > DOSSIER_PURPOSE_NAME_MAX)
        return usage_error("purpose name '%s' is longer than "
                           XSTR(DOSSIER_PURPOSE_NAME_MAX) " bytes", name);
    snprintf(p->name, sizeof(p->name), "%s", name);
    if (o->description) {
        if (strlen(o->description) > PURPOSE_DESCRIPTION_MAX)
            return usage_error("--description is longer than "
                               XSTR(PURPOSE_DESCRIPTION_MAX) " bytes%s", "");
        snprintf(p->description, sizeof(p->description), "%s",
                 o->description);
    }
    p->basis = dossier_basis_parse(o->basis);
    if (p->basis == DOSSIER_BASIS_UNSPECIFIED)
        return usage_error("--basis %s: give consent, contract, "
                           "legal_obligation, vital_interests, public_task "
                           "or legitimate_interest",
                           o->basis);
    list = strdup(o->categories);
    if (!list) {
        fprintf(stderr, "dossier: out of memory\n");
        return EXIT_ERROR;
    }
    for (tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int c;
        tok += strspn(tok, " ");
        tok[strcspn(tok, " ")] = '\0';
        if (!*tok)
            continue;
        c = dossier_category_parse(tok);
        if (c < 0) {
            int rc = usage_error("--categories: unknown category '%s' "
                                 "(identity, contact, financial, special, "
                                 "behavioral or operational)",
                                 tok);
            free(list);
            return rc;
        }
        p->categories |= 1u << c;
    }
    free(list);
    if (!p->categories)
        return usage_error("--categories: name at least one category%s", "");
    return 0;
}

static int cmd_purpose(struct cli *cli, int argc, char **argv)
{
    struct dossier_purpose p, *list;
    struct dossier_status st;
    struct cmd_opts o;
    size_t n;
    int rc;

    if (argc < 2)
        return usage_error("purpose needs list, get or define%s", "");
    if (strcmp(argv[1], "list") == 0) {
        if (argc != 2)
            return usage_error("purpose list takes no arguments%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_purpose_list(cli->client, &cli->read_opts, &list, &n,
                                 &st))
            return report(&st);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = print_json(cli, json_from_purpose(&list[i]));
        free(list);
        return rc;
    }
    if (strcmp(argv[1], "get") == 0) {
        if (argc != 3)
            return usage_error("purpose get needs a NAME%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_purpose_get(cli->client, &cli->read_opts, argv[2], &p,
                                &st))
            return report(&st);
        return print_json(cli, json_from_purpose(&p));
    }
    if (strcmp(argv[1], "define") == 0) {
        struct dossier_purpose stored;
        int ac = argc - 1;
        char **av = argv + 1;

        if ((rc = cmd_options(ac, av, "cbd", &o)))
            return rc;
        if (ac - optind != 1)
            return usage_error("purpose define needs one NAME%s", "");
        if ((rc = purpose_from_args(av[optind], &o, &p)))
            return rc;
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_purpose_define(cli->client, NULL, &p, &stored, &st))
            return report(&st);
        return print_json(cli, json_from_purpose(&stored));
    }
    return usage_error("unknown purpose command '%s'", argv[1]);
}

static int cmd_consent(struct cli *cli, int argc, char **argv)
{
    struct dossier_consent_event ev, *events;
    struct dossier_status st;
    struct cmd_opts o;
    int ac = argc - 1, history, rc;
    char **av = argv + 1;
    const char *purpose;
    size_t n;

    if (argc < 2)
        return usage_error("consent needs grant, withdraw, show or "
                           "history%s", "");
    if (strcmp(argv[1], "grant") == 0 || strcmp(argv[1], "withdraw") == 0) {
        int grant = argv[1][0] == 'g';
        if ((rc = cmd_options(ac, av, "sn", &o)))
            return rc;
        if (ac - optind != 2)
            return usage_error("consent %s needs SUBJECT and PURPOSE",
                               argv[1]);
        if ((rc = connect_node(cli)))
            return rc;
        rc = grant ? dossier_consent_grant(cli->client, NULL, av[optind],
                                           av[optind + 1], o.source,
                                           o.notice, &ev, &st)
                   : dossier_consent_withdraw(cli->client, NULL, av[optind],
                                              av[optind + 1], o.source,
                                              o.notice, &ev, &st);
        if (rc)
            return report(&st);
        return print_json(cli, json_from_consent_event(&ev));
    }
    if (strcmp(argv[1], "show") != 0 && strcmp(argv[1], "history") != 0)
        return usage_error("unknown consent command '%s'", argv[1]);
    history = argv[1][0] == 'h';
    if ((rc = cmd_options(ac, av, "", &o)))
        return rc;
    if (ac - optind < 1 || ac - optind > 2)
        return usage_error("consent %s needs SUBJECT and, optionally, "
                           "PURPOSE", argv[1]);
    if ((rc = connect_node(cli)))
        return rc;
    purpose = ac - optind == 2 ? av[optind + 1] : NULL;
    rc = history ? dossier_consent_history(cli->client, &cli->read_opts,
                                           av[optind], purpose, &events, &n,
                                           &st)
                 : dossier_consent_get(cli->client, &cli->read_opts,
                                       av[optind], purpose, &events, &n,
                                       &st);
    if (rc)
        return report(&st);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = print_json(cli, json_from_consent_event(&events[i]));
    free(events);
    return rc;
}

/* `dossier subject ledger`: every row of the erasure ledger, one signed
 * certificate per line (always compact: a restore reads it line by
 * line). */
static int subject_ledger(struct cli *cli, int argc)
{
    struct dossier_page_request pr = {1000, NULL};
    char *token = NULL;
    int rc;

    if (argc != 2)
        return usage_error("subject ledger takes no arguments%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    do {
        struct dossier_erasure_certificate *certs;
        struct dossier_status st;
        size_t n;
        char *next = NULL;
        pr.page_token = token;
        if (dossier_erasure_ledger(cli->client, &cli->read_opts, &pr, &certs,
                                   &n, &next, &st)) {
            free(token);
            return report(&st);
        }
        for (size_t i = 0; i < n; i++) {
            json_t *j = json_from_erasure_certificate(&certs[i]);
            if (!j || json_dumpf(j, stdout, JSON_COMPACT) != 0) {
                json_decref(j);
                free(certs);
                free(token);
                free(next);
                fprintf(stderr, "dossier: cannot print JSON\n");
                return EXIT_ERROR;
            }
            fputc('\n', stdout);
            json_decref(j);
        }
        free(certs);
        free(token);
        token = next;
    } while (token);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_ERROR;
}

/* `dossier subject export SUBJECT`: one JSON document, written as the
 * items arrive: {"subject": header, "records": [...], "consent": [...],
 * "rectifications": [...], "audit": [...], "counts": footer}. */
struct export_out {
    FILE *f;
    int section; /* 0 none yet, 1 records, 2 consent, 3 rectifications,
                    4 audit */
    int first;   /* no item printed in the section yet */
    int failed;
};

static int export_put(struct export_out *o, json_t *j)
{
    int rc = -1;
    if (j) {
        rc = json_dumpf(j, o->f, JSON_COMPACT);
        json_decref(j);
    }
    if (rc != 0)
        o->failed = 1;
    return rc;
}

/* Moves to section @s (1..4), opening the ones before it even if empty. */
static void export_open(struct export_out *o, int s)
{
    static const char *const names[] = {"", "records", "consent",
                                        "rectifications", "audit"};
    while (o->section < s) {
        if (o->section > 0)
            fputs("]", o->f);
        o->section++;
        fprintf(o->f, ",\n\"%s\": [", names[o->section]);
        o->first = 1;
    }
}

/* Starts an item of section @s. */
static void export_section(struct export_out *o, int s)
{
    export_open(o, s);
    fputs(o->first ? "\n  " : ",\n  ", o->f);
    o->first = 0;
}

static int export_item(void *arg, const struct dossier_export_item *it)
{
    struct export_out *o = arg;
    switch (it->kind) {
    case DOSSIER_EXPORT_HEADER: {
        const struct dossier_export_header *h = it->header;
        fputs("{\"subject\": ", o->f);
        return export_put(
            o, json_pack("{s:s, s:o, s:I, s:I, s:b, s:b}", "subject_id",
                         h->subject_id, "pseudonym",
                         json_hex(h->pseudonym, sizeof(h->pseudonym)),
                         "exported_at_ms", (json_int_t)h->exported_at_ms,
                         "applied_index", (json_int_t)h->applied_index,
                         "restricted", h->restricted, "erased", h->erased));
    }
    case DOSSIER_EXPORT_RECORD:
        export_section(o, 1);
        return export_put(o, json_from_record(it->record));
    case DOSSIER_EXPORT_CONSENT:
        export_section(o, 2);
        return export_put(o, json_from_consent_event(it->consent));
    case DOSSIER_EXPORT_RECTIFICATION:
        export_section(o, 3);
        return export_put(o, json_from_rectification(it->rectification));
    case DOSSIER_EXPORT_AUDIT:
        export_section(o, 4);
        return export_put(o, json_from_audit_entry(it->audit));
    case DOSSIER_EXPORT_FOOTER:
        export_open(o, 4);
        fputs("]", o->f);
        fputs(",\n\"counts\": ", o->f);
        if (export_put(o, json_pack("{s:I, s:I, s:I, s:I}", "records",
                                    (json_int_t)it->footer->records,
                                    "consent_events",
                                    (json_int_t)it->footer->consent_events,
                                    "rectifications",
                                    (json_int_t)it->footer->rectifications,
                                    "audit_entries",
                                    (json_int_t)it->footer->audit_entries)))
            return -1;
        fputs("}\n", o->f);
        return 0;
    }
    return -1;
}

static int subject_export(struct cli *cli, int argc, char **argv)
{
    struct export_out o = {stdout, 0, 1, 0};
    struct dossier_call_options co = cli->read_opts;
    struct dossier_status st;
    int rc;

    if (argc != 3)
        return usage_error("subject export needs one SUBJECT id%s", "");
    if ((rc = connect_node(cli)))
        return rc;
    if (!cli->timeout_ms)
        co.timeout_ms = 3600 * 1000; /* the node walks its audit log */
    if (dossier_subject_export(cli->client, &co, argv[2], export_item, &o,
                               &st)) {
        fflush(stdout);
        fprintf(stderr, "\n");
        return report(&st);
    }
    if (o.failed || fflush(stdout) != 0) {
        fprintf(stderr, "dossier: cannot write the export\n");
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

/* Gives the text @text of --set NAME=TEXT the type field @name has in
 * kind @k (a field the kind lacks stays a string: the node names it). */
static int rectify_value(struct dossier_record *r,
                         const struct dossier_kind_schema *k,
                         const char *name, const char *text)
{
    enum dossier_field_type t = DOSSIER_FIELD_STRING;
    char *end;
    for (size_t i = 0; i < k->n_fields; i++)
        if (strcmp(k->fields[i].name, name) == 0)
            t = k->fields[i].type;
    errno = 0;
    switch (t) {
    case DOSSIER_FIELD_INT:
    case DOSSIER_FIELD_TIMESTAMP: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return usage_error("--set %s: give a whole number", name);
        return dossier_record_set_int(r, name, v) ? EXIT_ERROR : 0;
    }
    case DOSSIER_FIELD_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end)
            return usage_error("--set %s: give a number", name);
        return dossier_record_set_double(r, name, v) ? EXIT_ERROR : 0;
    }
    case DOSSIER_FIELD_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return usage_error("--set %s: give true or false", name);
        return dossier_record_set_bool(r, name, strcmp(text, "true") == 0)
                   ? EXIT_ERROR
                   : 0;
    default:
        return dossier_record_set_string(r, name, text) ? EXIT_ERROR : 0;
    }
}

/* The record (@kind, @id, @subject) holding the fields of the JSON object
 * in @path ("-": stdin) into *@out, as `put` reads a record's "fields".
 * Nothing of the values goes into a message: they are personal. */
static int rectify_fields_file(const char *path, const char *kind,
                               const char *id, const char *subject,
                               struct dossier_record **out)
{
    json_error_t jerr;
    json_t *fields, *rec;
    char err[256];
    int rc;

    *out = NULL;
    fields = strcmp(path, "-") == 0
                 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                 : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!fields) {
        /* Not jerr.text: it may quote the input. */
        fprintf(stderr, "dossier: --fields-file %s: not JSON (line %d, "
                        "column %d)\n",
                path, jerr.line, jerr.column);
        return EXIT_INVALID;
    }
    if (!json_is_object(fields) || json_object_size(fields) == 0) {
        json_decref(fields);
        fprintf(stderr, "dossier: --fields-file %s: give a JSON object of "
                        "the fields to set, e.g. {\"email\": \"...\"}\n",
                path);
        return EXIT_INVALID;
    }
    rec = json_pack("{s:s, s:s, s:s, s:o}", "kind", kind, "id", id,
                    "subject_id", subject, "fields", fields);
    if (!rec) {
        fprintf(stderr, "dossier: out of memory\n");
        return EXIT_ERROR;
    }
    rc = json_to_record(rec, out, err, sizeof(err));
    json_decref(rec);
    if (rc) {
        fprintf(stderr, "dossier: --fields-file %s: %s\n", path, err);
        return EXIT_INVALID;
    }
    return EXIT_OK;
}

/* dossier subject rectify SUBJECT KIND ID [--fields-file FILE|-]
 * --set F=V... --unset F... --reference REF (Art. 16). --set values take
 * the field's type from the kind's schema, so --set lead_score=40 sends a
 * number; --fields-file values are JSON, as put reads them. */
static int subject_rectify(struct cli *cli, int argc, char **argv)
{
    static const struct option lopts[] = {
        {"set", required_argument, NULL, 's'},
        {"unset", required_argument, NULL, 'u'},
        {"reference", required_argument, NULL, 'r'},
        {"fields-file", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char **unset = calloc((size_t)argc, sizeof(*unset));
    char **sets = calloc((size_t)argc, sizeof(*sets));
    const char *reference = NULL, *subject = NULL, *kind = NULL, *id = NULL;
    const char *fields_file = NULL;
    struct dossier_kind_schema *k = NULL;
    struct dossier_record *r = NULL;
    struct dossier_rectify_result res;
    struct dossier_status st;
    size_t n_unset = 0, n_set = 0;
    int ch, rc = EXIT_OK;

    if (!unset || !sets) {
        free(unset);
        free(sets);
        fprintf(stderr, "dossier: out of memory\n");
        return EXIT_ERROR;
    }
    optind = 0;
    opterr = 0;
    while (rc == EXIT_OK &&
           (ch = getopt_long(argc - 1, argv + 1, ":", lopts, NULL)) != -1) {
        if (ch == ':')
            rc = usage_error("%s needs a value", argv[optind]);
        else if (ch == '?')
            rc = usage_error("%s: option not accepted here", argv[optind]);
        else if (ch == 's' && !strchr(optarg, '='))
            rc = usage_error("--set %s: give FIELD=VALUE", optarg);
        else if (ch == 's')
            sets[n_set++] = optarg;
        else if (ch == 'u')
            unset[n_unset++] = optarg;
        else if (ch == 'f' && fields_file)
            rc = usage_error("--fields-file is given once%s", "");
        else if (ch == 'f')
            fields_file = optarg;
        else
            reference = optarg;
    }
    if (rc == EXIT_OK && argc - 1 - optind != 3)
        rc = usage_error("subject rectify needs SUBJECT KIND ID%s", "");
    else if (rc == EXIT_OK && !n_set && !n_unset && !fields_file)
        rc = usage_error("subject rectify needs --fields-file FILE, --set "
                         "FIELD=VALUE or --unset FIELD%s", "");
    else if (rc == EXIT_OK && !reference)
        rc = usage_error("subject rectify needs --reference LABEL (the "
                         "subject's request)%s", "");
    if (rc == EXIT_OK) {
        subject = argv[1 + optind];
        kind = argv[2 + optind];
        id = argv[3 + optind];
        rc = connect_node(cli);
    }
    if (rc == EXIT_OK &&
        dossier_schema_get(cli->client, NULL, kind, &k, &st))
        rc = report(&st);
    if (rc == EXIT_OK && fields_file)
        rc = rectify_fields_file(fields_file, kind, id, subject, &r);
    else if (rc == EXIT_OK && !(r = dossier_record_new(kind,
                                                       id,
                                                       subject))) {
        fprintf(stderr, "dossier: out of memory\n");
        rc = EXIT_ERROR;
    }
    for (size_t i = 0; rc == EXIT_OK && i < n_set; i++) {
        char *eq = strchr(sets[i], '=');
        *eq = '\0';
        if (dossier_record_field(r, sets[i]))
            rc = usage_error("%s is named twice (--set, --fields-file)",
                             sets[i]);
        else
            rc = rectify_value(r, k, sets[i], eq + 1);
        *eq = '=';
    }
    if (rc == EXIT_OK &&
        dossier_subject_rectify(cli->client, NULL, subject,
                                kind, id,
                                r->n_fields ? r : NULL, unset, n_unset,
                                reference, &res, &st))
        rc = report(&st);
    if (rc == EXIT_OK) {
        json_t *fields = json_array();
        for (size_t i = 0; fields && i < r->n_fields; i++)
            json_array_append_new(fields, json_string(r->fields[i].name));
        for (size_t i = 0; fields && i < n_unset; i++)
            json_array_append_new(fields, json_string(unset[i]));
        rc = print_json(cli,
                        json_pack("{s:s, s:s, s:I, s:I, s:o, s:s}", "kind",
                                  kind, "id",
                                  id, "version",
                                  (json_int_t)res.version, "updated_at_ms",
                                  (json_int_t)res.updated_at_ms, "fields",
                                  fields ? fields : json_null(), "reference",
                                  reference));
    }
    dossier_record_free(r);
    dossier_kind_schema_free(k);
    free(unset);
    free(sets);
    return rc;
}

static int cmd_subject(struct cli *cli, int argc, char **argv)
{
    struct dossier_subject_status s;
    struct dossier_erasure_certificate cert;
    struct dossier_status st;
    struct cmd_opts o;
    int ac = argc - 1, rc;
    char **av = argv + 1;
    const char *subject;

    if (argc < 2)
        return usage_error("subject needs status, restrict, unrestrict, "
                           "rectify, erase, certificate, export or "
                           "ledger%s", "");
    if (strcmp(argv[1], "ledger") == 0)
        return subject_ledger(cli, argc);
    if (strcmp(argv[1], "export") == 0)
        return subject_export(cli, argc, argv);
    if (strcmp(argv[1], "rectify") == 0)
        return subject_rectify(cli, argc, argv);
    if (strcmp(argv[1], "status") != 0 && strcmp(argv[1], "restrict") != 0 &&
        strcmp(argv[1], "unrestrict") != 0 && strcmp(argv[1], "erase") != 0 &&
        strcmp(argv[1], "certificate") != 0)
        return usage_error("unknown subject command '%s'", argv[1]);
    if ((rc = cmd_options(ac, av,
                          strcmp(argv[1], "erase") == 0 ? "rw"
                          : strcmp(argv[1], "certificate") == 0 ? ""
                                                                : "r",
                          &o)))
        return rc;
    if (ac - optind != 1)
        return usage_error("subject %s needs one SUBJECT id", argv[1]);
    subject = av[optind];
    if ((rc = connect_node(cli)))
        return rc;
    if (strcmp(argv[1], "erase") == 0 ||
        strcmp(argv[1], "certificate") == 0) {
        if (strcmp(argv[1], "erase") == 0
                ? dossier_subject_erase_wait(cli->client, NULL, subject,
                                             o.reference, o.wait_ms, &cert,
                                             &st)
                : dossier_subject_certificate(cli->client, &cli->read_opts,
                                              subject, &cert, &st))
            return report(&st);
        rc = print_json(cli, json_from_erasure_certificate(&cert));
        if (cert.n_pending)
            fprintf(stderr, "dossier: %zu voter(s) had not reported "
                    "finishing the erasure yet (pending_nodes); `dossier "
                    "subject certificate` shows it again later\n",
                    cert.n_pending);
        /* Erased either way; a certificate that does not verify is worth
         * an exit status of its own kind. */
        if (dossier_erasure_certificate_verify(&cert, NULL, &st))
            return report(&st);
        return rc;
    }
    if (strcmp(argv[1], "status") == 0)
        rc = dossier_subject_status(cli->client, &cli->read_opts, subject,
                                    o.reference, &s, &st);
    else if (strcmp(argv[1], "restrict") == 0)
        rc = dossier_subject_restrict(cli->client, NULL, subject, o.reference,
                                      &s, &st);
    else
        rc = dossier_subject_unrestrict(cli->client, NULL, subject,
                                        o.reference, &s, &st);
    if (rc)
        return report(&st);
    return print_json(cli, json_from_subject_status(&s));
}

/* ------------------------------------------------------------------ */
/* Tracked requests */

static json_t *json_date(int64_t ms)
{
    char buf[32];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
    return json_string(buf);
}

static json_t *json_from_tracked(const struct dossier_tracked_request *t)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:o, s:s, s:o, s:o, s:I, s:I, s:s, s:b, s:s}", "id", t->id,
        "kind", t->kind, "pseudonym", json_hex(t->pseudonym, 16), "reference",
        t->reference, "received", json_date(t->received_ms), "deadline",
        json_date(t->deadline_ms), "received_ms", (json_int_t)t->received_ms,
        "deadline_ms", (json_int_t)t->deadline_ms, "state",
        t->executed ? "executed" : "received", "overdue", t->overdue,
        "filed_by", t->filed_by);
    if (!j)
        return NULL;
    if (t->extended_ms) {
        json_object_set_new(j, "extended", json_date(t->extended_ms));
        json_object_set_new(j, "extension_reason",
                            json_string(t->extension_reason));
        json_object_set_new(j, "original_deadline",
                            json_date(t->original_deadline_ms));
    }
    if (t->executed) {
        json_object_set_new(j, "executed", json_date(t->executed_ms));
        json_object_set_new(j, "executed_ms", json_integer(t->executed_ms));
        json_object_set_new(j, "executed_by", json_string(t->executed_by));
        json_object_set_new(j, "result_index",
                            json_integer((json_int_t)t->result_index));
        if (t->has_digest)
            json_object_set_new(j, "sha256", json_hex(t->digest, 32));
        if (strcmp(t->kind, "erasure") == 0)
            json_object_set_new(j, "records_deleted",
                                json_integer((json_int_t)t->records));
    } else {
        int64_t left = t->deadline_ms - (int64_t)time(NULL) * 1000;
        json_object_set_new(j, "days_left",
                            json_integer(left >= 0 ? left / 86400000
                                                   : -((-left + 86399999) /
                                                       86400000)));
    }
    return j;
}

static json_t *json_from_receipt(const struct dossier_request_receipt *r)
{
    json_t *j = json_pack("{s:o}", "request", json_from_tracked(&r->request));
    if (j && r->has_erasure)
        json_object_set_new(j, "erasure_certificate",
                            json_from_erasure_certificate(&r->erasure));
    if (j && r->has_signature) {
        json_object_set_new(j, "signature", json_hex(r->signature, 64));
        json_object_set_new(j, "public_key", json_hex(r->public_key, 32));
    }
    return j;
}

/* Prints @r and checks its proof: exit 1 if it does not verify. */
static int print_receipt(struct cli *cli, const struct dossier_request_receipt *r)
{
    struct dossier_status st;
    int rc = print_json(cli, json_from_receipt(r));
    if (r->request.executed && dossier_request_receipt_verify(r, NULL, &st))
        return report(&st);
    return rc;
}

static int parse_day(const char *s, int64_t *ms)
{
    struct tm tm;
    char *end;
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%d", &tm);
    if (!end || *end)
        return -1;
    *ms = (int64_t)timegm(&tm) * 1000;
    return 0;
}

static int cmd_request(struct cli *cli, int argc, char **argv)
{
    struct dossier_status st;
    struct cmd_opts o;
    int ac = argc - 1, rc;
    char **av = argv + 1;
    const char *sub = argc > 1 ? argv[1] : "";

    if (strcmp(sub, "file") && strcmp(sub, "list") && strcmp(sub, "show") &&
        strcmp(sub, "execute") && strcmp(sub, "extend"))
        return usage_error("request needs file, list, show, extend or "
                           "execute%s", "");
    if ((rc = cmd_options(ac, av, "rRoOZ", &o)))
        return rc;
    if ((rc = connect_node(cli)))
        return rc;
    if (strcmp(sub, "file") == 0) {
        struct dossier_tracked_request t;
        int64_t received = 0;
        if (ac - optind != 2)
            return usage_error("request file needs KIND (erasure or export) "
                               "and SUBJECT%s", "");
        if (o.received && parse_day(o.received, &received))
            return usage_error("--received %s: give YYYY-MM-DD", o.received);
        if (dossier_request_file(cli->client, NULL, av[optind],
                                 av[optind + 1], o.reference, received, &t,
                                 &st))
            return report(&st);
        return print_json(cli, json_from_tracked(&t));
    }
    if (strcmp(sub, "list") == 0) {
        struct dossier_tracked_request *t;
        size_t n;
        if (ac - optind != 0)
            return usage_error("request list takes no arguments%s", "");
        if (dossier_request_list(cli->client, NULL, o.open_only, &t, &n, &st))
            return report(&st);
        rc = EXIT_OK;
        for (size_t i = 0; i < n && rc == EXIT_OK; i++)
            rc = print_json(cli, json_from_tracked(&t[i]));
        free(t);
        return rc;
    }
    if (strcmp(sub, "extend") == 0) {
        struct dossier_request_receipt r;
        if (ac - optind != 1 || !o.reason)
            return usage_error("request extend needs an ID and --reason "
                               "LABEL%s", "");
        if (dossier_request_extend(cli->client, NULL, av[optind], o.reason,
                                   &r, &st))
            return report(&st);
        return print_receipt(cli, &r);
    }
    if (strcmp(sub, "show") == 0) {
        struct dossier_request_receipt r;
        if (ac - optind != 1)
            return usage_error("request show needs an ID%s", "");
        if (dossier_request_get(cli->client, NULL, av[optind], &r, &st))
            return report(&st);
        return print_receipt(cli, &r);
    }
    {
        /* execute ID SUBJECT */
        struct dossier_request_receipt r;
        const char *id, *subject;
        if (ac - optind != 2)
            return usage_error("request execute needs ID and SUBJECT%s", "");
        id = av[optind];
        subject = av[optind + 1];
        if (dossier_request_get(cli->client, NULL, id, &r, &st))
            return report(&st);
        if (strcmp(r.request.kind, "export") == 0) {
            struct dossier_call_options co = cli->read_opts;
            struct export_out eo = {NULL, 0, 1, 0};
            uint8_t digest[32];
            uint64_t size;
            if (!o.out)
                return usage_error("an export request needs --out FILE, "
                                   "where the export is written%s", "");
            /* Personal data: readable by its owner only. */
            int fd = open(o.out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                          0600);
            if (fd < 0 || !(eo.f = fdopen(fd, "w"))) {
                if (fd >= 0)
                    close(fd);
                fprintf(stderr, "dossier: cannot create %s: %s\n", o.out,
                        strerror(errno));
                return EXIT_ERROR;
            }
            if (!cli->timeout_ms)
                co.timeout_ms = 3600 * 1000;
            rc = dossier_subject_export(cli->client, &co, subject, export_item,
                                        &eo, &st);
            if (fclose(eo.f) != 0 || eo.failed) {
                fprintf(stderr, "dossier: cannot write %s\n", o.out);
                return EXIT_ERROR;
            }
            if (rc)
                return report(&st);
            if (fu_sha256_file(o.out, digest, &size) != 0) {
                fprintf(stderr, "dossier: cannot read %s back\n", o.out);
                return EXIT_ERROR;
            }
            if (dossier_request_complete(cli->client, NULL, id, subject,
                                         digest, &r, &st))
                return report(&st);
            fprintf(stderr, "dossier: wrote the export to %s (%" PRIu64
                    " bytes); deliver it to the subject\n",
                    o.out, size);
            return print_receipt(cli, &r);
        }
        if (o.out)
            return usage_error("--out is for export requests%s", "");
        if (dossier_request_execute(cli->client, NULL, id, subject, &r, &st))
            return report(&st);
        return print_receipt(cli, &r);
    }
}

/* Reads a public key, 64 hex digits, from @hex, or when NULL from the
 * file @path (blanks and newlines around it ignored). */
static int load_public_key(const char *hex, const char *path, uint8_t pk[32])
{
    char buf[256];
    const char *end;
    size_t len = 0;

    if (path) {
        FILE *f = fopen(path, "r");
        size_t got;
        char *h;
        if (!f) {
            fprintf(stderr, "dossier: cannot open %s: %s\n", path,
                    strerror(errno));
            return EXIT_ERROR;
        }
        got = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[got] = '\0';
        h = buf + strspn(buf, " \t\r\n");
        len = strcspn(h, " \t\r\n");
        /* Only blanks may follow the key, and the file is short. */
        if (got == sizeof(buf) - 1 || h[len + strspn(h + len, " \t\r\n")])
            return usage_error("--public-key-file %s: not 64 hex digits",
                               path);
        h[len] = '\0';
        hex = h;
    }
    if (sodium_hex2bin(pk, 32, hex, strlen(hex), NULL, &len, &end) != 0 ||
        len != 32 || *end)
        return usage_error(path ? "--public-key-file %s: not 64 hex digits"
                                : "--public-key %s: not 64 hex digits",
                           path ? path : hex);
    return 0;
}

static int audit_tail(struct cli *cli, const struct cmd_opts *o)
{
    struct dossier_audit_entry *entries;
    struct dossier_status st;
    uint32_t limit = o->limit ? o->limit : AUDIT_TAIL_DEFAULT;
    uint64_t from = o->from;
    size_t n;
    int rc;

    if ((rc = connect_node(cli)))
        return rc;
    if (!from) {
        /* The last @limit entries: ask where the log ends. */
        uint8_t pk[32];
        uint64_t last, signed_index;
        if (dossier_audit_public_key(cli->client, &cli->read_opts, pk, &last,
                                     &signed_index, &st))
            return report(&st);
        if (last == 0)
            return EXIT_OK;
        from = last > limit ? last - limit + 1 : 1;
    }
    if (dossier_audit_read(cli->client, &cli->read_opts, from, limit,
                           &entries, &n, &st))
        return report(&st);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = print_json(cli, json_from_audit_entry(&entries[i]));
    free(entries);
    return rc;
}

/* `dossier audit checkpoint`: the log's latest signed checkpoint as one
 * JSON object, checked against the key given (else the node's), to keep
 * outside the cluster for `audit verify --checkpoint`. */
static int audit_checkpoint(struct cli *cli, const struct cmd_opts *o)
{
    struct dossier_audit_checkpoint cp;
    struct dossier_status st;
    uint8_t pk[32];
    uint64_t last, signed_index;
    int rc, given = o->public_key || o->public_key_file;

    if (o->public_key && o->public_key_file)
        return usage_error("audit checkpoint takes --public-key or "
                           "--public-key-file, not both%s", "");
    if (given && (rc = load_public_key(o->public_key, o->public_key_file,
                                       pk)))
        return rc;
    if ((rc = connect_node(cli)))
        return rc;
    if (!given && dossier_audit_public_key(cli->client, &cli->read_opts, pk,
                                           &last, &signed_index, &st))
        return report(&st);
    if (dossier_audit_checkpoint_latest(cli->client, &cli->read_opts, pk, &cp,
                                        &st))
        return report(&st);
    rc = print_json(cli, json_pack("{s:I, s:o, s:I, s:o, s:o}", "index",
                                   (json_int_t)cp.index, "hash",
                                   json_hex(cp.hash, sizeof(cp.hash)),
                                   "time_ms", (json_int_t)cp.time_ms,
                                   "signature",
                                   json_hex(cp.signature,
                                            sizeof(cp.signature)),
                                   "public_key", json_hex(pk, sizeof(pk))));
    if (rc == EXIT_OK && !given)
        fprintf(stderr, "dossier: checked with the key the node names; give "
                "--public-key-file to check it with one kept apart\n");
    return rc;
}

/* Reads the checkpoint `audit checkpoint` printed, from @path. */
static int load_checkpoint(const char *path,
                           struct dossier_audit_checkpoint *cp)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    json_int_t index = 0, time_ms = -1;
    const char *hash = NULL, *sig = NULL;
    size_t n1 = 0, n2 = 0;
    int ok;

    if (!j) {
        fprintf(stderr, "dossier: --checkpoint %s: %s\n", path, jerr.text);
        return EXIT_INVALID;
    }
    ok = json_unpack(j, "{s:I, s:s, s:I, s:s}", "index", &index, "hash",
                     &hash, "time_ms", &time_ms, "signature", &sig) == 0 &&
         index > 0 && time_ms >= 0 &&
         sodium_hex2bin(cp->hash, sizeof(cp->hash), hash, strlen(hash), NULL,
                        &n1, NULL) == 0 &&
         n1 == sizeof(cp->hash) && strlen(hash) == 2 * n1 &&
         sodium_hex2bin(cp->signature, sizeof(cp->signature), sig,
                        strlen(sig), NULL, &n2, NULL) == 0 &&
         n2 == sizeof(cp->signature) && strlen(sig) == 2 * n2;
    json_decref(j);
    if (!ok) {
        fprintf(stderr, "dossier: --checkpoint %s: not a checkpoint of "
                "`dossier audit checkpoint` (index, hash, time_ms, "
                "signature)\n", path);
        return EXIT_INVALID;
    }
    cp->index = (uint64_t)index;
    cp->time_ms = time_ms;
    return 0;
}

static int audit_verify(struct cli *cli, const struct cmd_opts *o)
{
    struct dossier_audit_report rep;
    struct dossier_audit_checkpoint kept;
    struct dossier_status st;
    uint8_t pk[32];
    int rc;

    if (!o->public_key == !o->public_key_file)
        return usage_error("audit verify needs --public-key HEX or "
                           "--public-key-file FILE (one of them)%s", "");
    if ((rc = load_public_key(o->public_key, o->public_key_file, pk)))
        return rc;
    if (o->checkpoint && (rc = load_checkpoint(o->checkpoint, &kept)))
        return rc;
    if ((rc = connect_node(cli)))
        return rc;
    rc = dossier_audit_verify_kept(cli->client, &cli->read_opts, pk,
                                   o->checkpoint ? &kept : NULL, &rep, &st);
    if (rc == 0) {
        printf("audit log verified: %" PRIu64 " entries, %" PRIu64
               " checkpoints, signed through %" PRIu64 ", unsigned tail %"
               PRIu64 "\n",
               rep.entries, rep.checkpoints, rep.signed_through,
               rep.unsigned_tail);
        if (o->checkpoint)
            printf("the log holds entry %" PRIu64 " as the kept checkpoint "
                   "signed it\n",
                   kept.index);
        return EXIT_OK;
    }
    if (rc != DOSSIER_CORRUPT)
        return report(&st);
    fprintf(stderr, "dossier: audit log does not verify: %s\n", rep.message);
    if (rep.bad_index && rep.suspect_from && rep.suspect_from < rep.bad_index)
        fprintf(stderr, "  first entry proven bad: %" PRIu64
                "; the cause lies in entries %" PRIu64 "..%" PRIu64 "\n",
                rep.bad_index, rep.suspect_from, rep.bad_index);
    else if (rep.bad_index)
        fprintf(stderr, "  first entry proven bad: %" PRIu64 "\n",
                rep.bad_index);
    fprintf(stderr, "  before it: %" PRIu64 " entries in sequence, %" PRIu64
            " checkpoints matched, signed through %" PRIu64 "\n",
            rep.entries, rep.checkpoints, rep.signed_through);
    return exit_for(rc);
}

static int cmd_audit(struct cli *cli, int argc, char **argv)
{
    struct dossier_status st;
    struct cmd_opts o;
    int ac = argc - 1, rc;
    char **av = argv + 1;

    if (argc < 2)
        return usage_error("audit needs tail, public-key, checkpoint or "
                           "verify%s", "");
    if (strcmp(argv[1], "tail") == 0) {
        if ((rc = cmd_options(ac, av, "fl", &o)))
            return rc;
        if (ac - optind != 0)
            return usage_error("audit tail takes no arguments, only --from "
                               "and --limit%s", "");
        return audit_tail(cli, &o);
    }
    if (strcmp(argv[1], "verify") == 0) {
        if ((rc = cmd_options(ac, av, "KFj", &o)))
            return rc;
        if (ac - optind != 0)
            return usage_error("audit verify takes no arguments, only "
                               "--public-key or --public-key-file, and "
                               "--checkpoint%s", "");
        return audit_verify(cli, &o);
    }
    if (strcmp(argv[1], "checkpoint") == 0) {
        if ((rc = cmd_options(ac, av, "KF", &o)))
            return rc;
        if (ac - optind != 0)
            return usage_error("audit checkpoint takes no arguments, only "
                               "--public-key or --public-key-file%s", "");
        return audit_checkpoint(cli, &o);
    }
    if (strcmp(argv[1], "public-key") == 0) {
        uint8_t pk[32];
        char hex[65];
        uint64_t last, signed_index;
        if (argc != 2)
            return usage_error("audit public-key takes no arguments%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        if (dossier_audit_public_key(cli->client, &cli->read_opts, pk, &last,
                                     &signed_index, &st))
            return report(&st);
        sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
        printf("%s\n", hex);
        fflush(stdout);
        fprintf(stderr, "last entry %" PRIu64 ", signed through entry %" PRIu64
                "\n", last, signed_index);
        return EXIT_OK;
    }
    return usage_error("unknown audit command '%s'", argv[1]);
}

/* `dossier dedup report KIND`: candidate duplicate groups, one JSON
 * object per line: {"field": F, "records": [...]}. */
struct dedup_args {
    const char *kind;
    const char *fields[32];
    size_t n_fields;
};

static int dedup_page(struct cli *cli, void *arg,
                      const struct dossier_page_request *pr, char **next)
{
    const struct dedup_args *a = arg;
    struct dossier_duplicates d;
    struct dossier_status st;
    int rc = 0;

    if (dossier_find_duplicates(cli->client, &cli->read_opts, a->kind,
                                a->fields, a->n_fields, pr, &d, &st))
        return report(&st);
    for (size_t i = 0; i < d.n_groups && rc == 0; i++) {
        json_t *recs = json_array();
        for (size_t j = 0; recs && j < d.groups[i].n_records; j++)
            json_array_append_new(recs,
                                  json_from_record(d.groups[i].records[j]));
        json_t *rules = json_array();
        for (size_t j = 0; rules && j < d.groups[i].n_rules; j++)
            json_array_append_new(rules, json_string(d.groups[i].rules[j]));
        rc = print_json(cli, json_pack("{s:s, s:o, s:o}", "field",
                                       d.groups[i].field, "rules", rules,
                                       "records", recs));
    }
    *next = d.next_page_token;
    d.next_page_token = NULL;
    dossier_duplicates_release(&d);
    return rc;
}

static int dedup_report(struct cli *cli, const char *kind,
                        const struct cmd_opts *o)
{
    struct dedup_args a = {kind, {0}, 0};
    char *list = NULL;
    int rc;

    if (o->fields) {
        if (!(list = strdup(o->fields)))
            return EXIT_ERROR;
        for (char *save, *f = strtok_r(list, ",", &save); f;
             f = strtok_r(NULL, ",", &save)) {
            if (a.n_fields == sizeof(a.fields) / sizeof(a.fields[0])) {
                free(list);
                return usage_error("--fields: at most 32 fields%s", "");
            }
            a.fields[a.n_fields++] = f;
        }
    }
    rc = run_pages(cli, o, dedup_page, &a);
    free(list);
    return rc;
}

static json_t *json_from_rule_set(const struct dossier_duplicate_rule_set *rs)
{
    json_t *rules = json_array();
    for (size_t i = 0; rules && i < rs->n_rules; i++) {
        json_t *f = json_array();
        for (size_t j = 0; f && j < rs->rules[i].n_fields; j++)
            json_array_append_new(f, json_string(rs->rules[i].fields[j]));
        json_array_append_new(rules, json_pack("{s:s, s:o}", "name",
                                               rs->rules[i].name, "fields",
                                               f));
    }
    return json_pack("{s:s, s:b, s:I, s:o}", "kind", rs->kind, "defined",
                     rs->defined, "version", (json_int_t)rs->version, "rules",
                     rules);
}

/* `dossier dedup rules define KIND NAME=FIELD[,FIELD...]...`. */
static int dedup_rules_define(struct cli *cli, const char *kind, int n,
                              char **args)
{
    struct dossier_duplicate_rule rules[DOSSIER_DUPLICATE_RULES_MAX];
    const char *fields[DOSSIER_DUPLICATE_RULES_MAX]
                      [DOSSIER_DUPLICATE_RULE_FIELDS_MAX + 1];
    struct dossier_duplicate_rule_set rs;
    struct dossier_status st;
    int rc;

    if (n < 1 || n > DOSSIER_DUPLICATE_RULES_MAX)
        return usage_error("dedup rules define needs KIND and 1 to 16 rules "
                           "NAME=FIELD[,FIELD...]%s", "");
    for (int i = 0; i < n; i++) {
        char *eq = strchr(args[i], '='), *save = NULL;
        if (!eq || eq == args[i] || !eq[1])
            return usage_error("rule '%s': give NAME=FIELD[,FIELD...]",
                               args[i]);
        *eq = '\0';
        rules[i].name = args[i];
        rules[i].fields = fields[i];
        rules[i].n_fields = 0;
        for (char *f = strtok_r(eq + 1, ",", &save); f;
             f = strtok_r(NULL, ",", &save)) {
            if (rules[i].n_fields == DOSSIER_DUPLICATE_RULE_FIELDS_MAX + 1)
                return usage_error("rule %s: at most 4 fields", args[i]);
            fields[i][rules[i].n_fields++] = f;
        }
    }
    if ((rc = connect_node(cli)))
        return rc;
    if (dossier_duplicate_rules_define(cli->client, NULL, kind, rules,
                                       (size_t)n, &rs, &st))
        return report(&st);
    return print_json(cli, json_from_rule_set(&rs));
}

/* `dossier dedup rules list [KIND]`: the set of KIND (defined or the
 * default), or every defined set. */
static int dedup_rules_list(struct cli *cli, const char *kind)
{
    struct dossier_duplicate_rule_set rs, *all;
    struct dossier_status st;
    size_t n;
    int rc;

    if ((rc = connect_node(cli)))
        return rc;
    if (kind) {
        if (dossier_duplicate_rules_get(cli->client, &cli->read_opts, kind,
                                        &rs, &st))
            return report(&st);
        return print_json(cli, json_from_rule_set(&rs));
    }
    if (dossier_duplicate_rules_list(cli->client, &cli->read_opts, &all, &n,
                                     &st))
        return report(&st);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = print_json(cli, json_from_rule_set(&all[i]));
    free(all);
    return rc;
}

static int cmd_dedup(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    int rc, nargs;

    if ((rc = cmd_options(argc, argv, "XlTa", &o)))
        return rc;
    nargs = argc - optind;
    if (nargs >= 2 && strcmp(argv[optind], "rules") == 0) {
        const char *sub = argv[optind + 1];
        if (o.fields || o.limit || o.page_token || o.all)
            return usage_error("dedup rules takes no options%s", "");
        if (strcmp(sub, "define") == 0 && nargs >= 3)
            return dedup_rules_define(cli, argv[optind + 2], nargs - 3,
                                      argv + optind + 3);
        if (strcmp(sub, "list") == 0 && nargs <= 3)
            return dedup_rules_list(cli,
                                    nargs == 3 ? argv[optind + 2] : NULL);
        return usage_error("dedup rules needs: define KIND NAME=FIELD[,FIELD"
                           "...]... | list [KIND]%s", "");
    }
    if (nargs != 2 || strcmp(argv[optind], "report") != 0)
        return usage_error("dedup needs: report KIND | rules define|list%s",
                           "");
    if ((rc = connect_node(cli)))
        return rc;
    return dedup_report(cli, argv[optind + 1], &o);
}

/* `dossier merge`: duplicates folded into a survivor, and the merges
 * pending undo. */
static json_t *json_from_merge(const struct dossier_merge_info *m)
{
    json_t *dups = json_array();
    for (size_t i = 0; dups && i < m->n_duplicates; i++)
        json_array_append_new(dups, json_string(m->duplicate_ids[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:I, s:I, "
                     "s:I}",
                     "id", m->id, "kind", m->kind, "state", m->state,
                     "survivor_id", m->survivor_id ? m->survivor_id : "",
                     "duplicate_ids", dups, "merged_ms",
                     (json_int_t)m->merged_ms, "merged_by", m->merged_by,
                     "reference", m->reference, "version",
                     (json_int_t)m->version, "records_moved",
                     (json_int_t)m->records_moved, "links_moved",
                     (json_int_t)m->links_moved);
}

static int merge_records(struct cli *cli, int argc, char **argv,
                         const struct cmd_opts *o)
{
    struct dossier_merge_choice choices[64];
    struct dossier_merge_request req = {0};
    struct dossier_merge_info mi;
    struct dossier_status st;
    char *copy[64] = {0};
    int rc;

    if (argc < 3)
        return usage_error("merge needs KIND SURVIVOR DUPLICATE... (or "
                           "undo, confirm, list)%s", "");
    req.kind = argv[0];
    req.survivor_id = argv[1];
    req.n_duplicates = (size_t)(argc - 2);
    req.duplicate_ids = (const char *const *)argv + 2;
    req.prefer = o->prefer && strcmp(o->prefer, "newest") == 0
                     ? DOSSIER_MERGE_PREFER_NEWEST
                     : DOSSIER_MERGE_PREFER_SURVIVOR;
    req.reference = o->reference;
    for (size_t i = 0; i < o->n_choices; i++) {
        char *eq;
        if (!(copy[i] = strdup(o->choices[i]))) {
            rc = EXIT_ERROR;
            goto out;
        }
        eq = strchr(copy[i], '=');
        *eq = '\0';
        choices[i].field = copy[i];
        choices[i].id = eq + 1;
    }
    req.n_choices = o->n_choices;
    req.choices = choices;
    if ((rc = connect_node(cli)))
        goto out;
    if (dossier_merge(cli->client, NULL, &req, &mi, &st)) {
        rc = report(&st);
        goto out;
    }
    rc = print_json(cli, json_from_merge(&mi));
    dossier_merge_info_release(&mi);
out:
    for (size_t i = 0; i < o->n_choices; i++)
        free(copy[i]);
    return rc;
}

static int merge_page(struct cli *cli, void *arg,
                      const struct dossier_page_request *pr, char **next)
{
    struct dossier_merge_page pg;
    struct dossier_status st;
    int rc = 0;
    (void)arg;

    if (dossier_merge_list_page(cli->client, &cli->read_opts, pr, &pg, &st))
        return report(&st);
    for (size_t i = 0; i < pg.n_merges && rc == 0; i++)
        rc = print_json(cli, json_from_merge(&pg.merges[i]));
    *next = pg.next_page_token;
    pg.next_page_token = NULL;
    dossier_merge_page_release(&pg);
    return rc;
}

static int cmd_merge(struct cli *cli, int argc, char **argv)
{
    struct dossier_merge_info mi;
    struct dossier_status st;
    struct cmd_opts o;
    int rc, nargs, undo;

    if ((rc = cmd_options(argc, argv, "EIrlTa", &o)))
        return rc;
    nargs = argc - optind;
    if (nargs >= 1 && strcmp(argv[optind], "list") == 0) {
        if (nargs != 1 || o.prefer || o.n_choices || o.reference)
            return usage_error("merge list takes no arguments but --limit, "
                               "--page-token and --all%s", "");
        if ((rc = connect_node(cli)))
            return rc;
        return run_pages(cli, &o, merge_page, NULL);
    }
    if (o.limit || o.page_token || o.all)
        return usage_error("--limit, --page-token and --all are for merge "
                           "list%s", "");
    undo = nargs >= 1 && strcmp(argv[optind], "undo") == 0;
    if (undo || (nargs >= 1 && strcmp(argv[optind], "confirm") == 0)) {
        if (nargs != 2 || o.prefer || o.n_choices)
            return usage_error("merge %s needs one merge ID (and may take "
                               "--reference)",
                               argv[optind]);
        if ((rc = connect_node(cli)))
            return rc;
        rc = undo ? dossier_merge_undo(cli->client, NULL, argv[optind + 1],
                                       o.reference, &mi, &st)
                  : dossier_merge_confirm(cli->client, NULL, argv[optind + 1],
                                          o.reference, &mi, &st);
        if (rc)
            return report(&st);
        rc = print_json(cli, json_from_merge(&mi));
        dossier_merge_info_release(&mi);
        return rc;
    }
    return merge_records(cli, nargs, argv + optind, &o);
}

/* `dossier segment define FILE|-`: JSON such as
 *   {"name": "hot_deals", "kind": "deal",
 *    "where": {"stage": ["qualified", "presentation"], "owner": "sam",
 *              "amount": {"at_least": 10000},
 *              "close_date": {"at_least": "2026-11-01",
 *                             "below": "2026-12-01"},
 *              "tags": {"all_of": ["vip"], "none_of": ["churned"]}},
 *    "created_after_ms": 0, "consent_purpose": "marketing"}
 * A value or a list is any_of; an object gives the forms by name, one
 * condition each. Dates (YYYY-MM-DD, or with THH:MM[:SS], UTC) in a range
 * become milliseconds. */
static int json_scalar(json_t *v, struct dossier_value *out)
{
    if (json_is_string(v)) {
        out->type = DOSSIER_TYPE_STRING;
        out->u.s = json_string_value(v);
    } else if (json_is_integer(v)) {
        out->type = DOSSIER_TYPE_INT;
        out->u.i = json_integer_value(v);
    } else if (json_is_real(v)) {
        out->type = DOSSIER_TYPE_DOUBLE;
        out->u.d = json_real_value(v);
    } else if (json_is_boolean(v)) {
        out->type = DOSSIER_TYPE_BOOL;
        out->u.b = json_is_true(v);
    } else {
        return -1;
    }
    return 0;
}

/* A range bound: a number, or a date in UTC made milliseconds. */
static int json_bound(json_t *v, struct dossier_value *out)
{
    static const char *const formats[] = {"%Y-%m-%d", "%Y-%m-%dT%H:%M",
                                          "%Y-%m-%dT%H:%M:%S"};
    if (!json_is_string(v))
        return json_is_number(v) ? json_scalar(v, out) : -1;
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        const char *end;
        memset(&tm, 0, sizeof(tm));
        end = strptime(json_string_value(v), formats[i], &tm);
        if (end && (!*end || (end[0] == 'Z' && !end[1]))) {
            out->type = DOSSIER_TYPE_INT;
            out->u.i = (int64_t)timegm(&tm) * 1000;
            return 0;
        }
    }
    return -1;
}

#define SEG_CONDS_MAX 16
#define SEG_VALUES_MAX 64

/* Where the values of a segment's conditions live while it is defined. */
struct seg_values {
    struct dossier_value v[SEG_CONDS_MAX][SEG_VALUES_MAX];
    struct dossier_value bounds[SEG_CONDS_MAX][2];
};

/* A value or a list of them (@what names it in messages) into @out, *@n
 * of them. 0, or the exit code after saying what is wrong. */
static int json_values(const char *path, const char *field, const char *what,
                       json_t *v, struct dossier_value *out, size_t *n)
{
    *n = json_is_array(v) ? json_array_size(v) : 1;
    if (*n == 0 || *n > SEG_VALUES_MAX) {
        fprintf(stderr, "dossier: %s: where.%s%s: give 1 to %d values\n",
                path, field, what, SEG_VALUES_MAX);
        return EXIT_INVALID;
    }
    for (size_t i = 0; i < *n; i++)
        if (json_scalar(json_is_array(v) ? json_array_get(v, i) : v,
                        &out[i])) {
            fprintf(stderr, "dossier: %s: where.%s%s: values are strings, "
                            "numbers or booleans\n",
                    path, field, what);
            return EXIT_INVALID;
        }
    return 0;
}

/* One entry FIELD: SPEC of "where" into conditions from @conds[*@n] on. */
static int json_condition(const char *path, const char *field, json_t *spec,
                          struct dossier_segment_condition *conds, size_t *n,
                          struct seg_values *vals)
{
    const char *form;
    json_t *v;
    int rc;

    if (!json_is_object(spec)) {
        struct dossier_segment_condition *c = &conds[*n];
        if (*n == SEG_CONDS_MAX)
            goto too_many;
        memset(c, 0, sizeof(*c));
        c->field = field;
        c->any_of = vals->v[*n];
        if ((rc = json_values(path, field, "", spec, vals->v[*n],
                              &c->n_any_of)))
            return rc;
        (*n)++;
        return 0;
    }
    json_object_foreach(spec, form, v) {
        struct dossier_segment_condition *c;
        int range = !strcmp(form, "at_least") || !strcmp(form, "below");
        char what[32];
        if (!range && strcmp(form, "any_of") && strcmp(form, "all_of") &&
            strcmp(form, "none_of")) {
            fprintf(stderr, "dossier: %s: where.%s: unknown form %s (any_of, "
                            "all_of, none_of, at_least, below)\n",
                    path, field, form);
            return EXIT_INVALID;
        }
        /* at_least and below of one field make one range. */
        c = NULL;
        if (range)
            for (size_t i = 0; i < *n; i++)
                if (!strcmp(conds[i].field, field) &&
                    (conds[i].at_least || conds[i].below))
                    c = &conds[i];
        if (!c) {
            if (*n == SEG_CONDS_MAX)
                goto too_many;
            c = &conds[*n];
            memset(c, 0, sizeof(*c));
            c->field = field;
            (*n)++;
        }
        snprintf(what, sizeof(what), ".%s", form);
        if (range) {
            struct dossier_value *b =
                &vals->bounds[c - conds][form[0] == 'b'];
            if (json_bound(v, b)) {
                fprintf(stderr, "dossier: %s: where.%s.%s: give a number or "
                                "a date (YYYY-MM-DD[THH:MM[:SS]], UTC)\n",
                        path, field, form);
                return EXIT_INVALID;
            }
            if (form[0] == 'b')
                c->below = b;
            else
                c->at_least = b;
            continue;
        }
        rc = json_values(path, field, what, v, vals->v[c - conds],
                         !strcmp(form, "any_of")   ? &c->n_any_of
                         : !strcmp(form, "all_of") ? &c->n_all_of
                                                   : &c->n_none_of);
        if (rc)
            return rc;
        if (!strcmp(form, "any_of"))
            c->any_of = vals->v[c - conds];
        else if (!strcmp(form, "all_of"))
            c->all_of = vals->v[c - conds];
        else
            c->none_of = vals->v[c - conds];
    }
    return 0;
too_many:
    fprintf(stderr, "dossier: %s: at most %d conditions\n", path,
            SEG_CONDS_MAX);
    return EXIT_INVALID;
}

static int segment_define(struct cli *cli, const char *path)
{
    struct dossier_segment_condition conds[SEG_CONDS_MAX];
    struct seg_values *vals;
    struct dossier_segment seg = {0};
    struct dossier_status st;
    json_error_t jerr;
    json_t *j, *where, *v;
    const char *key, *unknown = NULL;
    uint64_t version;
    int rc;

    j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &jerr)
                               : json_load_file(path, 0, &jerr);
    if (!j) {
        fprintf(stderr, "dossier: %s: not JSON: %s (line %d)\n", path,
                jerr.text, jerr.line);
        return EXIT_INVALID;
    }
    json_object_foreach(j, key, v) {
        /* "version" is what segment get prints: ignored, so that its
         * output can be defined again. */
        static const char *const known[] = {
            "name", "kind", "description", "where", "consent_purpose",
            "created_after_ms", "created_before_ms", "updated_after_ms",
            "updated_before_ms", "version"};
        int ok = 0;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok && !unknown)
            unknown = key;
    }
    if (!json_is_object(j) || unknown) {
        fprintf(stderr, "dossier: %s: %s%s\n", path,
                unknown ? "unknown key " : "not a JSON object",
                unknown ? unknown : "");
        json_decref(j);
        return EXIT_INVALID;
    }
    if (!(vals = calloc(1, sizeof(*vals)))) {
        json_decref(j);
        return EXIT_ERROR;
    }
    seg.name = json_string_value(json_object_get(j, "name"));
    seg.kind = json_string_value(json_object_get(j, "kind"));
    seg.description = json_string_value(json_object_get(j, "description"));
    seg.consent_purpose =
        json_string_value(json_object_get(j, "consent_purpose"));
    seg.created_after_ms =
        json_integer_value(json_object_get(j, "created_after_ms"));
    seg.created_before_ms =
        json_integer_value(json_object_get(j, "created_before_ms"));
    seg.updated_after_ms =
        json_integer_value(json_object_get(j, "updated_after_ms"));
    seg.updated_before_ms =
        json_integer_value(json_object_get(j, "updated_before_ms"));
    where = json_object_get(j, "where");
    rc = 0;
    if (!seg.name || !seg.kind) {
        fprintf(stderr, "dossier: %s: name and kind are needed\n", path);
        rc = EXIT_INVALID;
    } else if (where && !json_is_object(where)) {
        fprintf(stderr, "dossier: %s: where must be an object of field: "
                        "value, [values] or {form: values}\n",
                path);
        rc = EXIT_INVALID;
    }
    if (!rc && where)
        json_object_foreach(where, key, v) {
            if ((rc = json_condition(path, key, v, conds, &seg.n_conditions,
                                     vals)))
                break;
        }
    seg.conditions = conds;
    if (!rc)
        rc = connect_node(cli);
    if (!rc) {
        rc = dossier_segment_define(cli->client, NULL, &seg, &version, &st);
        if (rc == 0)
            rc = print_json(cli, json_pack("{s:s, s:s, s:I}", "name",
                                           seg.name, "kind", seg.kind,
                                           "version", (json_int_t)version));
        else
            rc = report(&st);
    }
    free(vals);
    json_decref(j);
    return rc;
}

/* The values @v (@n) as a JSON array. */
static json_t *json_values_of(const struct dossier_value *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_from_value(&v[i]));
    return a;
}

/* Segment @s as `segment define` reads it: "where" holds each field's
 * conditions as one object of forms; a field with two conditions of one
 * form (only the library can define that) is an array of such objects. */
static json_t *json_from_segment(const struct dossier_segment_info *info)
{
    const struct dossier_segment *s = &info->segment;
    json_t *j = json_pack("{s:s, s:s, s:I}", "name", s->name, "kind",
                          s->kind, "version", (json_int_t)info->version);
    json_t *where = json_object();

    if (!j || !where) {
        json_decref(j);
        json_decref(where);
        return NULL;
    }
    if (s->description)
        json_object_set_new(j, "description", json_string(s->description));
    if (s->consent_purpose)
        json_object_set_new(j, "consent_purpose",
                            json_string(s->consent_purpose));
    if (s->created_after_ms)
        json_object_set_new(j, "created_after_ms",
                            json_integer(s->created_after_ms));
    if (s->created_before_ms)
        json_object_set_new(j, "created_before_ms",
                            json_integer(s->created_before_ms));
    if (s->updated_after_ms)
        json_object_set_new(j, "updated_after_ms",
                            json_integer(s->updated_after_ms));
    if (s->updated_before_ms)
        json_object_set_new(j, "updated_before_ms",
                            json_integer(s->updated_before_ms));
    for (size_t i = 0; i < s->n_conditions; i++) {
        const struct dossier_segment_condition *c = &s->conditions[i];
        json_t *forms = json_object(), *have = json_object_get(where, c->field);
        int clash = 0;
        if (c->n_any_of)
            json_object_set_new(forms, "any_of",
                                json_values_of(c->any_of, c->n_any_of));
        if (c->n_all_of)
            json_object_set_new(forms, "all_of",
                                json_values_of(c->all_of, c->n_all_of));
        if (c->n_none_of)
            json_object_set_new(forms, "none_of",
                                json_values_of(c->none_of, c->n_none_of));
        if (c->at_least)
            json_object_set_new(forms, "at_least",
                                json_from_value(c->at_least));
        if (c->below)
            json_object_set_new(forms, "below", json_from_value(c->below));
        if (!have) {
            json_object_set_new(where, c->field, forms);
            continue;
        }
        if (json_is_object(have)) {
            const char *key;
            json_t *v;
            json_object_foreach(forms, key, v) clash |=
                json_object_get(have, key) != NULL;
            if (!clash) {
                json_object_update(have, forms);
                json_decref(forms);
                continue;
            }
            json_object_set_new(where, c->field, json_pack("[O]", have));
            have = json_object_get(where, c->field);
        }
        json_array_append_new(have, forms);
    }
    json_object_set_new(j, "where", where);
    return j;
}

static int segment_get(struct cli *cli, const char *name)
{
    struct dossier_segment_info info;
    struct dossier_status st;
    int rc;

    if (dossier_segment_get(cli->client, &cli->read_opts, name, &info, &st))
        return report(&st);
    rc = print_json(cli, json_from_segment(&info));
    dossier_segment_info_release(&info);
    return rc;
}

static int segment_list(struct cli *cli)
{
    struct dossier_segment_info *v;
    struct dossier_status st;
    size_t n;
    int rc = 0;

    if (dossier_segment_list(cli->client, &cli->read_opts, &v, &n, &st))
        return report(&st);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = print_json(cli, json_from_segment(&v[i]));
    dossier_segment_infos_free(v, n);
    return rc;
}

static int segment_page(struct cli *cli, void *arg,
                        const struct dossier_page_request *pr, char **next)
{
    struct dossier_segment_members m;
    struct dossier_status st;
    int rc = 0;

    if (dossier_segment_run(cli->client, &cli->read_opts, arg, pr, &m, &st))
        return report(&st);
    for (size_t i = 0; i < m.n_ids && rc == 0; i++)
        rc = print_json(cli, json_pack("{s:s, s:s}", "kind", m.kind, "id",
                                       m.ids[i]));
    *next = m.next_page_token;
    m.next_page_token = NULL;
    dossier_segment_members_release(&m);
    return rc;
}

static int segment_run(struct cli *cli, const char *name,
                       const struct cmd_opts *o)
{
    return run_pages(cli, o, segment_page, (void *)name);
}

static int cmd_segment(struct cli *cli, int argc, char **argv)
{
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "lTa", &o)))
        return rc;
    if (argc - optind >= 1 && strcmp(argv[optind], "define") == 0) {
        if (argc - optind > 2)
            return usage_error("segment define takes one FILE (or -)%s", "");
        return segment_define(cli, argc - optind == 2 ? argv[optind + 1]
                                                      : "-");
    }
    if (argc - optind == 2 && strcmp(argv[optind], "run") == 0) {
        if ((rc = connect_node(cli)))
            return rc;
        return segment_run(cli, argv[optind + 1], &o);
    }
    if (argc - optind == 2 && strcmp(argv[optind], "get") == 0) {
        if ((rc = connect_node(cli)))
            return rc;
        return segment_get(cli, argv[optind + 1]);
    }
    if (argc - optind == 1 && strcmp(argv[optind], "list") == 0) {
        if ((rc = connect_node(cli)))
            return rc;
        return segment_list(cli);
    }
    return usage_error("segment needs: define [FILE] | run NAME | get NAME "
                       "| list%s",
                       "");
}

/* `dossier report`: figures the node computes, as a table, JSON lines or
 * a PNG bar chart drawn by gnuplot. */
static void bucket_label(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d", &tm);
}

static int report_png(const struct dossier_aggregate *a, const char *title,
                      int with_sum, int with_bucket, const char *out)
{
    FILE *g;
    int rc;

    if (!out)
        return usage_error("--format png needs --out FILE%s", "");
    g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "dossier: cannot run gnuplot (apt-get install "
                        "gnuplot-nox)\n");
        return EXIT_ERROR;
    }
    fprintf(g, "set terminal png size 900,500\nset output '%s'\n", out);
    fprintf(g, "set title '%s'\nset style data histograms\n"
               "set style fill solid 0.8\nset boxwidth 0.8\n"
               "set xtics rotate by -30\nset grid ytics\n"
               "set key top left\n",
            title);
    fprintf(g, "$d << EOD\n");
    for (size_t i = 0; i < a->n_rows; i++) {
        char label[160], day[16] = "";
        const char *k = a->rows[i].key[0] ? a->rows[i].key : "(none)";
        if (with_bucket && a->rows[i].no_time)
            snprintf(day, sizeof(day), "(no time)");
        else if (with_bucket)
            bucket_label(a->rows[i].bucket_start_ms, day, sizeof(day));
        snprintf(label, sizeof(label), "%s%s%s", day, with_bucket ? " " : "",
                 k);
        for (char *p = label; *p; p++)
            if (*p == '"' || *p == '\'' || *p == '\\')
                *p = '_';
        fprintf(g, "\"%s\" %llu %.2f\n", label,
                (unsigned long long)a->rows[i].count, a->rows[i].sum);
    }
    fprintf(g, "EOD\n");
    if (with_sum)
        fprintf(g, "set ylabel 'sum'\nset y2label 'count'\nset y2tics\n"
                   "plot $d using 3:xtic(1) title 'sum', '' using 2 "
                   "axes x1y2 title 'count'\n");
    else
        fprintf(g, "set ylabel 'count'\nplot $d using 2:xtic(1) title "
                   "'count'\n");
    rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "dossier: gnuplot failed (exit %d)\n", rc);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

static int cmd_report(struct cli *cli, int argc, char **argv)
{
    struct dossier_aggregate_request r = {0};
    struct dossier_aggregate a;
    struct dossier_status st;
    struct cmd_opts o;
    const char *format;
    int rc;

    if ((rc = cmd_options(argc, argv, "yuqmgo", &o)))
        return rc;
    if (argc - optind != 1)
        return usage_error("report needs a KIND, or pipeline%s", "");
    if (strcmp(argv[optind], "pipeline") == 0) {
        r.kind = "deal";
        r.group_by = o.by ? o.by : "stage";
        r.sum = o.sum ? o.sum : "amount";
    } else {
        r.kind = argv[optind];
        r.group_by = o.by;
        r.sum = o.sum;
    }
    r.bucket = o.per;
    r.time_field = o.time_field;
    if (!o.per != !o.time_field)
        return usage_error("--per and --time go together%s", "");
    format = o.format ? o.format : "table";
    if (strcmp(format, "table") && strcmp(format, "json") &&
        strcmp(format, "png"))
        return usage_error("--format %s: give table, json or png", format);
    if ((rc = connect_node(cli)))
        return rc;
    if (dossier_aggregate(cli->client, &cli->read_opts, &r, &a, &st))
        return report(&st);
    if (strcmp(format, "png") == 0) {
        char title[200];
        snprintf(title, sizeof(title), "%s%s%s%s%s", r.kind,
                 r.group_by ? " by " : "", r.group_by ? r.group_by : "",
                 r.bucket ? " per " : "", r.bucket ? r.bucket : "");
        rc = report_png(&a, title, r.sum != NULL, r.bucket != NULL, o.out);
    } else if (strcmp(format, "json") == 0) {
        rc = 0;
        for (size_t i = 0; i < a.n_rows && rc == 0; i++) {
            json_t *j = json_pack("{s:s, s:I}", "key", a.rows[i].key, "count",
                                  (json_int_t)a.rows[i].count);
            if (j && r.sum)
                json_object_set_new(j, "sum", json_real(a.rows[i].sum));
            if (j && r.bucket && a.rows[i].no_time)
                json_object_set_new(j, "no_time", json_true());
            else if (j && r.bucket)
                json_object_set_new(j, "bucket_start_ms",
                                    json_integer(a.rows[i].bucket_start_ms));
            rc = print_json(cli, j);
        }
        if (a.suppressed)
            fprintf(stderr, "%llu records in groups of fewer than 3 not "
                            "shown\n",
                    (unsigned long long)a.suppressed);
    } else {
        printf("%-12s%-28s %10s", r.bucket ? r.bucket : "",
               r.group_by ? r.group_by : "", "count");
        if (r.sum)
            printf(" %16s", r.sum);
        printf("\n");
        for (size_t i = 0; i < a.n_rows; i++) {
            char day[16] = "";
            if (r.bucket && a.rows[i].no_time)
                snprintf(day, sizeof(day), "(no time)");
            else if (r.bucket)
                bucket_label(a.rows[i].bucket_start_ms, day, sizeof(day));
            printf("%-12s%-28.28s %10llu", day,
                   a.rows[i].key[0] ? a.rows[i].key : "(none)",
                   (unsigned long long)a.rows[i].count);
            if (r.sum)
                printf(" %16.2f", a.rows[i].sum);
            printf("\n");
        }
        printf("%llu records", (unsigned long long)a.records);
        if (a.left_out)
            printf(", %llu left out (not for this purpose)",
                   (unsigned long long)a.left_out);
        if (a.suppressed)
            printf(", %llu in groups of fewer than 3 not shown",
                   (unsigned long long)a.suppressed);
        printf("\n");
        rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_ERROR;
    }
    dossier_aggregate_release(&a);
    return rc;
}

/* `dossier watch`: the change feed as JSON lines. */
struct watch_out {
    struct cli *cli;
    uint64_t left; /* changes still to print; 0: no end */
    int progress;
    int no_follow; /* stop once caught up */
    int failed;
};

static int watch_change(void *arg, const struct dossier_change *ch)
{
    struct watch_out *w = arg;
    json_t *j;

    if (ch->type == DOSSIER_CHANGE_PROGRESS && !w->progress)
        return w->no_follow;
    j = json_pack("{s:s, s:I}", "type", dossier_change_type_name(ch->type),
                  "revision", (json_int_t)ch->revision);
    if (!j) {
        w->failed = 1;
        return 1;
    }
    if (ch->type != DOSSIER_CHANGE_PROGRESS) {
        json_object_set_new(j, "seq", json_integer(ch->seq));
        json_object_set_new(j, "time_ms", json_integer(ch->time_ms));
    }
    if (ch->subject_ref[0])
        json_object_set_new(j, "subject_ref", json_string(ch->subject_ref));
    if (ch->record)
        json_object_set_new(j, "record", json_from_record(ch->record));
    if (ch->content_erased)
        json_object_set_new(j, "content_erased", json_true());
    if (ch->record_expired)
        json_object_set_new(j, "record_expired", json_true());
    if (ch->type == DOSSIER_CHANGE_CONSENT) {
        json_object_set_new(j, "purpose", json_string(ch->purpose));
        json_object_set_new(
            j, "state",
            json_string(dossier_consent_state_name(ch->consent_state)));
    }
    if (json_dumpf(j, stdout, JSON_COMPACT) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0)
        w->failed = 1;
    json_decref(j);
    if (w->failed)
        return 1;
    if (ch->type == DOSSIER_CHANGE_PROGRESS)
        return w->no_follow;
    return w->left && --w->left == 0;
}

static int cmd_watch(struct cli *cli, int argc, char **argv)
{
    struct dossier_watch_options wo = {0};
    struct dossier_call_options co = cli->read_opts;
    struct watch_out w = {cli, 0, 0, 0, 0};
    struct dossier_watch_position next;
    struct dossier_status st;
    const char *kinds[64];
    char *list = NULL;
    struct cmd_opts o;
    int rc;

    if ((rc = cmd_options(argc, argv, "kfANPW", &o)))
        return rc;
    if (optind != argc)
        return usage_error("watch takes options only (%s?)", argv[optind]);
    if (o.from && o.has_after)
        return usage_error("give --from or --after, not both%s", "");
    if (o.kind) {
        if (!(list = strdup(o.kind)))
            return EXIT_ERROR;
        for (char *save, *k = strtok_r(list, ",", &save); k;
             k = strtok_r(NULL, ",", &save)) {
            if (wo.n_kinds == sizeof(kinds) / sizeof(kinds[0])) {
                free(list);
                return usage_error("--kind: at most 64 kinds%s", "");
            }
            kinds[wo.n_kinds++] = k;
        }
        wo.kinds = kinds;
    }
    if (o.has_after)
        wo.start = o.after;
    else
        wo.start.revision = o.from;
    w.left = o.count;
    w.progress = o.progress;
    w.no_follow = o.no_follow;
    if ((rc = connect_node(cli))) {
        free(list);
        return rc;
    }
    if (!cli->timeout_ms)
        co.timeout_ms = INT64_C(10) * 365 * 86400 * 1000; /* no end */
    rc = dossier_watch(cli->client, &co, &wo, watch_change, &w, &next, &st);
    free(list);
    if (w.failed) {
        fprintf(stderr, "dossier: cannot write the changes\n");
        return EXIT_ERROR;
    }
    if (rc) {
        if (next.seq)
            fprintf(stderr, "dossier: resume with --after %llu.%u\n",
                    (unsigned long long)next.revision, next.seq - 1);
        else if (next.revision)
            fprintf(stderr, "dossier: resume with --from %llu\n",
                    (unsigned long long)next.revision);
        return report(&st);
    }
    return EXIT_OK;
}

static int cmd_keys(struct cli *cli, int argc, char **argv)
{
    struct keys_cli k;
    int rc = connect_node(cli);
    if (rc)
        return rc;
    k.client = cli->client;
    k.json_flags = cli->json_flags;
    k.report = report;
    return keys_command(&k, argc, argv);
}

struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
};

static const struct command commands[] = {
    {"keygen", cmd_keygen}, {"put", cmd_put},   {"get", cmd_get},
    {"delete", cmd_delete}, {"find", cmd_find}, {"list", cmd_list},
    {"scan", cmd_scan},     {"schema", cmd_schema},
    {"links", cmd_links},
    {"cluster", cmd_cluster}, {"token", cmd_token},
    {"purpose", cmd_purpose}, {"consent", cmd_consent},
    {"subject", cmd_subject}, {"audit", cmd_audit},
    {"health", cmd_health}, {"backup", cmd_backup},
    {"request", cmd_request}, {"principal", cmd_principal},
    {"watch", cmd_watch},   {"dedup", cmd_dedup},
    {"report", cmd_report}, {"segment", cmd_segment},
    {"keys", cmd_keys},
    {"merge", cmd_merge},
};

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"target", required_argument, NULL, 't'},
        {"purpose", required_argument, NULL, 'p'},
        {"token-file", required_argument, NULL, 'T'},
        {"tls-ca", required_argument, NULL, 'A'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"timeout", required_argument, NULL, 'O'},
        {"pretty", no_argument, NULL, 'P'},
        {"serializable", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct cli cli = {0};
    uint64_t timeout;
    int ch, rc;

    cli.target = getenv("DOSSIER_TARGET");
    if (!cli.target || !cli.target[0])
        cli.target = "127.0.0.1:7700";
    cli.purpose = getenv("DOSSIER_PURPOSE");
    if (!cli.purpose || !cli.purpose[0])
        cli.purpose = "operations"; /* built in: contract, no special data */
    cli.token = getenv("DOSSIER_TOKEN");
    cli.tls_ca = getenv("DOSSIER_TLS_CA");
    cli.tls_cert = getenv("DOSSIER_TLS_CERT");
    cli.tls_key = getenv("DOSSIER_TLS_KEY");
    cli.json_flags = JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER;
    opterr = 0;
    /* '+' stops at the command: its own options belong to it. */
    while ((ch = getopt_long(argc, argv, "+t:p:h", lopts, NULL)) != -1) {
        switch (ch) {
        case 't': cli.target = optarg; break;
        case 'p': cli.purpose = optarg; break;
        case 'T': {
            FILE *f = fopen(optarg, "r");
            if (!f || !fgets(cli.token_buf, sizeof(cli.token_buf), f)) {
                if (f)
                    fclose(f);
                return usage_error("--token-file %s: cannot read a token",
                                   optarg);
            }
            fclose(f);
            cli.token_buf[strcspn(cli.token_buf, "\r\n")] = '\0';
            cli.token = cli.token_buf;
            break;
        }
        case 'A': cli.tls_ca = optarg; break;
        case 'C': cli.tls_cert = optarg; break;
        case 'K': cli.tls_key = optarg; break;
        case 'O':
            if (parse_u64(optarg, &timeout) || timeout == 0 ||
                timeout > 3600000)
                return usage_error("--timeout %s: give milliseconds", optarg);
            cli.timeout_ms = (int64_t)timeout;
            break;
        case 'P':
            cli.json_flags = JSON_INDENT(2) | JSON_ENSURE_ASCII |
                             JSON_PRESERVE_ORDER;
            break;
        case 'S': cli.read_opts.consistency = DOSSIER_SERIALIZABLE; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        case 'V': printf("dossier %s\n", DOSSIER_VERSION); return EXIT_OK;
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("no command given%s", "");
    /* An empty variable or flag is as good as none. */
    if (cli.tls_ca && !cli.tls_ca[0])
        cli.tls_ca = NULL;
    if (cli.tls_cert && !cli.tls_cert[0])
        cli.tls_cert = NULL;
    if (cli.tls_key && !cli.tls_key[0])
        cli.tls_key = NULL;
    if (!cli.tls_cert != !cli.tls_key)
        return usage_error("--tls-cert and --tls-key go together%s", "");
    if (cli.tls_cert && !cli.tls_ca)
        return usage_error("--tls-cert needs --tls-ca (a client certificate "
                           "is only presented over TLS)%s", "");
    if (sodium_init() < 0)
        return EXIT_ERROR;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, argv[optind]) == 0) {
            rc = commands[i].run(&cli, argc - optind, argv + optind);
            dossier_client_close(cli.client);
            return rc;
        }
    return usage_error("unknown command '%s'", argv[optind]);
}
