/*
 * cd_core.c: the core worker. See cd_core.h.
 */
#include "cd_core.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "at_log.h"

struct cd_core_s {
    const cd_conf_t *conf;
    cd_store_t *store;
    cd_state_t *state;
    cd_fanout_t *fo;
    pthread_t tid;
    bool started;
    bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cd_req_t *head, *tail;
    size_t qlen;
    at_counter_t *changes[6];
    at_counter_t *store_failures;
    at_gauge_t *version;
};

cd_req_t *cd_req_new(void)
{
    cd_req_t *r = calloc(1, sizeof(*r));
    if (r != NULL)
        cd_update_init(&r->u);
    return r;
}

void cd_req_free(cd_req_t *r)
{
    if (r == NULL)
        return;
    cd_update_free(&r->u);
    if (r->doc != NULL)
        bson_destroy(r->doc);
    free(r);
}

static void on_load(cd_kind_t kind, const bson_t *doc, void *opaque)
{
    cd_state_put(opaque, kind, doc);
}

cd_core_t *cd_core_new(const cd_conf_t *conf, cd_store_t *store, cd_state_t *state, cd_fanout_t *fo,
                       at_metrics_t *metrics, at_err_t *err)
{
    cd_core_t *core = calloc(1, sizeof(*core));
    if (core == NULL) {
        cd_store_destroy(store);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    core->conf = conf;
    core->store = store;
    core->state = state;
    core->fo = fo;
    pthread_mutex_init(&core->mu, NULL);
    pthread_cond_init(&core->cv, NULL);
    if (store->ops->load(store, on_load, state, err) != 0) {
        cd_core_destroy(core);
        return NULL;
    }
    if (metrics != NULL) {
        static const char *ops[] = {"put", "delete", "budget_set", "budget_topup", "pause", "resume"};
        char lbl[64];
        for (size_t i = 0; i < AT_ARRAY_LEN(ops); i++) {
            snprintf(lbl, sizeof(lbl), "op=\"%s\"", ops[i]);
            core->changes[i] = at_metrics_counter(metrics, "adtrack_coredata_changes_total", lbl,
                                                  "Changes accepted and stored, by operation.");
        }
        core->store_failures = at_metrics_counter(metrics, "adtrack_coredata_store_failures_total", NULL,
                                                  "Store writes that failed (the change was refused).");
        core->version = at_metrics_gauge(metrics, "adtrack_coredata_version", NULL, "Highest version assigned.");
        at_gauge_set(core->version, (double)state->version);
    }
    return core;
}

const char *cd_core_store_name(const cd_core_t *core)
{
    return core->store->ops->name;
}

static int64_t next_version(cd_core_t *core)
{
    int64_t floor = core->fo != NULL ? cd_fanout_floor(core->fo) : 0;
    pthread_rwlock_wrlock(&core->state->lock);
    int64_t v = AT_MAX(core->state->version, floor) + 1;
    core->state->version = v;
    pthread_rwlock_unlock(&core->state->lock);
    return v;
}

static void finish(cd_req_t *r, int status, const bson_t *doc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish(cd_req_t *r, int status, const bson_t *doc, const char *fmt, ...)
{
    r->status = status;
    if (doc != NULL)
        r->doc = bson_copy(doc);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
        va_end(ap);
    }
}

void cd_core_apply(cd_core_t *core, cd_req_t *r)
{
    cd_update_t *u = &r->u;
    const char *kind = cd_kind_str(u->kind);
    /* Only this thread writes the state, so reading it here needs no lock. */
    ssize_t idx = cd_state_find(core->state, u->kind, u->id);
    const cd_entry_t *cur = idx >= 0 ? &core->state->items[u->kind][idx] : NULL;
    bool live = cur != NULL && !cur->deleted;
    int64_t curv = live ? cur->version : 0;

    if (u->expect_version >= 0 && u->expect_version != curv) {
        if (live)
            finish(r, 409, cur->doc, "version: the %s is at version %lld, not %lld; read it again and retry", kind,
                   (long long)curv, (long long)u->expect_version);
        else
            finish(r, 409, NULL, "version: the %s does not exist (version 0), not at version %lld", kind,
                   (long long)u->expect_version);
        return;
    }
    if (u->op != CD_OP_PUT && !live) {
        finish(r, 404, NULL, "%s '%s' not found", kind, u->id);
        return;
    }

    bson_t next;
    bool budget_op = false;
    char status[16];
    switch (u->op) {
    case CD_OP_PUT:
        bson_copy_to(&u->doc, &next);
        if (u->kind == CD_KIND_CAMPAIGN)
            /* A raised budget is a budget change; a new campaign only clears a stale
             * exhausted flag if one exists (budget_op false: the script checks EXISTS). */
            budget_op = live && cd_doc_int64(&u->doc, "budget_micros", 0) > cd_doc_int64(cur->doc, "budget_micros", 0);
        break;
    case CD_OP_DELETE:
        bson_init(&next);
        BSON_APPEND_UTF8(&next, "id", u->id);
        BSON_APPEND_BOOL(&next, "deleted", true);
        break;
    case CD_OP_BUDGET_SET:
    case CD_OP_BUDGET_TOPUP: {
        int64_t b = cd_doc_int64(cur->doc, "budget_micros", 0);
        int64_t nb = u->op == CD_OP_BUDGET_SET ? u->amount : b + u->amount;
        if (nb > CD_BUDGET_MAX) {
            cd_verrs_add(&r->errs, "topup_micros", "a top-up that keeps budget_micros at most 10^15 (it is %lld)",
                         (long long)b);
            finish(r, 400, NULL, "validation failed");
            return;
        }
        cd_doc_set_int64(cur->doc, "budget_micros", nb, &next);
        budget_op = true;
        break;
    }
    case CD_OP_PAUSE:
    case CD_OP_RESUME: {
        const char *want = u->op == CD_OP_PAUSE ? "paused" : "active";
        if (strcmp(cd_doc_utf8(cur->doc, "status", status, sizeof(status)), want) == 0) {
            finish(r, 200, cur->doc, NULL); /* already there: no change, no new version */
            return;
        }
        cd_doc_set_utf8(cur->doc, "status", want, &next);
        break;
    }
    default:
        finish(r, 500, NULL, "unknown operation");
        return;
    }

    int64_t v = next_version(core);
    /* A version for the "replenished" notification, so it orders right after this change. */
    int64_t rv = budget_op ? next_version(core) : 0;
    bson_t doc;
    cd_doc_set_int64(&next, "version", v, &doc);
    bson_destroy(&next);

    at_err_t err = {0};
    bool applied = false;
    if (core->store->ops->put(core->store, u->kind, &doc, &applied, &err) != 0) {
        at_counter_add(core->store_failures, 1);
        at_log(AT_LOG_ERROR, "coredata", "store write failed", "store", core->store->ops->name, "error", err.msg, NULL);
        finish(r, at_err_retriable(err.code) ? 503 : 500, NULL, "store: %s", err.msg);
        bson_destroy(&doc);
        return;
    }
    if (!applied) {
        /* The store holds a newer version than this process knows: another writer. */
        finish(r, 409, NULL,
               "version: the store already holds a newer version of %s '%s' (another coredata "
               "instance writing?)",
               kind, u->id);
        bson_destroy(&doc);
        return;
    }
    pthread_rwlock_wrlock(&core->state->lock);
    cd_state_put(core->state, u->kind, &doc);
    pthread_rwlock_unlock(&core->state->lock);
    if (core->fo != NULL) {
        cd_change_t *ch = cd_change_new(u->kind, &doc, budget_op, rv);
        if (ch != NULL)
            cd_fanout_push(core->fo, ch);
        else
            at_log(AT_LOG_ERROR, "coredata", "cannot build change notification", "id", u->id, NULL);
    }
    if ((size_t)u->op < AT_ARRAY_LEN(core->changes) && core->changes[u->op] != NULL)
        at_counter_add(core->changes[u->op], 1);
    if (core->version != NULL)
        at_gauge_set(core->version, (double)(rv ? rv : v));
    finish(r, live || u->op != CD_OP_PUT ? 200 : 201, &doc, NULL);
    bson_destroy(&doc);
}

static void *core_main(void *arg)
{
    cd_core_t *core = arg;
    pthread_mutex_lock(&core->mu);
    for (;;) {
        while (core->head == NULL && !core->stop)
            pthread_cond_wait(&core->cv, &core->mu);
        if (core->head == NULL && core->stop)
            break;
        cd_req_t *r = core->head;
        core->head = r->next;
        if (core->head == NULL)
            core->tail = NULL;
        core->qlen--;
        pthread_mutex_unlock(&core->mu);
        r->next = NULL;
        cd_core_apply(core, r);
        r->done(r, r->opaque);
        pthread_mutex_lock(&core->mu);
    }
    pthread_mutex_unlock(&core->mu);
    return NULL;
}

int cd_core_start(cd_core_t *core, at_err_t *err)
{
    if (pthread_create(&core->tid, NULL, core_main, core) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "core: cannot start thread");
    core->started = true;
    return 0;
}

int cd_core_submit(cd_core_t *core, cd_req_t *r)
{
    pthread_mutex_lock(&core->mu);
    if (core->qlen >= (size_t)core->conf->queue_max || core->stop) {
        pthread_mutex_unlock(&core->mu);
        return -1;
    }
    r->next = NULL;
    if (core->tail != NULL)
        core->tail->next = r;
    else
        core->head = r;
    core->tail = r;
    core->qlen++;
    pthread_cond_signal(&core->cv);
    pthread_mutex_unlock(&core->mu);
    return 0;
}

void cd_core_stop(cd_core_t *core)
{
    if (core == NULL || !core->started)
        return;
    pthread_mutex_lock(&core->mu);
    core->stop = true;
    pthread_cond_signal(&core->cv);
    pthread_mutex_unlock(&core->mu);
    pthread_join(core->tid, NULL);
    core->started = false;
}

void cd_core_destroy(cd_core_t *core)
{
    if (core == NULL)
        return;
    cd_core_stop(core);
    cd_store_destroy(core->store);
    pthread_mutex_destroy(&core->mu);
    pthread_cond_destroy(&core->cv);
    free(core);
}
