/* Unit tests for cli/sup.c (the supervisor of `adtrack up`), with /bin/sh children. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "at_log.h"
#include "sup.h"

static void test_sup_backoff_next__doubles_up_to_the_cap(void **state)
{
    (void)state;
    sup_backoff_t b;
    sup_backoff_init(&b, 500, 30000, 60000);
    const int64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    for (size_t i = 0; i < AT_ARRAY_LEN(want); i++)
        assert_int_equal(sup_backoff_next(&b, 10), want[i]);
}

static void test_sup_backoff_next__resets_after_a_long_uptime(void **state)
{
    (void)state;
    sup_backoff_t b;
    sup_backoff_init(&b, 500, 30000, 60000);
    sup_backoff_next(&b, 10);
    sup_backoff_next(&b, 10);
    assert_int_equal(sup_backoff_next(&b, 59999), 2000);
    assert_int_equal(sup_backoff_next(&b, 60000), 500);
    assert_int_equal(sup_backoff_next(&b, 1), 1000);
}

/* A child running `sh -c SCRIPT`, logging to a temp file. */
static void sh_child(sup_child_t *c, const char *name, const char *script, char *const *env)
{
    char log[64];
    snprintf(log, sizeof(log), "/tmp/test_sup.%d.log", (int)getpid());
    sup_child_init(c, name, log);
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    sup_child_set_argv(c, argv, env);
}

/* Polls (reap + tick) until @p done holds for @p c or 10 s passed. */
static bool poll_until(sup_t *s, sup_child_t *c, bool (*done)(const sup_child_t *))
{
    int64_t deadline = sup_now_ms() + 10000;
    while (!done(c) && sup_now_ms() < deadline) {
        usleep(10000);
        sup_reap(s);
        sup_tick(s);
    }
    return done(c);
}

static bool is_backoff(const sup_child_t *c)
{
    return c->state == SUP_BACKOFF;
}
static bool is_dead(const sup_child_t *c)
{
    return !sup_alive(c);
}
static bool is_exited(const sup_child_t *c)
{
    return c->state == SUP_EXITED;
}
static bool restarted(const sup_child_t *c)
{
    return c->starts >= 2 && c->state == SUP_RUNNING;
}

static void test_sup_on_exit__a_crash_is_restarted_after_backoff(void **state)
{
    (void)state;
    sup_t s = {0};
    sup_child_t c;
    sh_child(&c, "crasher", "exit 3", NULL);
    assert_int_equal(sup_add(&s, &c), 0);
    at_err_t err = {0};
    assert_int_equal(sup_start(&c, &err), 0);
    assert_true(poll_until(&s, &c, is_backoff));
    assert_true(WIFEXITED(c.exit_status) && WEXITSTATUS(c.exit_status) == 3);
    assert_int_equal(c.restarts, 1);
    int64_t wait = sup_next_due_ms(&s);
    assert_true(wait > 300 && wait <= 500);
    /* Not before the backoff ends. */
    sup_tick(&s);
    assert_int_equal(c.starts, 1);
    int64_t t0 = sup_now_ms();
    assert_true(poll_until(&s, &c, restarted) || c.starts >= 2);
    assert_true(sup_now_ms() - t0 >= 300);
    /* The second crash waits twice as long. */
    assert_true(poll_until(&s, &c, is_backoff));
    assert_int_equal(c.restarts, 2);
    assert_true(sup_next_due_ms(&s) > 500);
    s.shutting_down = true;
    sup_stop(&c);
    assert_int_equal(c.state, SUP_IDLE);
    sup_child_clear(&c);
}

