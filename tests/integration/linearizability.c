/* Wing & Gong linearizability search with Lowe's memoization, for one
 * register. See linearizability.h. */
#include "linearizability.h"

#include <stdlib.h>
#include <string.h>

struct event {
    size_t op;
    int is_call;
    int64_t t;
    struct event *prev, *next;
    struct event *match; /* the call's return event */
};

struct cache {
    size_t words;   /* uint64 words per bitset */
    size_t cap, n;
    uint64_t *keys; /* cap * (words + 1): bitset then state; state+1, 0 free */
};

static uint64_t hash_key(const uint64_t *bits, size_t words, uint64_t state)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ state;
    for (size_t i = 0; i < words; i++) {
        h ^= bits[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ULL;
    }
    return h ^ (h >> 31);
}

static int cache_grow(struct cache *c);

/* Adds (@bits, @state); returns 1 if it was new, 0 if seen, -1 on OOM. */
static int cache_add(struct cache *c, const uint64_t *bits, uint64_t state)
{
    size_t stride = c->words + 1, i;
    if ((c->n + 1) * 2 > c->cap && cache_grow(c) != 0)
        return -1;
    i = hash_key(bits, c->words, state) & (c->cap - 1);
    for (;; i = (i + 1) & (c->cap - 1)) {
        uint64_t *k = &c->keys[i * stride];
        if (k[c->words] == 0) {
            memcpy(k, bits, c->words * sizeof(uint64_t));
            k[c->words] = state + 1;
            c->n++;
            return 1;
        }
        if (k[c->words] == state + 1 &&
            memcmp(k, bits, c->words * sizeof(uint64_t)) == 0)
            return 0;
    }
}

static int cache_grow(struct cache *c)
{
    struct cache bigger = {c->words, c->cap ? c->cap * 2 : 1024, 0, NULL};
    size_t stride = c->words + 1;
    bigger.keys = calloc(bigger.cap * stride, sizeof(uint64_t));
    if (!bigger.keys)
        return -1;
    for (size_t i = 0; i < c->cap; i++) {
        uint64_t *k = &c->keys[i * stride];
        if (k[c->words])
            cache_add(&bigger, k, k[c->words] - 1);
    }
    free(c->keys);
    *c = bigger;
    return 0;
}

static int cmp_events(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    /* At equal times calls come first: such operations overlap. */
    return y->is_call - x->is_call;
}

/* The register's answer to @op in @state: 1 and the new state if the
 * operation can happen there. */
static int step(const struct lin_op *op, uint64_t state, uint64_t *next)
{
    if (op->kind == LIN_WRITE) {
        *next = op->value;
        return 1;
    }
    *next = state;
    return op->value == state;
}

static void lift(struct event *e)
{
    e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->match->prev->next = e->match->next;
    if (e->match->next)
        e->match->next->prev = e->match->prev;
}

static void unlift(struct event *e)
{
    e->match->prev->next = e->match;
    if (e->match->next)
        e->match->next->prev = e->match;
    e->prev->next = e;
    if (e->next)
        e->next->prev = e;
}

enum lin_result lin_check(const struct lin_op *ops, size_t n, uint64_t budget,
                          size_t *culprit)
{
    struct event *ev = calloc(2 * n + 1, sizeof(*ev)), *head, *e;
    struct event **stack_e = calloc(n + 1, sizeof(*stack_e));
    uint64_t *stack_s = calloc(n + 1, sizeof(*stack_s));
    size_t words = n / 64 + 1, top = 0;
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    struct cache cache = {words, 0, 0, NULL};
    struct event **by_op_call = calloc(n + 1, sizeof(*by_op_call));
    struct event **by_op_ret = calloc(n + 1, sizeof(*by_op_ret));
    enum lin_result res = LIN_OK;
    uint64_t state = LIN_NONE, steps = 0;
    size_t deepest = 0, stuck = 0;

    if (!ev || !stack_e || !stack_s || !bits || !by_op_call || !by_op_ret) {
        res = LIN_UNDECIDED;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ev[1 + 2 * i] = (struct event){i, 1, ops[i].call_us, NULL, NULL, NULL};
        ev[2 + 2 * i] =
            (struct event){i, 0, ops[i].return_us, NULL, NULL, NULL};
    }
    qsort(ev + 1, 2 * n, sizeof(*ev), cmp_events);
    head = &ev[0];
    for (size_t i = 0; i <= 2 * n; i++) {
        ev[i].prev = i ? &ev[i - 1] : NULL;
        ev[i].next = i < 2 * n ? &ev[i + 1] : NULL;
        if (i) {
            if (ev[i].is_call)
                by_op_call[ev[i].op] = &ev[i];
            else
                by_op_ret[ev[i].op] = &ev[i];
        }
    }
    for (size_t i = 0; i < n; i++)
        by_op_call[i]->match = by_op_ret[i];

    e = head->next;
    while (head->next) {
        if (++steps > budget) {
            res = LIN_UNDECIDED;
            break;
        }
        if (e->is_call) {
            uint64_t next;
            if (step(&ops[e->op], state, &next)) {
                int added;
                bits[e->op / 64] |= 1ULL << (e->op % 64);
                added = cache_add(&cache, bits, next);
                if (added < 0) {
                    res = LIN_UNDECIDED;
                    break;
                }
                if (added) {
                    stack_e[top] = e;
                    stack_s[top++] = state;
                    state = next;
                    lift(e);
                    e = head->next;
                    continue;
                }
                bits[e->op / 64] &= ~(1ULL << (e->op % 64));
            }
            e = e->next;
        } else {
            /* An operation returned before it could be placed: back off.
             * The culprit is where the search got furthest. */
            if (top >= deepest) {
                deepest = top;
                stuck = e->op;
            }
            if (top == 0) {
                if (culprit)
                    *culprit = stuck;
                res = LIN_VIOLATION;
                break;
            }
            e = stack_e[--top];
            state = stack_s[top];
            bits[e->op / 64] &= ~(1ULL << (e->op % 64));
            unlift(e);
            e = e->next;
        }
    }
out:
    free(ev);
    free(stack_e);
    free(stack_s);
    free(bits);
    free(cache.keys);
    free(by_op_call);
    free(by_op_ret);
    return res;
}
