/* Sealing records into write commands and opening stored records. */
#include "records.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "errors.h"

/* Locked per-thread scratch for one encoded field value, wiped after each
 * use. */
#define PLAIN_MAX (SCHEMA_VALUE_MAX + 64)
static pthread_key_t plain_tls;
static pthread_once_t plain_once = PTHREAD_ONCE_INIT;
static __thread uint8_t *plain_buf;

static void plain_destroy(void *p)
{
    sodium_free(p);
}

static void plain_init(void)
{
    (void)pthread_key_create(&plain_tls, plain_destroy);
}

static uint8_t *plain_scratch(void)
{
    if (!plain_buf) {
        pthread_once(&plain_once, plain_init);
        plain_buf = sodium_malloc(PLAIN_MAX);
        if (plain_buf)
            pthread_setspecific(plain_tls, plain_buf);
    }
    return plain_buf;
}

/* The place name of a link's sealed target id (crypt.h, domain 'A'):
 * label "/" kind "/" hex(target pseudonym). */
#define LINK_PLACE_MAX (2 * (SCHEMA_NAME_MAX + 1) + 2 * STORE_RID_BYTES + 1)
static void link_place_name(char out[LINK_PLACE_MAX], const char *label,
                            const char *kind,
                            const uint8_t rid[STORE_RID_BYTES])
{
    int n = snprintf(out, LINK_PLACE_MAX, "%s/%s/", label, kind);
    sodium_bin2hex(out + n, LINK_PLACE_MAX - (size_t)n, rid, STORE_RID_BYTES);
}

int64_t records_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int records_check_id(const char *id, const char *what,
                     struct dossier_status *st)
{
    size_t len = strlen(id);
    if (len == 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "%s must not be empty",
                       what);
    if (len > SCHEMA_ID_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s is longer than %d bytes", what, SCHEMA_ID_MAX);
    if (!schema_utf8_valid(id, len))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "%s is not valid UTF-8",
                       what);
    return 0;
}

