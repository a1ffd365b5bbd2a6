/*
 * at_loop.h: h2o event-loop threads whose loop, context, sockets and queues are all created
 * on the thread that runs the loop.
 *
 * Why this module exists: h2o 2.2.5 keeps its memory recyclers in thread-local storage
 * (lib/common/memory.c: the request pools' chunk recycler; lib/common/socket.c: the
 * `__thread h2o_socket_buffer_prototype` whose recycler backs every socket's input buffer),
 * and a socket's input buffer remembers the recycler of the thread that *created* the
 * socket. The recyclers have no lock. A socket created on thread A and read on thread B
 * makes B allocate from and free into A's recycler. h2o_context_init() and
 * h2o_multithread_create_queue() each create such a socket (the wake-up pipe of a
 * multithread queue is read into its input buffer), so a loop set up on the main thread and
 * run on another shares the main thread's recycler with every other loop set up the same
 * way: two loops waking at once corrupt its free list (the collector's crash under a Kafka
 * outage: "h2o_mem_alloc_recycle: Assertion 'chunk != NULL'", double frees, segfaults).
 *
 * Rule for all services: everything h2o of a loop (h2o_evloop_create, h2o_context_init,
 * sockets, multithread queues and receivers, timeouts) is created in the @p setup callback
 * below, on the loop's own thread; other threads talk to a loop only through
 * h2o_multithread_send_message().
 */
#ifndef AT_LOOP_H
#define AT_LOOP_H

#include <pthread.h>
#include <h2o.h>

#include "at_err.h"

/* Creates the loop's h2o objects on @p loop (already created, on the calling loop thread).
 * 0, or -1 + err (the thread then exits without running). @locality: the new loop thread */
typedef int (*at_loop_setup_cb)(h2o_evloop_t *loop, void *opaque, at_err_t *err);

/* Runs the loop until it should stop; returning ends the thread. @locality: the loop thread */
typedef void (*at_loop_run_cb)(h2o_evloop_t *loop, void *opaque);

/*
 * Starts a thread that creates an h2o evloop, calls @p setup on it and, if that succeeded,
 * @p run. Returns only after @p setup returned: 0 with the thread's id in *@p tid, or -1
 * with @p setup's error (the thread has then been joined). @p opaque is borrowed and must
 * outlive the thread. The loop is never destroyed (h2o 2.2.5 cannot dispose a loop that
 * still has connections attached); it goes with the process.
 * @locality: any thread
 */
int at_loop_start(pthread_t *tid, const char *name, at_loop_setup_cb setup, at_loop_run_cb run, void *opaque,
                  at_err_t *err);

/* The loop that runs on the calling thread (NULL on a thread that runs none). */
h2o_evloop_t *at_loop_current(void);

/*
 * AT_ASSERT_LOOP(loop): aborts with a message when the calling thread is not @p loop's.
 * Compiled in by the sanitizer builds (-DAT_LOCALITY_CHECKS, set by ADTRACK_SANITIZE and
 * ADTRACK_TSAN), where the test suite runs; free in release builds. Put it in front of
 * code that touches h2o requests or loop-owned objects and may be reached from callbacks
 * of other libraries (librdkafka, the spool).
 */
#ifdef AT_LOCALITY_CHECKS
void at_loop_assert_fail(const char *what, const char *file, int line);
#define AT_ASSERT_LOOP(loop)                                                                                          \
    do {                                                                                                               \
        if (at_loop_current() != (loop))                                                                               \
            at_loop_assert_fail(#loop, __FILE__, __LINE__);                                                            \
    } while (0)
#else
#define AT_ASSERT_LOOP(loop) ((void)(loop))
#endif

#endif
