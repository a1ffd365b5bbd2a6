/*
 * cd_core.h: the core worker: the one thread that owns the store and applies changes.
 *
 * Requests (from the HTTP loops and the updates feed) are queued to it; it checks the
 * optimistic-concurrency version, assigns the next global version, writes the store
 * (durable on return), updates the in-memory state, hands the change to the fan-out, and
 * calls the request's done callback. Because one thread does all of this in order, the
 * versions it assigns and the order the fan-out sees are the same.
 */
#ifndef CD_CORE_H
#define CD_CORE_H

#include "at_metrics.h"
#include "cd_conf.h"
#include "cd_doc.h"
#include "cd_fanout.h"
#include "cd_state.h"

typedef struct cd_core_s cd_core_t;
typedef struct cd_req_s cd_req_t;

/* Called on the worker thread when @p r is done; the callee owns @p r from then on. */
typedef void (*cd_req_done_cb)(cd_req_t *r, void *opaque);

struct cd_req_s {
    cd_req_t *next;
    cd_update_t u; /* the request */
    /* result */
    int status;  /* 200, 201, 400 (errs), 404, 409, 500, 503 */
    bson_t *doc; /* the entity after the change (or the current one, for 409); may be NULL */
    char msg[AT_ERR_MSG_MAX];
    cd_verrs_t errs;
    cd_req_done_cb done;
    void *opaque;
};

/* A zeroed request with an initialised update; free with cd_req_free(). */
cd_req_t *cd_req_new(void);
void cd_req_free(cd_req_t *r);

/*
 * Loads @p store into @p state and returns the worker (not started). Takes ownership of
 * @p store (also on failure). @p fo may be NULL (tests: changes are then not announced).
 */
cd_core_t *cd_core_new(const cd_conf_t *conf, cd_store_t *store, cd_state_t *state, cd_fanout_t *fo,
                       at_metrics_t *metrics, at_err_t *err);
int cd_core_start(cd_core_t *core, at_err_t *err);
/* Queues @p r. Returns 0, or -1 when the queue is full (the caller still owns r).
 * @locality: any thread. */
int cd_core_submit(cd_core_t *core, cd_req_t *r);
/* Applies @p r on the calling thread (tests, or a core that was not started). */
void cd_core_apply(cd_core_t *core, cd_req_t *r);
/* Name of the store ("file", "mongodb"). */
const char *cd_core_store_name(const cd_core_t *core);
/* Finishes queued requests, then stops the thread. */
void cd_core_stop(cd_core_t *core);
void cd_core_destroy(cd_core_t *core);

#endif