int records_kind(struct node *n, const char *name, const KindSchema **out,
                 struct dossier_status *st)
{
    if (!name[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kind must not be empty");
    if (!schema_name_valid(name))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind '%.64s' is not a valid kind name", name);
    *out = schema_registry_get(store_schemas(n->store), name);
    if (!*out)
        return err_set(st, DOSSIER_UNKNOWN_KIND,
                       "unknown kind '%s' (dossier schema list shows the "
                       "kinds)",
                       name);
    return 0;
}

static int field_is_set(const Dossier__V1__Field *f)
{
    return f->value && f->value->kind_case != DOSSIER__V1__VALUE__KIND__NOT_SET;
}

/* Finds subject @sp's key into @k, creating one (described in @newsk,
 * *@created set) when the subject has none yet. A subject merged into
 * another has none: @sp becomes that subject's, whose key it finds. */
static int subject_key(struct node *n, uint8_t *sp, const char *sid,
                       struct crypt_dek *k, SubjectKey *newsk, int *created,
                       struct dossier_status *st)
{
    SubjectKey *sk = NULL;
    uint8_t root[CRYPT_PSEUDONYM_BYTES];
    int rc;

    *created = 0;
    rc = crypt_subject_key_open(n->crypt, sp, NULL, k, NULL, 0, st);
    if (rc != 1)
        return rc;
    rc = store_subject_key_get(n->store, sp, &sk, st);
    if (rc == DOSSIER_NOT_FOUND) {
        if (store_subject_root(n->store, NULL, sp, root, st) != 0)
            return st->code;
        if (memcmp(root, sp, sizeof(root)) != 0) {
            /* The root has no alias: this recurses once. */
            memcpy(sp, root, sizeof(root));
            return subject_key(n, sp, sid, k, newsk, created, st);
        }
        *created = 1;
        return crypt_subject_key_new(n->crypt, sp, sid, strlen(sid),
                                     records_now_ms(), k, newsk, st);
    }
    if (rc)
        return rc;
    rc = crypt_subject_key_open(n->crypt, sp, sk, k, NULL, 0, st);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return rc;
}

int records_seal_put(struct node *n, const KindSchema *k,
                     const Dossier__V1__Record *r, const uint64_t *expected,
                     struct call *call, uint8_t **out, size_t *len,
                     uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                     struct dossier_status *st)
{
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__PutOp op = DOSSIER__STORE__V1__PUT_OP__INIT;
    SubjectKey newsk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    struct crypt_dek dek = {0, crypt_scratch_key()};
    struct crypt_place place = {0};
    uint8_t rid[CRYPT_PSEUDONYM_BYTES];
    uint8_t *plain = plain_scratch(), *boxes = NULL;
    uint8_t *keys = NULL, *cur;
    Dossier__Store__V1__SealedField *sealed = NULL, **sealed_ptrs = NULL;
    ProtobufCBinaryData *index_keys = NULL;
    Dossier__Store__V1__LinkEntry *links = NULL, **link_ptrs = NULL;
    uint8_t (*trids)[STORE_RID_BYTES] = NULL;
    const char **tids = NULL;
    size_t n_live = 0, n_indexed = 0, n_links = 0, box_total, id_len;
    int has_subject = r->subject_id[0] != 0, created = 0, rc;

    *out = NULL;
    if (!dek.key || !plain)
        return err_set(st, DOSSIER_NOMEM, "out of locked memory");
    crypt_record_pseudonym(n->crypt, k->kind, r->id, strlen(r->id), rid);
    memset(sp, 0, CRYPT_PSEUDONYM_BYTES);
    if (has_subject) {
        crypt_subject_pseudonym(n->crypt, r->subject_id,
                                strlen(r->subject_id), sp);
        rc = subject_key(n, sp, r->subject_id, &dek, &newsk, &created, st);
        if (rc)
            goto out;
    } else {
        crypt_shared_dek(n->crypt, &dek);
    }

    /* Room for every box: the id, the links, each set field. */
    for (size_t i = 0; i < r->n_fields; i++) {
        if (!field_is_set(r->fields[i]))
            continue;
        n_live++;
        if (schema_field(k, r->fields[i]->name)->indexed)
            n_indexed++;
    }
    id_len = strlen(r->id);
    box_total = crypt_box_len(id_len);
    /* Links are a set: each (label, kind, id) once. Each becomes a row of
     * the link family holding its target id, sealed on its own. */
    trids = calloc(r->n_links ? r->n_links : 1, sizeof(*trids));
    links = calloc(r->n_links ? r->n_links : 1, sizeof(*links));
    link_ptrs = calloc(r->n_links ? r->n_links : 1, sizeof(*link_ptrs));
    tids = calloc(r->n_links ? r->n_links : 1, sizeof(*tids));
    if (!trids || !links || !link_ptrs || !tids) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < r->n_links; i++) {
        const Dossier__V1__Link *l = r->links[i];
        size_t j;
        crypt_record_pseudonym(n->crypt, l->kind, l->id, strlen(l->id),
                               trids[n_links]);
        for (j = 0; j < n_links; j++)
            if (strcmp(links[j].label, l->label) == 0 &&
                strcmp(links[j].kind, l->kind) == 0 &&
                memcmp(trids[j], trids[n_links], STORE_RID_BYTES) == 0)
                break;
        if (j < n_links)
            continue; /* a repeat */
        dossier__store__v1__link_entry__init(&links[n_links]);
        links[n_links].label = l->label;
        links[n_links].kind = l->kind;
        links[n_links].rid =
            (ProtobufCBinaryData){STORE_RID_BYTES, trids[n_links]};
        link_ptrs[n_links] = &links[n_links];
        tids[n_links] = l->id;
        box_total += crypt_box_len(strlen(l->id));
        n_links++;
    }
    for (size_t i = 0; i < r->n_fields; i++)
        if (field_is_set(r->fields[i]))
            box_total += crypt_box_len(dossier__v1__value__get_packed_size(
                r->fields[i]->value));
    boxes = malloc(box_total);
    sealed = calloc(n_live ? n_live : 1, sizeof(*sealed));
    sealed_ptrs = calloc(n_live ? n_live : 1, sizeof(*sealed_ptrs));
    index_keys = calloc(n_indexed ? n_indexed : 1, sizeof(*index_keys));
    keys = malloc((n_indexed ? n_indexed : 1) * STORE_KEY_MAX);
    if (!boxes || !sealed || !sealed_ptrs || !index_keys || !keys) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }

    place.subject = has_subject ? sp : NULL;
    place.subject_len = has_subject ? CRYPT_PSEUDONYM_BYTES : 0;
    place.kind = k->kind;
    place.rid = rid;
    place.rid_len = sizeof(rid);
    cur = boxes;

    place.domain = CRYPT_RECORD_ID;
    crypt_seal(dek.key, &place, (const uint8_t *)r->id, id_len, cur);
    op.sealed_id = (ProtobufCBinaryData){crypt_box_len(id_len), cur};
    cur += crypt_box_len(id_len);

    place.domain = CRYPT_LINK_TARGET;
    for (size_t j = 0; j < n_links; j++) {
        char name[LINK_PLACE_MAX];
        size_t len = strlen(tids[j]);
        link_place_name(name, links[j].label, links[j].kind, trids[j]);
        place.name = name;
        crypt_seal(dek.key, &place, (const uint8_t *)tids[j], len, cur);
        links[j].sealed_id = (ProtobufCBinaryData){crypt_box_len(len), cur};
        cur += crypt_box_len(len);
    }
    place.name = NULL;

    place.domain = CRYPT_FIELD;
    for (size_t i = 0, j = 0, x = 0; i < r->n_fields; i++) {
        const Dossier__V1__Field *f = r->fields[i];
        const FieldSchema *fs;
        size_t plen;
        if (!field_is_set(f))
            continue;
        plen = dossier__v1__value__get_packed_size(f->value);
        if (plen > PLAIN_MAX) {
            rc = err_set(st, DOSSIER_SCHEMA_VIOLATION,
                         "field '%s' is too large", f->name);
            goto out;
        }
        dossier__v1__value__pack(f->value, plain);
        place.name = f->name;
        crypt_seal(dek.key, &place, plain, plen, cur);
        sodium_memzero(plain, plen);
        dossier__store__v1__sealed_field__init(&sealed[j]);
        sealed[j].name = f->name;
        sealed[j].box = (ProtobufCBinaryData){crypt_box_len(plen), cur};
        sealed_ptrs[j] = &sealed[j];
        cur += crypt_box_len(plen);
        j++;

        fs = schema_field(k, f->name);
        if (fs->indexed) {
            char norm[SCHEMA_NORM_MAX];
            uint8_t blind[CRYPT_BLIND_BYTES];
            size_t nlen;
            rc = schema_index_value(k, fs, f->value, norm, sizeof(norm),
                                    &nlen, st);
            if (rc) {
                sodium_memzero(norm, sizeof(norm));
                if (st)
                    st->code = rc = DOSSIER_SCHEMA_VIOLATION;
                goto out;
            }
            crypt_blind_index(n->crypt, k->kind, f->name,
                              (const uint8_t *)norm, nlen, blind);
            sodium_memzero(norm, sizeof(norm));
            index_keys[x].data = keys + x * STORE_KEY_MAX;
            index_keys[x].len = store_index_key(index_keys[x].data, k->kind,
                                                f->name, blind, rid);
            x++;
        }
    }