static void test_sup_stop__sigkill_after_the_stop_timeout(void **state)
{
    (void)state;
    char flag[64], script[160];
    snprintf(flag, sizeof(flag), "/tmp/test_sup.%d.ready", (int)getpid());
    unlink(flag);
    /* Ignores SIGTERM (an ignored signal stays ignored across exec). */
    snprintf(script, sizeof(script), "trap '' TERM; touch %s; exec sleep 30", flag);
    sup_t s = {0};
    sup_child_t c;
    sh_child(&c, "stubborn", script, NULL);
    c.stop_timeout_ms = 200;
    sup_add(&s, &c);
    at_err_t err = {0};
    assert_int_equal(sup_start(&c, &err), 0);
    struct stat st;
    for (int i = 0; i < 1000 && stat(flag, &st) != 0; i++)
        usleep(10000);
    assert_int_equal(stat(flag, &st), 0);
    int64_t t0 = sup_now_ms();
    sup_stop(&c);
    assert_int_equal(c.state, SUP_STOPPING);
    assert_true(poll_until(&s, &c, is_dead));
    assert_true(sup_now_ms() - t0 >= 190);
    assert_true(WIFSIGNALED(c.exit_status) && WTERMSIG(c.exit_status) == SIGKILL);
    assert_int_equal(c.state, SUP_IDLE); /* a stop is not a crash: no restart */
    assert_int_equal(c.restarts, 0);
    unlink(flag);
    sup_child_clear(&c);
}

static void test_sup_start__environment_without_adtrack_vars(void **state)
{
    (void)state;
    setenv("ADTRACK_LISTEN", "0.0.0.0:1", 1);
    setenv("TEST_SUP_KEEP", "kept", 1);
    char *env[] = {"ADTRACK_CLICK_KEY=k", NULL};
    sup_t s = {0};
    sup_child_t c;
    sh_child(&c, "env",
             "test -z \"$ADTRACK_LISTEN\" && test \"$ADTRACK_CLICK_KEY\" = k && test \"$TEST_SUP_KEEP\" = kept", env);
    c.oneshot = true;
    sup_add(&s, &c);
    at_err_t err = {0};
    assert_int_equal(sup_start(&c, &err), 0);
    assert_true(poll_until(&s, &c, is_exited));
    assert_true(WIFEXITED(c.exit_status));
    assert_int_equal(WEXITSTATUS(c.exit_status), 0);
    unsetenv("ADTRACK_LISTEN");
    sup_child_clear(&c);
}

static void test_sup_restart__planned_restart_has_no_backoff(void **state)
{
    (void)state;
    sup_t s = {0};
    sup_child_t c;
    sh_child(&c, "sleeper", "exec sleep 30", NULL);
    sup_add(&s, &c);
    at_err_t err = {0};
    assert_int_equal(sup_start(&c, &err), 0);
    pid_t first = c.pid;
    int64_t t0 = sup_now_ms();
    sup_restart(&c);
    assert_true(poll_until(&s, &c, restarted));
    assert_true(sup_now_ms() - t0 < 400);
    assert_int_not_equal(c.pid, first);
    assert_int_equal(c.restarts, 0);
    s.shutting_down = true;
    sup_stop(&c);
    assert_true(poll_until(&s, &c, is_dead));
    assert_int_equal(c.state, SUP_IDLE);
    sup_child_clear(&c);
}

static void test_sup_start__missing_program_exits_127(void **state)
{
    (void)state;
    sup_t s = {0};
    sup_child_t c;
    char log[64];
    snprintf(log, sizeof(log), "/tmp/test_sup.%d.log", (int)getpid());
    sup_child_init(&c, "missing", log);
    char *argv[] = {"/nonexistent/adtrack-nothing", NULL};
    sup_child_set_argv(&c, argv, NULL);
    c.oneshot = true;
    sup_add(&s, &c);
    at_err_t err = {0};
    assert_int_equal(sup_start(&c, &err), 0);
    assert_true(poll_until(&s, &c, is_exited));
    assert_int_equal(WEXITSTATUS(c.exit_status), 127);
    sup_child_clear(&c);
    unlink(log);
}

int main(void)
{
    at_log_set_level(AT_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sup_backoff_next__doubles_up_to_the_cap),
        cmocka_unit_test(test_sup_backoff_next__resets_after_a_long_uptime),
        cmocka_unit_test(test_sup_on_exit__a_crash_is_restarted_after_backoff),
        cmocka_unit_test(test_sup_stop__sigkill_after_the_stop_timeout),
        cmocka_unit_test(test_sup_start__environment_without_adtrack_vars),
        cmocka_unit_test(test_sup_restart__planned_restart_has_no_backoff),
        cmocka_unit_test(test_sup_start__missing_program_exits_127),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char log[64];
    snprintf(log, sizeof(log), "/tmp/test_sup.%d.log", (int)getpid());
    unlink(log);
    return rc;
}
