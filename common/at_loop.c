/*
 * at_loop.c: h2o event-loop threads set up on their own thread (see at_loop.h).
 */
#include "at_loop.h"

#include <stdlib.h>

static __thread h2o_evloop_t *current_loop;

/* The start-up handshake between at_loop_start() and the new thread. Lives on the
 * starter's stack: the thread stops touching it once it has signalled `done`. */
typedef struct loop_start_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    at_err_t err;
    at_loop_setup_cb setup;
    at_loop_run_cb run;
    void *opaque;
    char name[16];
} loop_start_t;

static void *loop_thread(void *arg)
{
    loop_start_t *st = arg;
    at_loop_run_cb run = st->run;
    void *opaque = st->opaque;

    if (st->name[0] != '\0')
        pthread_setname_np(pthread_self(), st->name);
    h2o_evloop_t *loop = h2o_evloop_create();
    current_loop = loop;
    at_err_t err = {0};
    int rc = st->setup(loop, opaque, &err);

    pthread_mutex_lock(&st->mu);
    st->rc = rc;
    st->err = err;
    st->done = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    /* st is gone from here on. */
    if (rc == 0)
        run(loop, opaque);
    return NULL;
}

int at_loop_start(pthread_t *tid, const char *name, at_loop_setup_cb setup, at_loop_run_cb run, void *opaque,
                  at_err_t *err)
{
    loop_start_t st = {.setup = setup, .run = run, .opaque = opaque};
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    if (name != NULL)
        snprintf(st.name, sizeof(st.name), "%s", name); /* the kernel keeps 15 bytes */

    int rc = pthread_create(tid, NULL, loop_thread, &st);
    if (rc != 0) {
        pthread_cond_destroy(&st.cv);
        pthread_mutex_destroy(&st.mu);
        return at_err_set(err, AT_ERR_INTERNAL, "cannot start the %s thread: %s", name ? name : "loop", strerror(rc));
    }
    pthread_mutex_lock(&st.mu);
    while (!st.done)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    if (st.rc != 0) {
        pthread_join(*tid, NULL);
        if (err != NULL)
            *err = st.err;
        return -1;
    }
    return 0;
}

h2o_evloop_t *at_loop_current(void)
{
    return current_loop;
}

#ifdef AT_LOCALITY_CHECKS
void at_loop_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: locality check failed: %s is not the calling thread's loop\n", file, line, what);
    abort();
}
#endif