    op.kind = k->kind;
    op.rid = (ProtobufCBinaryData){sizeof(rid), rid};
    if (has_subject)
        op.subject = (ProtobufCBinaryData){CRYPT_PSEUDONYM_BYTES, sp};
    op.dek_id = dek.id;
    if (created)
        op.new_subject_key = &newsk;
    if (expected) {
        op.expect_case = DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION;
        op.expected_version = *expected;
    }
    op.n_fields = n_live;
    op.fields = sealed_ptrs;
    op.n_index_keys = n_indexed;
    op.index_keys = index_keys;
    op.n_links = n_links;
    op.links = link_ptrs;
    call_command_init(call, &cmd);
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_PUT;
    cmd.put = &op;
    *len = dossier__store__v1__command__get_packed_size(&cmd);
    *out = malloc(*len);
    if (!*out) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    dossier__store__v1__command__pack(&cmd, *out);
    rc = err_ok(st);
out:
    crypt_dek_wipe(&dek);
    free(newsk.wrapped_dek.data);
    free(newsk.sealed_subject_id.data);
    free(boxes);
    free(sealed);
    free(sealed_ptrs);
    free(index_keys);
    free(keys);
    free(links);
    free(link_ptrs);
    free(trids);
    free(tids);
    return rc;
}

/* ------------------------------------------------------------------ */

void records_opened_release(struct records_opened *o)
{
    size_t n_values = o->stored ? o->stored->n_fields : 0;

    if (o->values)
        for (size_t i = 0; i < n_values; i++)
            if (o->values[i])
                protobuf_c_message_free_unpacked(
                    &o->values[i]->base, &server_wiping_allocator);
    free(o->values);
    free(o->fields);
    free(o->field_ptrs);
    if (o->links)
        protobuf_c_message_free_unpacked(&o->links->base,
                                         &server_wiping_allocator);
    for (size_t i = 0; o->link_ids && i < o->n_index_links; i++)
        if (o->link_ids[i]) {
            sodium_memzero(o->link_ids[i], strlen(o->link_ids[i]));
            free(o->link_ids[i]);
        }
    free(o->link_ids);
    free(o->link_items);
    free(o->link_ptrs);
    store_links_free(o->index_links, o->n_index_links);
    if (o->id) {
        sodium_memzero(o->id, strlen(o->id));
        free(o->id);
    }
    if (o->subject_id) {
        sodium_memzero(o->subject_id, strlen(o->subject_id));
        free(o->subject_id);
    }
    if (o->stored)
        dossier__store__v1__stored_record__free_unpacked(o->stored, NULL);
    memset(o, 0, sizeof(*o));
}

/* Opens box @b of place @p into a new NUL-terminated string. */
static int open_string(const unsigned char *key, const struct crypt_place *p,
                       const ProtobufCBinaryData *b, char **out)
{
    size_t len;
    if (b->len < CRYPT_BOX_OVERHEAD)
        return DOSSIER_CORRUPT;
    len = b->len - CRYPT_BOX_OVERHEAD;
    *out = malloc(len + 1);
    if (!*out)
        return DOSSIER_NOMEM;
    if (crypt_open(key, p, b->data, b->len, (uint8_t *)*out) != 0) {
        free(*out);
        *out = NULL;
        return DOSSIER_CORRUPT;
    }
    (*out)[len] = '\0';
    return 0;
}

/* Reads @o's record again with its links, at one moment (store.h), and
 * replaces o->stored by what was read. */
static int links_load(struct node *n, const uint8_t rid[STORE_RID_BYTES],
                      struct records_opened *o, struct dossier_status *st)
{
    StoredRecord *now;
    int rc = store_record_links(n->store, o->stored->kind, rid, &now,
                                &o->index_links, &o->n_index_links, st);
    if (rc)
        return rc;
    if (now->subject.len != o->stored->subject.len ||
        (now->subject.len && memcmp(now->subject.data, o->stored->subject.data,
                                    now->subject.len) != 0)) {
        /* Deleted and made again for another subject while it was read:
         * what the caller checked no longer applies. */
        dossier__store__v1__stored_record__free_unpacked(now, NULL);
        return err_set(st, DOSSIER_NOT_FOUND, "no record of kind '%s' with "
                       "that id",
                       o->stored->kind);
    }
    dossier__store__v1__stored_record__free_unpacked(o->stored, NULL);
    o->stored = now;
    o->link_items = calloc(o->n_index_links ? o->n_index_links : 1,
                           sizeof(*o->link_items));
    o->link_ptrs = calloc(o->n_index_links ? o->n_index_links : 1,
                          sizeof(*o->link_ptrs));
    o->link_ids = calloc(o->n_index_links ? o->n_index_links : 1,
                         sizeof(*o->link_ids));
    if (!o->link_items || !o->link_ptrs || !o->link_ids)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    return 0;
}

