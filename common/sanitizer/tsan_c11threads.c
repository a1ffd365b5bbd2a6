/*
 * tsan_c11threads.c: C11 <threads.h> routed through pthreads, linked into every binary of a
 * ThreadSanitizer build (-DADTRACK_TSAN=ON) and nowhere else.
 *
 * Why: librdkafka 2.0.2 (Debian) creates its threads with glibc's thrd_create() and locks with
 * mtx_lock()/cnd_wait(). glibc implements those by calling its internal __pthread_* aliases,
 * which ThreadSanitizer's interceptors never see (gcc 12's libtsan and clang 14's runtime
 * intercept pthread_create but not thrd_create). A thread TSan did not see being created
 * has no TSan state: its first malloc crashes inside the sanitizer (SEGV in
 * SizeClassAllocator64LocalCache::Allocate, seen in the collector and adtrack-devstream),
 * and locks TSan does not see would make every hand-off through librdkafka's queues look
 * like a data race. Definitions in the executable take precedence over glibc's for
 * librdkafka's references, so these wrappers make the same calls glibc makes, through the
 * public, intercepted pthread functions. glibc's mtx_t, cnd_t and thrd_t are pthread's
 * types by layout (glibc's own thrd/mtx/cnd code casts them the same way).
 *
 * mtx_init() and cnd_init() hide their own writes to the lock's memory from TSan
 * (AnnotateIgnoreWritesBegin/End): tests/sanitizers/tsan.supp makes TSan ignore the libc
 * calls librdkafka makes itself (malloc, free, pthread_rwlock_*), so TSan does not see a
 * lock being handed from the librdkafka thread that created it to the thread that later
 * takes it, and would report the initialising write against the later lock. Taking and
 * releasing the locks stays visible, which is what orders our data.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

/* ThreadSanitizer's dynamic annotations (exported by libtsan). */
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);

static int map_err(int rc)
{
    switch (rc) {
    case 0:
        return thrd_success;
    case ETIMEDOUT:
        return thrd_timedout;
    case EBUSY:
        return thrd_busy;
    case ENOMEM:
    case EAGAIN:
        return thrd_nomem;
    default:
        return thrd_error;
    }
}

typedef struct start_s {
    thrd_start_t fn;
    void *arg;
} start_t;

static void *trampoline(void *p)
{
    start_t s = *(start_t *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    start_t *s = malloc(sizeof(*s));
    if (s == NULL)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    int rc = pthread_create((pthread_t *)thr, NULL, trampoline, s);
    if (rc != 0)
        free(s);
    return map_err(rc);
}

int thrd_join(thrd_t thr, int *res)
{
    void *ret = NULL;
    int rc = pthread_join((pthread_t)thr, &ret);
    if (rc == 0 && res != NULL)
        *res = (int)(intptr_t)ret;
    return map_err(rc);
}

int thrd_detach(thrd_t thr)
{
    return map_err(pthread_detach((pthread_t)thr));
}

_Noreturn void thrd_exit(int res)
{
    pthread_exit((void *)(intptr_t)res);
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &attr);
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    pthread_mutexattr_destroy(&attr);
    return map_err(rc);
}

int mtx_lock(mtx_t *m)
{
    return map_err(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return map_err(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_trylock(mtx_t *m)
{
    return map_err(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_unlock(mtx_t *m)
{
    return map_err(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
    int rc = pthread_cond_init((pthread_cond_t *)c, NULL);
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    return map_err(rc);
}

int cnd_signal(cnd_t *c)
{
    return map_err(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return map_err(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return map_err(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return map_err(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}