/* Opens the target ids of the links links_load() read, under @key at
 * @place (its record's). */
static int links_open(const unsigned char *key, struct crypt_place place,
                      struct records_opened *o)
{
    place.domain = CRYPT_LINK_TARGET;
    for (size_t i = 0; i < o->n_index_links; i++) {
        struct store_link *l = &o->index_links[i];
        char name[LINK_PLACE_MAX];
        int rc;
        link_place_name(name, l->label, l->kind, l->rid);
        place.name = name;
        rc = open_string(key, &place,
                         &(ProtobufCBinaryData){l->sealed_len, l->sealed_id},
                         &o->link_ids[i]);
        if (rc)
            return rc;
        dossier__v1__link__init(&o->link_items[i]);
        o->link_items[i].label = l->label;
        o->link_items[i].kind = l->kind;
        o->link_items[i].id = o->link_ids[i];
        o->link_ptrs[i] = &o->link_items[i];
    }
    o->rec.n_links = o->n_index_links;
    o->rec.links = o->link_ptrs;
    return 0;
}

int records_open(struct node *n, StoredRecord *stored,
                 const uint8_t rid[STORE_RID_BYTES], unsigned categories,
                 struct records_opened *o, struct dossier_status *st)
{
    const KindSchema *k =
        schema_registry_get(store_schemas(n->store), stored->kind);
    size_t kept = 0;
    struct crypt_dek dek = {0, crypt_scratch_key()};
    struct crypt_place place = {0};
    char sid[CRYPT_SUBJECT_ID_MAX + 1] = "";
    uint8_t *plain = plain_scratch();
    int has_subject = stored->subject.len == CRYPT_PSEUDONYM_BYTES, rc;

    memset(o, 0, sizeof(*o));
    o->stored = stored;
    dossier__v1__record__init(&o->rec);
    if (!dek.key || !plain) {
        rc = err_set(st, DOSSIER_NOMEM, "out of locked memory");
        goto fail;
    }
    if (stored->n_links && !(categories & RECORDS_AS_STORED)) {
        rc = links_load(n, rid, o, st);
        if (rc)
            goto fail;
        stored = o->stored;
        k = schema_registry_get(store_schemas(n->store), stored->kind);
    }
    if (has_subject) {
        rc = crypt_subject_key_open(n->crypt, stored->subject.data, NULL,
                                    &dek, sid, sizeof(sid), st);
        if (rc == 1) {
            SubjectKey *sk;
            rc = store_subject_key_get(n->store, stored->subject.data, &sk,
                                       st);
            if (rc == DOSSIER_NOT_FOUND)
                rc = err_set(st, DOSSIER_CORRUPT,
                             "a record's subject key is missing");
            if (rc == 0) {
                rc = crypt_subject_key_open(n->crypt, stored->subject.data,
                                            sk, &dek, sid, sizeof(sid), st);
                dossier__store__v1__subject_key__free_unpacked(sk, NULL);
            }
        }
        if (rc)
            goto fail;
        if (dek.id != stored->dek_id) {
            rc = err_set(st, DOSSIER_CORRUPT,
                         "a record is sealed under a key its subject no "
                         "longer has");
            goto fail;
        }
    } else {
        crypt_shared_dek(n->crypt, &dek);
    }

    place.subject = has_subject ? stored->subject.data : NULL;
    place.subject_len = has_subject ? CRYPT_PSEUDONYM_BYTES : 0;
    place.kind = stored->kind;
    place.rid = rid;
    place.rid_len = STORE_RID_BYTES;

    place.domain = CRYPT_RECORD_ID;
    rc = open_string(dek.key, &place, &stored->sealed_id, &o->id);
    if (rc == DOSSIER_NOMEM) {
        err_set(st, rc, "out of memory");
        goto fail;
    }
    if (rc)
        goto fail_box;
    if (stored->sealed_links.len) {
        size_t len;
        if (stored->sealed_links.len < CRYPT_BOX_OVERHEAD)
            goto fail_box;
        len = stored->sealed_links.len - CRYPT_BOX_OVERHEAD;
        uint8_t *buf = sodium_malloc(len ? len : 1);
        if (!buf) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto fail;
        }
        place.domain = CRYPT_LINKS;
        if (crypt_open(dek.key, &place, stored->sealed_links.data,
                       stored->sealed_links.len, buf) != 0) {
            sodium_free(buf);
            goto fail_box;
        }
        o->links = dossier__store__v1__link_list__unpack(
            &server_wiping_allocator, len, buf);
        sodium_free(buf);
        if (!o->links)
            goto fail_box;
        o->rec.n_links = o->links->n_links;
        o->rec.links = o->links->links;
    }
    if (o->n_index_links) {
        rc = links_open(dek.key, place, o);
        if (rc == DOSSIER_NOMEM) {
            err_set(st, rc, "out of memory");
            goto fail;
        }
        if (rc)
            goto fail_box;
    }

    o->fields = calloc(stored->n_fields ? stored->n_fields : 1,
                       sizeof(*o->fields));
    o->field_ptrs = calloc(stored->n_fields ? stored->n_fields : 1,
                           sizeof(*o->field_ptrs));
    o->values = calloc(stored->n_fields ? stored->n_fields : 1,
                       sizeof(*o->values));
    if (!o->fields || !o->field_ptrs || !o->values) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    place.domain = CRYPT_FIELD;
    for (size_t i = 0; i < stored->n_fields; i++) {
        const Dossier__Store__V1__SealedField *sf = stored->fields[i];
        const FieldSchema *f = k ? schema_field(k, sf->name) : NULL;
        size_t len;
        /* A field the caller's purpose may not see is not even opened. */
        if (!f || f->category < 1 || f->category > 6 ||
            !(categories & (1u << f->category)))
            continue;
        if (sf->box.len < CRYPT_BOX_OVERHEAD ||
            sf->box.len - CRYPT_BOX_OVERHEAD > PLAIN_MAX)
            goto fail_box;
        len = sf->box.len - CRYPT_BOX_OVERHEAD;
        place.name = sf->name;
        if (crypt_open(dek.key, &place, sf->box.data, sf->box.len, plain) != 0)
            goto fail_box;
        o->values[i] = dossier__v1__value__unpack(&server_wiping_allocator,
                                                  len, plain);
        sodium_memzero(plain, len);
        if (!o->values[i])
            goto fail_box;
        dossier__v1__field__init(&o->fields[i]);
        o->fields[i].name = sf->name;
        o->fields[i].value = o->values[i];
        o->field_ptrs[kept++] = &o->fields[i];
    }
    o->rec.n_fields = kept;
    o->rec.fields = o->field_ptrs;

    if (has_subject) {
        o->subject_id = strdup(sid);
        if (!o->subject_id) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto fail;
        }
        o->rec.subject_id = o->subject_id;
    }
    o->rec.kind = stored->kind;
    o->rec.id = o->id;
    o->rec.version = stored->version;
    o->rec.created_at_ms = stored->created_at_ms;
    o->rec.updated_at_ms = stored->updated_at_ms;
    crypt_dek_wipe(&dek);
    sodium_memzero(sid, sizeof(sid));
    return err_ok(st);

fail_box:
    rc = err_set(st, DOSSIER_CORRUPT,
                 "a sealed value of a record of kind '%s' does not open: the "
                 "data was altered or its key is gone",
                 stored->kind);
fail:
    crypt_dek_wipe(&dek);
    sodium_memzero(sid, sizeof(sid));
    records_opened_release(o);
    return rc;
}

const Dossier__V1__Value *records_field_value(const Dossier__V1__Record *r,
                                              const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++)
        if (strcmp(r->fields[i]->name, name) == 0)
            return r->fields[i]->value;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Single boxes, for merges (api_merge.c). */

/* Subject @sp's current key (NULL: the shared one) into @k. */
static int current_key(struct node *n, const uint8_t *sp, struct crypt_dek *k,
                       struct dossier_status *st)
{
    SubjectKey *sk;
    int rc;

    if (!sp) {
        crypt_shared_dek(n->crypt, k);
        return 0;
    }
    rc = store_subject_key_get(n->store, sp, &sk, st);
    if (rc)
        return rc == DOSSIER_NOT_FOUND
                   ? err_set(st, rc, "a subject of the merge has no key")
                   : rc;
    rc = crypt_subject_key_open(n->crypt, sp, sk, k, NULL, 0, st);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return rc;
}

int records_seal_box(struct node *n, const uint8_t *sp,
                     struct crypt_place place, const uint8_t *plain,
                     size_t len, uint8_t **box, size_t *box_len,
                     uint64_t *dek_id, struct dossier_status *st)
{
    struct crypt_dek dek = {0, crypt_scratch_key()};
    int rc;

    *box = NULL;
    if (!dek.key)
        return err_set(st, DOSSIER_NOMEM, "out of locked memory");
    if ((rc = current_key(n, sp, &dek, st)))
        goto out;
    place.subject = sp;
    place.subject_len = sp ? CRYPT_PSEUDONYM_BYTES : 0;
    *box_len = crypt_box_len(len);
    if (!(*box = malloc(*box_len))) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    if (crypt_seal(dek.key, &place, plain, len, *box) != 0) {
        free(*box);
        *box = NULL;
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT, "a place is too long");
        goto out;
    }
    *dek_id = dek.id;
    rc = 0;
out:
    crypt_dek_wipe(&dek);
    return rc;
}

int records_open_box(struct node *n, const uint8_t *sp, uint64_t dek_id,
                     struct crypt_place place, const uint8_t *box,
                     size_t box_len, uint8_t **plain, size_t *len,
                     struct dossier_status *st)
{
    struct crypt_dek dek = {0, crypt_scratch_key()};
    int rc;

    *plain = NULL;
    if (!dek.key)
        return err_set(st, DOSSIER_NOMEM, "out of locked memory");
    if ((rc = current_key(n, sp, &dek, st)))
        goto out;
    if (dek.id != dek_id || box_len < CRYPT_BOX_OVERHEAD) {
        rc = err_set(st, DOSSIER_NOT_FOUND, "the key of that box is gone");
        goto out;
    }
    place.subject = sp;
    place.subject_len = sp ? CRYPT_PSEUDONYM_BYTES : 0;
    *len = box_len - CRYPT_BOX_OVERHEAD;
    if (!(*plain = malloc(*len + 1))) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    if (crypt_open(dek.key, &place, box, box_len, *plain) != 0) {
        free(*plain);
        *plain = NULL;
        rc = err_set(st, DOSSIER_CORRUPT, "a sealed value does not open");
        goto out;
    }
    (*plain)[*len] = 0;
    rc = 0;
out:
    crypt_dek_wipe(&dek);
    return rc;
}

int records_seal_link_target(struct node *n, const StoredRecord *src,
                             const uint8_t src_rid[STORE_RID_BYTES],
                             const char *label, const char *tkind,
                             const uint8_t trid[STORE_RID_BYTES],
                             const char *tid, uint8_t **box,
                             size_t *box_len, struct dossier_status *st)
{
    struct crypt_place place = {0};
    char name[LINK_PLACE_MAX];
    uint64_t dek_id;
    int has_subject = src->subject.len == STORE_SP_BYTES, rc;

    link_place_name(name, label, tkind, trid);
    place.domain = CRYPT_LINK_TARGET;
    place.kind = src->kind;
    place.rid = src_rid;
    place.rid_len = STORE_RID_BYTES;
    place.name = name;
    rc = records_seal_box(n, has_subject ? src->subject.data : NULL, place,
                          (const uint8_t *)tid, strlen(tid), box, box_len,
                          &dek_id, st);
    if (rc == 0 && dek_id != src->dek_id) {
        free(*box);
        *box = NULL;
        rc = err_set(st, DOSSIER_RETRY, "a linking record's key changed");
    }
    return rc;
}
